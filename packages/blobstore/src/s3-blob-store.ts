// BlobStore on S3 or any S3-compatible service (MinIO, Ceph RGW, ...), for scale-out servers that
// share one bucket (docs/architecture.md "Embedded default and scale-out"). Objects live at
// `<prefix>sha256/<hex>`. A put streams through a multipart Upload to `<prefix>tmp/<uuid>` while
// hashing; only when size and digest match is the object copied to its final key, so a blob key
// never names unverified bytes. CopyObject takes at most 5 GiB, hence the 5 GiB blob limit.

import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadBucketCommand,
  HeadObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type {
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
import {
  checkExistingSize,
  checkMaxBlobSize,
  checkPresignOptions,
  checkPutArguments,
  DEFAULT_MAX_BLOB_SIZE_BYTES,
  closeBody,
} from './checks.js';
import { BlobStoreError } from './errors.js';
import { keyToSha256Hex } from './key.js';
import { checkRange, rangeFromContentRange, rangeHeader, unsatisfiable } from './range.js';
import { copyObject, describeS3Error, isS3Error, s3Error } from './s3-objects.js';
import { S3Uploads } from './s3-uploads.js';
import { emptyBody, streamBody } from './stream-body.js';
import {
  DEFAULT_UPLOAD_PART_SIZE_BYTES,
  MAX_UPLOAD_PART_SIZE_BYTES,
  MAX_UPLOAD_PARTS,
} from './upload-session.js';
import { VerifiedBody } from './verified-body.js';

/** S3's minimum multipart part size (all parts but the last). */
const MIN_PART_SIZE_BYTES = 5 * 1024 * 1024;
const DEFAULT_PART_SIZE_BYTES = 8 * 1024 * 1024;
const DEFAULT_QUEUE_SIZE = 2;

export interface S3BlobStoreOptions {
  client: S3Client;
  bucket: string;
  /** Prepended verbatim to object names (`blobs/` → `blobs/sha256/<hex>`); default ''. */
  prefix?: string;
  /** Multipart part size, >= 5 MiB (default 8 MiB). Memory per put is about (queueSize + 1) × this. */
  partSizeBytes?: number;
  /** Parts uploaded concurrently (default 2). */
  queueSize?: number;
  /** Largest blob `put` accepts, at most (and by default) 5 GiB, the CopyObject limit. */
  maxBlobSizeBytes?: number;
  /** Default part size of upload sessions (5 MiB .. 64 MiB; default 8 MiB). */
  uploadPartSizeBytes?: number;
}

type Env = Record<string, string | undefined>;

export class S3BlobStore implements BlobStore {
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly partSizeBytes: number;
  readonly queueSize: number;
  readonly maxBlobSizeBytes: number;
  readonly uploadLimits: UploadLimits;
  readonly #uploads: S3Uploads;

  constructor(options: S3BlobStoreOptions) {
    const { client, bucket, prefix = '' } = options;
    // Duck-typed, not instanceof: a second copy of @aws-sdk/client-s3 in node_modules (another
    // workspace's version) would fail instanceof while working perfectly.
    if (typeof client !== 'object' || client === null || typeof client.send !== 'function') {
      throw new BlobStoreError('ERR_BLOB_CONFIG_INVALID', 'S3BlobStore needs an S3Client as `client`');
    }
    if (typeof bucket !== 'string' || bucket === '') {
      throw new BlobStoreError('ERR_BLOB_CONFIG_INVALID', 'S3BlobStore needs a bucket name');
    }
    if (prefix.startsWith('/') || prefix.split('/').some((segment) => segment === '..' || segment === '.')) {
      throw new BlobStoreError(
        'ERR_BLOB_CONFIG_INVALID',
        `S3 key prefix must not start with "/" or contain "." or ".." segments, got ${JSON.stringify(prefix)}`,
      );
    }
    const partSizeBytes = options.partSizeBytes ?? DEFAULT_PART_SIZE_BYTES;
    if (!Number.isSafeInteger(partSizeBytes) || partSizeBytes < MIN_PART_SIZE_BYTES) {
      throw new BlobStoreError(
        'ERR_BLOB_CONFIG_INVALID',
        `partSizeBytes must be an integer >= ${MIN_PART_SIZE_BYTES} (S3's minimum part size), got ${String(partSizeBytes)}`,
      );
    }
    const queueSize = options.queueSize ?? DEFAULT_QUEUE_SIZE;
    if (!Number.isSafeInteger(queueSize) || queueSize < 1 || queueSize > 16) {
      throw new BlobStoreError(
        'ERR_BLOB_CONFIG_INVALID',
        `queueSize must be an integer from 1 to 16, got ${String(queueSize)}`,
      );
    }
    this.client = client;
    this.bucket = bucket;
    this.prefix = prefix;
    this.partSizeBytes = partSizeBytes;
    this.queueSize = queueSize;
    this.maxBlobSizeBytes = checkMaxBlobSize(
      options.maxBlobSizeBytes ?? DEFAULT_MAX_BLOB_SIZE_BYTES,
      DEFAULT_MAX_BLOB_SIZE_BYTES,
      'S3BlobStore',
    );
    const defaultPartSizeBytes = options.uploadPartSizeBytes ?? DEFAULT_UPLOAD_PART_SIZE_BYTES;
    if (
      !Number.isSafeInteger(defaultPartSizeBytes) ||
      defaultPartSizeBytes < MIN_PART_SIZE_BYTES ||
      defaultPartSizeBytes > MAX_UPLOAD_PART_SIZE_BYTES
    ) {
      throw new BlobStoreError(
        'ERR_BLOB_CONFIG_INVALID',
        `S3BlobStore: uploadPartSizeBytes must be an integer from ${MIN_PART_SIZE_BYTES} to ${MAX_UPLOAD_PART_SIZE_BYTES}, got ${String(defaultPartSizeBytes)}`,
      );
    }
    this.uploadLimits = {
      minPartSizeBytes: MIN_PART_SIZE_BYTES,
      maxPartSizeBytes: MAX_UPLOAD_PART_SIZE_BYTES,
      defaultPartSizeBytes,
      maxParts: MAX_UPLOAD_PARTS,
    };
    this.#uploads = new S3Uploads(this);
  }

  /**
   * A store configured from ABOTA_S3_BUCKET (required), ABOTA_S3_ENDPOINT (URL of an
   * S3-compatible service; default AWS), ABOTA_S3_REGION, ABOTA_S3_FORCE_PATH_STYLE
   * (true|false|1|0), ABOTA_S3_PREFIX. Credentials come from the default AWS chain
   * (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile, web identity, instance role).
   */
  static fromEnv(
    env: Env = process.env,
    options: Omit<S3BlobStoreOptions, 'client' | 'bucket' | 'prefix'> = {},
  ): S3BlobStore {
    const bucket = env['ABOTA_S3_BUCKET'];
    if (bucket === undefined || bucket === '') {
      throw new BlobStoreError(
        'ERR_BLOB_CONFIG_INVALID',
        'ABOTA_S3_BUCKET is not set: name the bucket blobs go to',
      );
    }
    const config: S3ClientConfig = {};
    const endpoint = env['ABOTA_S3_ENDPOINT'];
    if (endpoint !== undefined && endpoint !== '') {
      let url: URL;
      try {
        url = new URL(endpoint);
      } catch {
        throw new BlobStoreError(
          'ERR_BLOB_CONFIG_INVALID',
          `ABOTA_S3_ENDPOINT must be an http(s) URL, got ${JSON.stringify(endpoint)}`,
        );
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw new BlobStoreError(
          'ERR_BLOB_CONFIG_INVALID',
          `ABOTA_S3_ENDPOINT must be an http(s) URL, got ${JSON.stringify(endpoint)}`,
        );
      }
      config.endpoint = endpoint;
    }
    const region = env['ABOTA_S3_REGION'];
    if (region !== undefined && region !== '') {
      config.region = region;
    } else if (config.endpoint !== undefined) {
      // S3-compatible services ignore the region, but SigV4 needs one.
      config.region = 'us-east-1';
    }
    const forcePathStyle = env['ABOTA_S3_FORCE_PATH_STYLE'];
    if (forcePathStyle !== undefined && forcePathStyle !== '') {
      const value = { true: true, '1': true, false: false, '0': false }[forcePathStyle.toLowerCase()];
      if (value === undefined) {
        throw new BlobStoreError(
          'ERR_BLOB_CONFIG_INVALID',
          `ABOTA_S3_FORCE_PATH_STYLE must be true, false, 1 or 0, got ${JSON.stringify(forcePathStyle)}`,
        );
      }
      config.forcePathStyle = value;
    }
    return new S3BlobStore({
      ...options,
      client: new S3Client(config),
      bucket,
      prefix: env['ABOTA_S3_PREFIX'] ?? '',
    });
  }

  /** The object name a key is stored under. */
  objectKey(key: string): string {
    return `${this.prefix}sha256/${keyToSha256Hex(key)}`;
  }

  /** See BlobStore.put. Whatever happens, `body` is finished with when this settles (closeBody). */
  async put(key: string, body: AsyncIterable<Uint8Array>, opts?: PutOptions): Promise<BlobInfo> {
    try {
      return await this.#put(key, body, opts);
    } finally {
      await closeBody(body);
    }
  }

  async #put(key: string, body: AsyncIterable<Uint8Array>, opts: PutOptions | undefined): Promise<BlobInfo> {
    const sha256Hex = checkPutArguments(key, opts, this.maxBlobSizeBytes);
    const finalKey = this.objectKey(key);
    const existing = await this.head(key);
    if (existing !== undefined) {
      checkExistingSize(key, existing.sizeBytes, opts);
      return existing;
    }
    const verified = new VerifiedBody(body, {
      key,
      sha256Hex,
      sizeBytes: opts?.sizeBytes,
      maxBlobSizeBytes: this.maxBlobSizeBytes,
    });
    // Errors raised while reading the body (ours: mismatch/too large; or the caller's source)
    // are rethrown as they are, not as the SDK's wrapping of a failed upload.
    let bodyFailure: { error: unknown } | undefined;
    async function* feed(): AsyncGenerator<Uint8Array, void, undefined> {
      try {
        yield* verified.chunks();
      } catch (error) {
        bodyFailure = { error };
        throw error;
      }
    }
    const tempKey = `${this.prefix}tmp/${randomUUID()}`;
    // highWaterMark 1: read ahead at most one chunk beyond what the uploader holds.
    const uploadBody = Readable.from(feed(), { highWaterMark: 1 });
    try {
      const upload = new Upload({
        client: this.client,
        params: {
          Bucket: this.bucket,
          Key: tempKey,
          Body: uploadBody,
          ContentType: 'application/octet-stream',
        },
        partSize: this.partSizeBytes,
        queueSize: this.queueSize,
        leavePartsOnError: false,
      });
      try {
        await upload.done();
      } catch (error) {
        if (bodyFailure !== undefined) throw bodyFailure.error;
        throw this.#s3Error('uploading', tempKey, error);
      }
      if (!verified.verified) {
        throw new BlobStoreError(
          'ERR_BLOB_STORE_IO',
          `upload of ${key} finished before its body was verified`,
        );
      }
      const uploadedSize = await this.#headObject(tempKey);
      if (uploadedSize !== verified.sizeBytes) {
        throw new BlobStoreError(
          'ERR_BLOB_STORE_IO',
          `s3://${this.bucket}/${tempKey} holds ${String(uploadedSize)} bytes after uploading ${verified.sizeBytes}; ${key} not stored`,
        );
      }
      await copyObject(this.client, this.bucket, tempKey, finalKey);
      return { key, sizeBytes: verified.sizeBytes };
    } finally {
      // A failed upload stops reading mid-body; destroying its stream unwinds feed() and so
      // releases the caller's body.
      uploadBody.destroy();
      // Best effort: a temp object left by a failure here is never served (only final keys are);
      // a lifecycle rule on `<prefix>tmp/` removes leftovers (README).
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: tempKey })).catch(() => {});
    }
  }

  async get(key: string, range?: ByteRange): Promise<BlobRead> {
    const objectKey = this.objectKey(key);
    checkRange(key, range);
    let response: GetObjectCommandOutput;
    try {
      response = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: objectKey,
          ...(range === undefined ? {} : { Range: rangeHeader(range) }),
        }),
      );
    } catch (error) {
      if (isS3Error(error, 'NoSuchKey', 404)) {
        throw new BlobStoreError(
          'ERR_BLOB_NOT_FOUND',
          `no blob ${key} in s3://${this.bucket}/${this.prefix}`,
        );
      }
      if (range !== undefined && isS3Error(error, 'InvalidRange', 416)) {
        // S3 does not say the size in a typed field; ask for it so the caller can answer
        // `Content-Range: bytes */<size>`.
        const size = await this.#headObject(objectKey);
        if (size === undefined) {
          throw new BlobStoreError(
            'ERR_BLOB_NOT_FOUND',
            `no blob ${key} in s3://${this.bucket}/${this.prefix}`,
          );
        }
        throw unsatisfiable(key, range, size);
      }
      throw this.#s3Error('reading', objectKey, error);
    }
    const stream = response.Body;
    if (!(stream instanceof Readable)) {
      throw new BlobStoreError('ERR_BLOB_STORE_IO', `GetObject of ${objectKey} returned no Node stream body`);
    }
    const where = `s3://${this.bucket}/${objectKey}`;
    let resolved: { start: number; end: number; total: number };
    try {
      if (range === undefined) {
        const total = response.ContentLength;
        if (total === undefined) throw new Error('no Content-Length in the response');
        resolved = { start: 0, end: total - 1, total };
      } else {
        resolved = rangeFromContentRange(key, range, response.ContentRange);
      }
    } catch (error) {
      stream.destroy();
      if (error instanceof BlobStoreError) throw error;
      throw new BlobStoreError(
        'ERR_BLOB_STORE_IO',
        `GetObject of ${where}: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    }
    const { start, end, total } = resolved;
    if (end < start) {
      stream.destroy();
      return { body: emptyBody, totalSizeBytes: total, start, end };
    }
    return { body: streamBody(stream, end - start + 1, where), totalSizeBytes: total, start, end };
  }

  async head(key: string): Promise<BlobInfo | undefined> {
    const size = await this.#headObject(this.objectKey(key));
    return size === undefined ? undefined : { key, sizeBytes: size };
  }

  async delete(key: string): Promise<void> {
    const objectKey = this.objectKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: objectKey }));
    } catch (error) {
      if (isS3Error(error, 'NoSuchKey', 404)) return;
      throw this.#s3Error('deleting', objectKey, error);
    }
  }

  /** A SigV4 presigned GetObject URL; plain HTTP clients may add `Range` (it is not signed). */
  async presignGet(key: string, opts: PresignOptions): Promise<string | undefined> {
    const objectKey = this.objectKey(key);
    checkPresignOptions(opts);
    try {
      return await getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: objectKey }), {
        expiresIn: opts.expiresInSeconds,
      });
    } catch (error) {
      throw this.#s3Error('presigning', objectKey, error);
    }
  }

  /** HeadBucket: the bucket exists and these credentials may use it. */
  async check(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (error) {
      throw new BlobStoreError(
        'ERR_BLOB_STORE_UNAVAILABLE',
        `S3 bucket ${this.bucket} is not usable: ${describeS3Error(error)}`,
        { cause: error },
      );
    }
  }

  async #headObject(objectKey: string): Promise<number | undefined> {
    try {
      const response = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: objectKey }));
      if (response.ContentLength === undefined) {
        throw new BlobStoreError(
          'ERR_BLOB_STORE_IO',
          `HeadObject of ${objectKey} returned no Content-Length`,
        );
      }
      return response.ContentLength;
    } catch (error) {
      if (error instanceof BlobStoreError) throw error;
      // HEAD responses have no body, so S3 can only say "NotFound" (404).
      if (isS3Error(error, 'NotFound', 404) || isS3Error(error, 'NoSuchKey', 404)) return undefined;
      throw this.#s3Error('inspecting', objectKey, error);
    }
  }

  // ---- upload sessions (s3-uploads.ts; objects under `<prefix>uploads/<uploadId>/`) ----

  createUpload(key: string, opts: CreateUploadOptions): Promise<UploadSession> {
    return this.#uploads.create(key, opts);
  }

  uploadPart(
    uploadId: string,
    partNumber: number,
    body: AsyncIterable<Uint8Array>,
    opts?: UploadPartOptions,
  ): Promise<UploadedPart> {
    return this.#uploads.uploadPart(uploadId, partNumber, body, opts);
  }

  getUpload(uploadId: string): Promise<UploadSession> {
    return this.#uploads.get(uploadId);
  }

  listUploads(opts?: { key?: string; limit?: number }): Promise<UploadSession[]> {
    return this.#uploads.list(opts);
  }

  completeUpload(uploadId: string): Promise<CompletedUpload> {
    return this.#uploads.complete(uploadId);
  }

  abortUpload(uploadId: string): Promise<void> {
    return this.#uploads.abort(uploadId);
  }

  gcUploads(olderThan: Date): Promise<number> {
    return this.#uploads.gc(olderThan);
  }

  #s3Error(what: string, objectKey: string, error: unknown): BlobStoreError {
    return s3Error(this.bucket, what, objectKey, error);
  }
}
