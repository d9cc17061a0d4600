// The simulator's one error class (CONTRACTS.md: one class per package with a stable code).
export type SimulatorErrorCode =
  | 'ERR_SIM_RELEASE'
  | 'ERR_SIM_SLOT_TOO_SMALL'
  | 'ERR_SIM_VERITY_PARAMS'
  | 'ERR_SIM_VM_EXISTS'
  | 'ERR_SIM_VM_INVALID'
  | 'ERR_SIM_NOT_BOOTED'
  | 'ERR_SIM_TIMEOUT'
  | 'ERR_SIM_TOOL_MISSING';

export class SimulatorError extends Error {
  readonly code: SimulatorErrorCode;

  constructor(code: SimulatorErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'SimulatorError';
    this.code = code;
  }
}
