// @abota/blobstore: content-addressed blob storage (keys `sha256/<hex>`) on a filesystem or any
// S3-compatible service, with streaming verified writes and ranged reads.

export type {
  BlobInfo,
  BlobRead,
  BlobStore,
  ByteRange,
  CompletedUpload,
  CreateUploadOptions,
  PresignOptions,
  PutOptions,
  UploadedPart,
  UploadLimits,
  UploadPartOptions,
  UploadSession,
} from './blob-store.js';
export { DEFAULT_MAX_BLOB_SIZE_BYTES } from './checks.js';
export { BlobStoreError, type BlobStoreErrorCode } from './errors.js';
export { FsBlobStore, type FsBlobStoreOptions } from './fs-blob-store.js';
export { assertBlobKey, digestToKey, isBlobKey, keyToDigest, keyToSha256Hex } from './key.js';
export { S3BlobStore, type S3BlobStoreOptions } from './s3-blob-store.js';
export {
  DEFAULT_UPLOAD_PART_SIZE_BYTES,
  MAX_UPLOAD_PART_SIZE_BYTES,
  MAX_UPLOAD_PARTS,
  missingParts,
} from './upload-session.js';
