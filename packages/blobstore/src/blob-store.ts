// The BlobStore interface (docs/CONTRACTS.md "@abota/blobstore"): what the publisher writes
// releases into and the update server serves blobs from. Implementations: FsBlobStore, S3BlobStore.

export interface BlobInfo {
  /** `sha256/<64 lower-case hex>` */
  key: string;
  sizeBytes: number;
}

export interface PutOptions {
  /** Expected size; a body of any other length fails with ERR_BLOB_SIZE_MISMATCH. */
  sizeBytes?: number;
  /** Expected SHA-256 as hex. Optional: the key's hex is always verified; if given it must agree. */
  sha256?: string;
}

export interface ByteRange {
  /** First byte, 0-based. */
  start: number;
  /** Last byte, inclusive; omitted = to the end. Clamped to the last byte (as HTTP does). */
  end?: number;
}

export interface BlobRead {
  /**
   * The bytes `start..end`. Holds an open file / connection until read to the end; if you do
   * not read it, stop early with `break` in `for await` or call `.return()` on its iterator.
   */
  body: AsyncIterable<Uint8Array>;
  totalSizeBytes: number;
  start: number;
  /** Inclusive; `start - 1` when the blob is empty (then the body yields nothing). */
  end: number;
}

export interface PresignOptions {
  /** 1 .. 604800 (7 days, the SigV4 maximum). */
  expiresInSeconds: number;
}

/** The part geometry a store accepts for upload sessions. */
export interface UploadLimits {
  minPartSizeBytes: number;
  maxPartSizeBytes: number;
  defaultPartSizeBytes: number;
  maxParts: number;
}

export interface CreateUploadOptions {
  /** The whole blob's size (>= 1, <= the store's maxBlobSizeBytes). */
  sizeBytes: number;
  /** Expected SHA-256 as hex; optional, the key's hex is what the assembled blob must hash to. */
  sha256?: string;
  /** Within the store's UploadLimits; default UploadLimits.defaultPartSizeBytes (raised if needed for maxParts). */
  partSizeBytes?: number;
}

export interface UploadPartOptions {
  /** Announced size; must be the part's exact size (partSizeBytes, or the remainder for the last part). */
  sizeBytes?: number;
  /** Expected SHA-256 (hex) of this part's bytes; a mismatch stores nothing. */
  sha256?: string;
}

export interface UploadedPart {
  /** 1-based. */
  partNumber: number;
  sizeBytes: number;
  /** SHA-256 (hex) of the part's bytes, as received and verified. */
  sha256: string;
}

export interface UploadSession {
  /** 32 lower-case hex characters. */
  uploadId: string;
  /** The blob key the assembled bytes will be stored under. */
  key: string;
  sizeBytes: number;
  partSizeBytes: number;
  /** ceil(sizeBytes / partSizeBytes); every part but the last is exactly partSizeBytes. */
  partCount: number;
  createdAt: Date;
  /** The latest part (or the creation) stored; what gcUploads compares. */
  updatedAt: Date;
  /** Parts received so far, by part number. */
  parts: UploadedPart[];
  /** Sum of the parts' sizes. */
  receivedBytes: number;
}

export interface CompletedUpload extends BlobInfo {
  /** false when the blob was already stored (another session or a put got there first). */
  created: boolean;
}

export interface BlobStore {
  /**
   * Streams `body` into the store under `key`, hashing while writing. The bytes must hash to the
   * key's hex (ERR_BLOB_DIGEST_MISMATCH), match `opts.sizeBytes` (ERR_BLOB_SIZE_MISMATCH) and stay
   * within the store's maximum (ERR_BLOB_TOO_LARGE); on any failure nothing becomes visible
   * under `key`. Idempotent: if the blob already exists the body is not read and the stored
   * blob's info is returned. When put settles the body is finished with: a Node stream is
   * destroyed, another iterable gets `return()` on its iterator.
   */
  put(key: string, body: AsyncIterable<Uint8Array>, opts?: PutOptions): Promise<BlobInfo>;
  /** ERR_BLOB_NOT_FOUND, ERR_BLOB_RANGE_NOT_SATISFIABLE (error carries `totalSizeBytes`). */
  get(key: string, range?: ByteRange): Promise<BlobRead>;
  /** undefined when no blob is stored under `key`. */
  head(key: string): Promise<BlobInfo | undefined>;
  /** Removes the blob; succeeds when it does not exist. */
  delete(key: string): Promise<void>;
  /** A URL a plain HTTP client can GET (with Range) until it expires; undefined when the store has none (fs). */
  presignGet(key: string, opts: PresignOptions): Promise<string | undefined>;
  /** Readiness probe: resolves when the store can be read and written, else ERR_BLOB_STORE_UNAVAILABLE. */
  check(): Promise<void>;

  // ---- upload sessions: one blob in numbered parts over many requests (and replicas) ----
  // The session lives in the store itself (no process memory), so any replica sharing the
  // store continues it. Nothing is visible under the key until completeUpload verified it.

  readonly uploadLimits: UploadLimits;
  /** Starts a session for `key`. ERR_BLOB_TOO_LARGE over maxBlobSizeBytes or UploadLimits. */
  createUpload(key: string, opts: CreateUploadOptions): Promise<UploadSession>;
  /**
   * Stores part `partNumber` (1..partCount), replacing an earlier copy of it. Its size must be
   * exact (ERR_BLOB_SIZE_MISMATCH) and, if given, its sha256 must match (ERR_BLOB_DIGEST_MISMATCH);
   * on any failure the part is not recorded. The body is finished with when this settles.
   */
  uploadPart(
    uploadId: string,
    partNumber: number,
    body: AsyncIterable<Uint8Array>,
    opts?: UploadPartOptions,
  ): Promise<UploadedPart>;
  /** The session and the parts received. ERR_BLOB_UPLOAD_NOT_FOUND once completed/aborted/expired. */
  getUpload(uploadId: string): Promise<UploadSession>;
  /** Open sessions (optionally only those for `key`), oldest first, at most `limit` (default 100). */
  listUploads(opts?: { key?: string; limit?: number }): Promise<UploadSession[]>;
  /**
   * Assembles the parts, verifies the whole blob's sha256 (the key) and size, and only then makes it
   * visible under the key; the session is gone afterwards. Missing parts: ERR_BLOB_UPLOAD_INCOMPLETE
   * (session kept). A digest or size mismatch: ERR_BLOB_DIGEST_MISMATCH / ERR_BLOB_SIZE_MISMATCH,
   * nothing stored under the key, and the session is aborted (its bytes are not that blob).
   */
  completeUpload(uploadId: string): Promise<CompletedUpload>;
  /** Deletes the session and its parts; succeeds when it does not exist. */
  abortUpload(uploadId: string): Promise<void>;
  /** Aborts every session whose updatedAt is before `olderThan`; returns how many. */
  gcUploads(olderThan: Date): Promise<number>;
}
