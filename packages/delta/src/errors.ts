// The one error class of @abota/delta. `code` is stable (the CLI maps it to an exit status);
// the message says what was expected, what was found and where (byte offset, op index, block).

export type DeltaErrorCode =
  /** The payload does not start with the delta magic or has an unsupported version. */
  | 'ERR_DELTA_MAGIC'
  /** A header or operation-table field is out of range or inconsistent (see FORMAT.md). */
  | 'ERR_DELTA_MALFORMED'
  /** The payload ended before the header, the op table or an op's data was complete. */
  | 'ERR_DELTA_TRUNCATED'
  /** Bytes follow the last op's data. */
  | 'ERR_DELTA_TRAILING_DATA'
  /** The metadata (header + op table) does not hash to its recorded SHA-256. */
  | 'ERR_DELTA_METADATA_DIGEST_MISMATCH'
  /** An op's data does not hash to the SHA-256 recorded in the op table. */
  | 'ERR_DELTA_OP_DIGEST_MISMATCH'
  /** An op's data decodes to something invalid (bad brotli stream, bad patch program). */
  | 'ERR_DELTA_OP_INVALID'
  /** A limit (op count, op data size, decoded size) was exceeded. */
  | 'ERR_DELTA_TOO_LARGE'
  /** The source image is not the one the delta was made from (size, root hash, digest). */
  | 'ERR_DELTA_WRONG_SOURCE'
  /** The delta produces a different target than the one expected (size, root hash). */
  | 'ERR_DELTA_WRONG_TARGET'
  /** A produced target block failed verification (block verifier or whole-image digest). */
  | 'ERR_DELTA_TARGET_VERIFICATION'
  /** A resume checkpoint does not fit this payload. */
  | 'ERR_DELTA_CHECKPOINT_INVALID'
  /** Input images cannot be diffed (size not a multiple of the block size, too large). */
  | 'ERR_DELTA_INPUT_INVALID'
  /** Reading or writing an image or payload file failed. */
  | 'ERR_DELTA_IO';

/** How far an apply got before it failed: the caller must treat the target as incomplete. */
export interface DeltaApplyProgress {
  /** Ops fully produced, verified and written. */
  opsApplied: number;
  /** Target blocks verified and written. */
  blocksWritten: number;
}

export class DeltaError extends Error {
  override readonly name = 'DeltaError';
  readonly code: DeltaErrorCode;
  /** Set when an apply failed part-way: what was written (never bootable). */
  readonly progress: DeltaApplyProgress | undefined;

  constructor(
    code: DeltaErrorCode,
    message: string,
    options?: { cause?: unknown; progress?: DeltaApplyProgress },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.progress = options?.progress;
  }
}
