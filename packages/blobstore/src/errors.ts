// The one error class of @abota/blobstore. `code` is stable (the CLI maps it to an exit status,
// the update server to an HTTP status); the message says what was expected, what was found and
// for which key.

export type BlobStoreErrorCode =
  /** A key is not `sha256/<64 lower-case hex>` (or a digest is not `sha256:<64 hex>`). */
  | 'ERR_BLOB_KEY_INVALID'
  /** An argument other than the key is malformed (range, expected size/digest, expiry). */
  | 'ERR_BLOB_ARGUMENT_INVALID'
  /** No blob is stored under the key. */
  | 'ERR_BLOB_NOT_FOUND'
  /** The streamed bytes do not hash to the key's digest (or to `opts.sha256`); nothing stored. */
  | 'ERR_BLOB_DIGEST_MISMATCH'
  /** The streamed byte count differs from `opts.sizeBytes`; nothing stored. */
  | 'ERR_BLOB_SIZE_MISMATCH'
  /** The body is larger than the store's `maxBlobSizeBytes`; nothing stored. */
  | 'ERR_BLOB_TOO_LARGE'
  /** The range starts at or beyond the end of the blob; `totalSizeBytes` says how big it is. */
  | 'ERR_BLOB_RANGE_NOT_SATISFIABLE'
  /** The backing store is not usable (directory not writable, bucket missing, no access). */
  | 'ERR_BLOB_STORE_UNAVAILABLE'
  /** The backing store failed an operation that should have worked (I/O error, S3 5xx). */
  | 'ERR_BLOB_STORE_IO'
  /** Configuration (e.g. the ABOTA_S3_* environment) is missing or malformed. */
  | 'ERR_BLOB_CONFIG_INVALID'
  /** No upload session by that id: completed, aborted, expired (gcUploads) or never created. */
  | 'ERR_BLOB_UPLOAD_NOT_FOUND'
  /** completeUpload before every part was received; the message lists the missing part numbers. */
  | 'ERR_BLOB_UPLOAD_INCOMPLETE';

export class BlobStoreError extends Error {
  override readonly name = 'BlobStoreError';
  readonly code: BlobStoreErrorCode;
  /** Set for ERR_BLOB_RANGE_NOT_SATISFIABLE: the blob's size, for a `Content-Range: bytes *\/N`. */
  readonly totalSizeBytes: number | undefined;

  constructor(
    code: BlobStoreErrorCode,
    message: string,
    options?: { cause?: unknown; totalSizeBytes?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.totalSizeBytes = options?.totalSizeBytes;
  }
}
