// The errors of a keys directory: one code per way a keys directory, key file or trust root can
// be wrong, printed by the CLI as `code: message` (exit 2 for usage errors, 1 otherwise).
export type KeysErrorCode =
  | 'ERR_USAGE'
  // The keys directory given is a file (or under one), not a directory.
  | 'ERR_KEYS_DIR_INVALID'
  | 'ERR_ROOT_EXISTS'
  | 'ERR_ROOT_NOT_FOUND'
  | 'ERR_KEY_FILE_INVALID'
  | 'ERR_KEY_FILE_PERMISSIONS'
  | 'ERR_KEY_MISSING'
  | 'ERR_KEY_PASSPHRASE'
  | 'ERR_KEY_PASSPHRASE_REQUIRED'
  | 'ERR_ROOT_HISTORY_CONFLICT';

/** A failure of a keys command, printed by the CLI as `code: message`. */
export class KeysError extends Error {
  override readonly name = 'KeysError';
  readonly code: KeysErrorCode;
  readonly exitCode: number;

  constructor(code: KeysErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.exitCode = code === 'ERR_USAGE' || code === 'ERR_KEYS_DIR_INVALID' ? 2 : 1;
  }
}

/**
 * A keys directory path that names a file (ENOTDIR on DIR/root.json) is a wrong argument, not an
 * I/O failure: say which path and what was expected instead of the raw errno.
 */
export function keysDirError(dir: string, err: unknown): unknown {
  if ((err as NodeJS.ErrnoException).code !== 'ENOTDIR') return err;
  return new KeysError(
    'ERR_KEYS_DIR_INVALID',
    `${dir} is a file, not a keys directory (expected the directory abota keys init creates: root.json and keys/)`,
    { cause: err },
  );
}
