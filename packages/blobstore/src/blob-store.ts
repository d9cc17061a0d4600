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
}
