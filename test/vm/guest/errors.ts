// Errors of the guest tree builder: a stable code and a message naming what to install or fix.
export type GuestTreeErrorCode =
  | 'ERR_GUEST_TOOL_MISSING'
  | 'ERR_GUEST_LDD'
  | 'ERR_GUEST_AGENT_PACKAGE_MISSING'
  | 'ERR_GUEST_AGENT_PACKAGE'
  | 'ERR_GUEST_MODULE_MISSING'
  | 'ERR_GUEST_DIR_NOT_EMPTY';

export class GuestTreeError extends Error {
  constructor(
    readonly code: GuestTreeErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'GuestTreeError';
  }
}
