// The one error class of @abota/client (docs/CONTRACTS.md): a stable `code` the CLI maps to an
// exit status and the agent reports to the server, and a message saying what was expected,
// what was found and where.

/**
 * Every code @abota/client throws. Keep this ONE union; add new codes in the group of the
 * module that throws them (one line each, alphabetical within a group).
 */
export type ClientErrorCode =
  // bootctl/grubenv.ts — FORMATS.md §2
  | 'ERR_GRUBENV_INVALID' // missing "# GRUB Environment Block" signature, broken padding, bad line
  | 'ERR_GRUBENV_TOO_SMALL' // "environment block too small": the edit does not fit, nothing written
  | 'ERR_GRUBENV_BAD_NAME' // variable name empty or containing '=' / newline / leading '#'
  // bootctl/ubootenv.ts — FORMATS.md §3
  | 'ERR_UBOOTENV_CONFIG' // fw_env.config line that cannot be used
  | 'ERR_UBOOTENV_NO_VALID_COPY' // no copy with a valid CRC (fw_printenv: "Cannot read environment")
  | 'ERR_UBOOTENV_TOO_LARGE' // variables do not fit the configured environment size
  | 'ERR_UBOOTENV_BAD_VARIABLE' // name/value that cannot be stored (NUL, '=' in name, ...)
  | 'ERR_UBOOTENV_IO' // short read/write on the env device or file
  // bootctl (boot control backends)
  | 'ERR_BOOTCTL_UNKNOWN_SLOT' // a slot name other than "A" / "B"
  | 'ERR_BOOTCTL_BOOTED_SLOT_UNKNOWN' // no abota.slot= / rauc.slot= on the cmdline and none configured
  | 'ERR_BOOTCTL_STATE_INVALID' // boot state file / env holds values we cannot interpret or act on
  | 'ERR_BOOTCTL_STATE_MISSING'; // grubenv / U-Boot env / state file not provisioned yet

export class ClientError extends Error {
  override readonly name = 'ClientError';
  readonly code: ClientErrorCode;

  constructor(code: ClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export function isClientError(e: unknown, code?: ClientErrorCode): e is ClientError {
  return e instanceof ClientError && (code === undefined || e.code === code);
}
