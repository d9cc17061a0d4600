// The server's one error class. Each code maps to one HTTP status; responses carry
// `{ error: { code, message } }` and never a stack trace (docs/style.md "Errors a person can act on").

export type ServerErrorCode =
  | 'ERR_VALIDATION'
  | 'ERR_BODY_TOO_LARGE'
  | 'ERR_UNSUPPORTED_MEDIA_TYPE'
  | 'ERR_UNAUTHENTICATED'
  | 'ERR_FORBIDDEN'
  | 'ERR_DEVICE_TOKEN_INVALID'
  | 'ERR_DEVICE_TOKEN_REPLAYED'
  | 'ERR_DEVICE_UNKNOWN'
  | 'ERR_DEVICE_DECOMMISSIONED'
  | 'ERR_PROVISIONING_TOKEN_INVALID'
  | 'ERR_NOT_FOUND'
  | 'ERR_CONFLICT'
  | 'ERR_MANIFEST_INVALID'
  | 'ERR_TRUST_ROOT_INVALID'
  | 'ERR_BLOB_MISSING'
  | 'ERR_BLOB_DIGEST_MISMATCH'
  | 'ERR_BLOB_NOT_FOUND'
  | 'ERR_BLOB_IN_USE'
  | 'ERR_DELTA_INVALID'
  | 'ERR_DELTA_SOURCE_MISMATCH'
  | 'ERR_RANGE_NOT_SATISFIABLE'
  | 'ERR_ROLLOUT_STATE'
  // Four-eyes approval (routes/admin/rollout-approve.ts).
  | 'ERR_APPROVAL_REQUIRED'
  | 'ERR_APPROVAL_SAME_KEY'
  | 'ERR_RATE_LIMITED'
  | 'ERR_INTERNAL'
  | 'ERR_UNAVAILABLE'
  // Start-up only: another abota-server holds the data directory (data-dir-lock.ts).
  | 'ERR_DATA_DIR_LOCKED';

const STATUS: Record<ServerErrorCode, number> = {
  ERR_VALIDATION: 400,
  ERR_BODY_TOO_LARGE: 413,
  ERR_UNSUPPORTED_MEDIA_TYPE: 415,
  ERR_UNAUTHENTICATED: 401,
  ERR_FORBIDDEN: 403,
  ERR_DEVICE_TOKEN_INVALID: 401,
  ERR_DEVICE_TOKEN_REPLAYED: 401,
  ERR_DEVICE_UNKNOWN: 401,
  ERR_DEVICE_DECOMMISSIONED: 403,
  ERR_PROVISIONING_TOKEN_INVALID: 403,
  ERR_NOT_FOUND: 404,
  ERR_CONFLICT: 409,
  ERR_MANIFEST_INVALID: 422,
  ERR_TRUST_ROOT_INVALID: 422,
  ERR_BLOB_MISSING: 422,
  ERR_BLOB_DIGEST_MISMATCH: 422,
  ERR_BLOB_NOT_FOUND: 422,
  ERR_BLOB_IN_USE: 409,
  ERR_DELTA_INVALID: 422,
  ERR_DELTA_SOURCE_MISMATCH: 409,
  ERR_RANGE_NOT_SATISFIABLE: 416,
  ERR_ROLLOUT_STATE: 409,
  ERR_APPROVAL_REQUIRED: 409,
  ERR_APPROVAL_SAME_KEY: 403,
  ERR_RATE_LIMITED: 429,
  ERR_INTERNAL: 500,
  ERR_UNAVAILABLE: 503,
  ERR_DATA_DIR_LOCKED: 503,
};

export class ServerError extends Error {
  override readonly name = 'ServerError';
  readonly code: ServerErrorCode;
  readonly status: number;
  /** Sent as Retry-After (429 rate limited, 503 shedding load). */
  readonly retryAfterSeconds: number | undefined;
  constructor(
    code: ServerErrorCode,
    message: string,
    options?: { cause?: unknown; retryAfterSeconds?: number },
  ) {
    super(message, options);
    this.code = code;
    this.status = STATUS[code];
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

export function errorBody(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message } };
}
