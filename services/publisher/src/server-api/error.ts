// The one error of every admin API call: the server's own `{ error: { code, message } }` code, or
// one of the codes this client adds. The CLI prints it as `abota: CODE: message`.

/** Codes this client adds to the server's own (which are passed through unchanged). */
export type AdminClientErrorCode =
  // No API key / server URL, or an unusable server URL.
  | 'ERR_USAGE'
  // The API key was not given (ABOTA_API_KEY).
  | 'ERR_API_KEY_MISSING'
  // Connection refused, reset, DNS failure, timeout — after the retries.
  | 'ERR_SERVER_UNREACHABLE'
  // The server answered something that is not the documented JSON (or too much of it).
  | 'ERR_SERVER_RESPONSE_INVALID'
  // The caller's AbortSignal fired.
  | 'ERR_INTERRUPTED';

/** A failed admin API call: `code` is the server's code (ERR_FORBIDDEN, ERR_SIGNATURE_INVALID, ...) or one of ours. */
export class AdminApiError extends Error {
  override readonly name = 'AdminApiError';
  readonly code: string;
  /** HTTP status, when the server answered. */
  readonly status: number | undefined;
  readonly exitCode: number;

  constructor(code: string, message: string, options?: { status?: number; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options?.status;
    this.exitCode =
      code === 'ERR_USAGE' || code === 'ERR_API_KEY_MISSING' ? 2 : code === 'ERR_INTERRUPTED' ? 130 : 1;
  }
}

/** True for the server's "there is no such thing" answer (a 404 that callers may treat as absent). */
export const isNotFound = (err: unknown): boolean => err instanceof AdminApiError && err.status === 404;
