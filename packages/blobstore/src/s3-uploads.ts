// Upload sessions of S3BlobStore: an S3 multipart upload into a staging object, with the session's
// state in the bucket itself so any replica can continue it:
//   <prefix>uploads/<uploadId>/session.json        SessionRecord + the S3 multipart UploadId
//   <prefix>uploads/<uploadId>/part-<00001>.json   { partNumber, sizeBytes, sha256, etag }, written
//                                                  after S3 accepted the part
//   <prefix>uploads/<uploadId>/blob                the staging object (after CompleteMultipartUpload)
// A part is held in memory (≤ 64 MiB) and verified before UploadPart, so a wrong or cut-off part
// never reaches S3. Completion assembles the staging object, reads it back through SHA-256 and only
// when digest and size match copies it to `<prefix>sha256/<hex>`. The part records, not S3's
// ListParts, say what was received: they carry each part's SHA-256, which ListParts cannot.

import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type {
  BlobInfo,
  CompletedUpload,
  CreateUploadOptions,
  UploadedPart,
  UploadLimits,
  UploadPartOptions,
  UploadSession,
} from './blob-store.js';
import { closeBody } from './checks.js';
import { BlobStoreError } from './errors.js';
import {
  copyObject,
  deleteObject,
  isS3Error,
  type ListedObject,
  listObjects,
  readSmallObject,
  s3Error,
  writeSmallObject,
} from './s3-objects.js';
import {
  assertUploadId,
  checkPartDigest,
  checkPartOptions,
  expectedPartSize,
  incomplete,
  MAX_SESSION_RECORD_BYTES,
  mapLimited,
  missingParts,
  newUploadId,
  parseSessionRecord,
  planSession,
  readPart,
  type SessionRecord,
  uploadNotFound,
} from './upload-session.js';
import { VerifiedBody } from './verified-body.js';

/** What the uploads need from the S3BlobStore they belong to. */
export interface S3UploadHost {
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly maxBlobSizeBytes: number;
  readonly uploadLimits: UploadLimits;
  objectKey(key: string): string;
  head(key: string): Promise<BlobInfo | undefined>;
}

type S3SessionRecord = SessionRecord & { s3UploadId: string };

const PART_RECORD = /part-(\d{5})\.json$/;
/** Parallel small-object reads/deletes per call. */
const CONCURRENCY = 16;
/** Bounds one listing: a session has at most 10,000 parts plus its record and staging object. */
const MAX_LISTED = 20_000;

export class S3Uploads {
  readonly #host: S3UploadHost;

  constructor(host: S3UploadHost) {
    this.#host = host;
  }

  get #root(): string {
    return `${this.#host.prefix}uploads/`;
  }

  #sessionPrefix(uploadId: string): string {
    assertUploadId(uploadId);
    return `${this.#root}${uploadId}/`;
  }

  #where(): string {
    return `s3://${this.#host.bucket}/${this.#root}`;
  }

  async create(key: string, opts: CreateUploadOptions): Promise<UploadSession> {
    const { client, bucket } = this.#host;
    const plan = planSession(key, opts, this.#host.uploadLimits, this.#host.maxBlobSizeBytes);
    const uploadId = newUploadId();
    const prefix = this.#sessionPrefix(uploadId);
    const staging = `${prefix}blob`;
    let s3UploadId: string | undefined;
    try {
      const created = await client.send(
        new CreateMultipartUploadCommand({
          Bucket: bucket,
          Key: staging,
          ContentType: 'application/octet-stream',
        }),
      );
      s3UploadId = created.UploadId;
    } catch (error) {
      throw s3Error(bucket, 'starting a multipart upload to', staging, error);
    }
    if (s3UploadId === undefined || s3UploadId === '' || s3UploadId.length > 1024) {
      throw new BlobStoreError(
        'ERR_BLOB_STORE_IO',
        `CreateMultipartUpload of ${staging} returned no usable UploadId`,
      );
    }
    const createdAt = new Date();
    const record: S3SessionRecord = {
      schemaVersion: 1,
      uploadId,
      ...plan,
      createdAt: createdAt.toISOString(),
      s3UploadId,
    };
    try {
      await writeSmallObject(client, bucket, `${prefix}session.json`, JSON.stringify(record));
    } catch (error) {
      await this.#abortMultipart(staging, s3UploadId);
      throw error;
    }
    return view(record, [], createdAt);
  }

  async #record(uploadId: string): Promise<S3SessionRecord> {
    const path = `${this.#sessionPrefix(uploadId)}session.json`;
    const text = await readSmallObject(this.#host.client, this.#host.bucket, path, MAX_SESSION_RECORD_BYTES);
    if (text === undefined) throw uploadNotFound(uploadId, this.#where());
    const where = `s3://${this.#host.bucket}/${path}`;
    const record = parseSessionRecord(text, uploadId, where);
    const s3UploadId = (JSON.parse(text) as { s3UploadId?: unknown }).s3UploadId;
    if (typeof s3UploadId !== 'string' || s3UploadId === '' || s3UploadId.length > 1024) {
      throw new BlobStoreError(
        'ERR_BLOB_STORE_IO',
        `${where} names no S3 multipart upload; abort the session`,
      );
    }
    return { ...record, s3UploadId };
  }

  /** The recorded parts (with the ETags S3 gave them) and the newest object's time. */
  async #parts(
    record: S3SessionRecord,
  ): Promise<{ parts: (UploadedPart & { etag: string })[]; latest: number; objects: ListedObject[] }> {
    const { client, bucket } = this.#host;
    const { objects } = await listObjects(client, bucket, this.#sessionPrefix(record.uploadId), {
      maxEntries: MAX_LISTED,
    });
    const latest = Math.max(0, ...objects.map((o) => o.lastModified?.getTime() ?? 0));
    const partKeys = objects.filter((o) => PART_RECORD.test(o.key));
    const read = await mapLimited(partKeys, CONCURRENCY, async (o) => {
      const partNumber = Number(PART_RECORD.exec(o.key)?.[1]);
      if (partNumber < 1 || partNumber > record.partCount) return undefined;
      const text = await readSmallObject(client, bucket, o.key, 4096);
      if (text === undefined) return undefined; // replaced or aborted meanwhile
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        return undefined;
      }
      const r = value as Record<string, unknown>;
      const part = {
        partNumber,
        sizeBytes: r['sizeBytes'],
        sha256: r['sha256'],
        etag: r['etag'],
      };
      // A record that does not fit its session is not counted: the part will be sent again.
      if (
        r['partNumber'] !== partNumber ||
        part.sizeBytes !== expectedPartSize(record, partNumber) ||
        typeof part.sha256 !== 'string' ||
        !/^[0-9a-f]{64}$/.test(part.sha256) ||
        typeof part.etag !== 'string' ||
        part.etag === ''
      ) {
        return undefined;
      }
      return part as UploadedPart & { etag: string };
    });
    const parts = read.filter((p) => p !== undefined).sort((a, b) => a.partNumber - b.partNumber);
    return { parts, latest, objects };
  }

  async get(uploadId: string): Promise<UploadSession> {
    const record = await this.#record(uploadId);
    const { parts, latest } = await this.#parts(record);
    return view(
      record,
      parts.map(({ partNumber, sizeBytes, sha256 }) => ({ partNumber, sizeBytes, sha256 })),
      new Date(Math.max(Date.parse(record.createdAt), latest)),
    );
  }

  async uploadPart(
    uploadId: string,
    partNumber: number,
    body: AsyncIterable<Uint8Array>,
    opts: UploadPartOptions | undefined,
  ): Promise<UploadedPart> {
    try {
      return await this.#uploadPart(uploadId, partNumber, body, opts);
    } finally {
      await closeBody(body);
    }
  }

  async #uploadPart(
    uploadId: string,
    partNumber: number,
    body: AsyncIterable<Uint8Array>,
    opts: UploadPartOptions | undefined,
  ): Promise<UploadedPart> {
    const { client, bucket } = this.#host;
    const record = await this.#record(uploadId);
    const sizeBytes = checkPartOptions(record, partNumber, opts);
    const what = `part ${partNumber} of upload ${uploadId}`;
    const hash = createHash('sha256');
    const bytes = await readPart(body, sizeBytes, what, hash);
    const sha256 = hash.digest('hex');
    checkPartDigest(sha256, opts?.sha256, what);
    const prefix = this.#sessionPrefix(uploadId);
    let etag: string | undefined;
    try {
      const response = await client.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: `${prefix}blob`,
          UploadId: record.s3UploadId,
          PartNumber: partNumber,
          Body: bytes,
          ContentLength: sizeBytes,
        }),
      );
      etag = response.ETag;
    } catch (error) {
      if (isS3Error(error, 'NoSuchUpload', 404)) throw uploadNotFound(uploadId, this.#where());
      throw s3Error(bucket, `uploading ${what} to`, `${prefix}blob`, error);
    }
    if (etag === undefined || etag === '') {
      throw new BlobStoreError('ERR_BLOB_STORE_IO', `UploadPart of ${what} returned no ETag`);
    }
    const part: UploadedPart = { partNumber, sizeBytes, sha256 };
    await writeSmallObject(
      client,
      bucket,
      `${prefix}part-${String(partNumber).padStart(5, '0')}.json`,
      JSON.stringify({ ...part, etag }),
    );
    return part;
  }

  async complete(uploadId: string): Promise<CompletedUpload> {
    const { client, bucket } = this.#host;
    const record = await this.#record(uploadId);
    const { parts } = await this.#parts(record);
    const missing = missingParts(record, parts);
    if (missing.length > 0) throw incomplete(record, missing);
    const existing = await this.#host.head(record.key);
    if (existing !== undefined) {
      await this.abort(uploadId);
      return { ...existing, created: false };
    }
    const staging = `${this.#sessionPrefix(uploadId)}blob`;
    try {
      await client.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: staging,
          UploadId: record.s3UploadId,
          MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag })) },
        }),
      );
    } catch (error) {
      if (!isS3Error(error, 'NoSuchUpload', 404)) throw s3Error(bucket, 'completing', staging, error);
      // Completed already: by a concurrent complete (then the blob may be there by now), or by an
      // earlier try that failed after this step (then the staging object is there to verify).
      const published = await this.#host.head(record.key);
      if (published !== undefined) return { ...published, created: false };
    }
    try {
      await this.#verifyStaging(record, staging);
    } catch (error) {
      if (
        error instanceof BlobStoreError &&
        (error.code === 'ERR_BLOB_DIGEST_MISMATCH' || error.code === 'ERR_BLOB_SIZE_MISMATCH')
      ) {
        await this.abort(uploadId);
        throw new BlobStoreError(
          error.code,
          `upload ${uploadId} assembled to the wrong blob: ${error.message}; the session was aborted`,
          { cause: error },
        );
      }
      throw error;
    }
    await copyObject(client, bucket, staging, this.#host.objectKey(record.key));
    await this.abort(uploadId);
    return { key: record.key, sizeBytes: record.sizeBytes, created: true };
  }

  /** Reads the assembled staging object back through SHA-256 and a byte count. */
  async #verifyStaging(record: S3SessionRecord, staging: string): Promise<void> {
    const { client, bucket } = this.#host;
    let stream: Readable;
    try {
      const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: staging }));
      if (!(response.Body instanceof Readable)) throw new Error('GetObject returned no Node stream body');
      stream = response.Body;
    } catch (error) {
      if (isS3Error(error, 'NoSuchKey', 404)) throw uploadNotFound(record.uploadId, this.#where());
      throw s3Error(bucket, 'reading back', staging, error);
    }
    const verified = new VerifiedBody(stream, {
      key: record.key,
      sha256Hex: record.sha256,
      sizeBytes: record.sizeBytes,
      maxBlobSizeBytes: this.#host.maxBlobSizeBytes,
    });
    try {
      for await (const _ of verified.chunks()) {
        // Hashing and counting is all that is needed.
      }
    } finally {
      stream.destroy();
    }
  }

  async #abortMultipart(staging: string, s3UploadId: string): Promise<void> {
    // Best effort: the multipart upload may be completed or gone already, and some S3-compatible
    // servers (s3rver) do not implement AbortMultipartUpload. A bucket lifecycle rule
    // (AbortIncompleteMultipartUpload) is the backstop (README).
    await this.#host.client
      .send(
        new AbortMultipartUploadCommand({ Bucket: this.#host.bucket, Key: staging, UploadId: s3UploadId }),
      )
      .catch(() => {});
  }

  async abort(uploadId: string): Promise<void> {
    const { client, bucket } = this.#host;
    const prefix = this.#sessionPrefix(uploadId);
    const record = await this.#record(uploadId).catch((error: unknown) => {
      if (error instanceof BlobStoreError && error.code === 'ERR_BLOB_STORE_IO') return undefined;
      if (error instanceof BlobStoreError && error.code === 'ERR_BLOB_UPLOAD_NOT_FOUND') return undefined;
      throw error;
    });
    if (record !== undefined) await this.#abortMultipart(`${prefix}blob`, record.s3UploadId);
    const { objects } = await listObjects(client, bucket, prefix, { maxEntries: MAX_LISTED });
    const sessionKey = `${prefix}session.json`;
    // The record goes last, so a failure half-way leaves a session that gc or a retry finishes.
    await mapLimited(
      objects.filter((o) => o.key !== sessionKey),
      CONCURRENCY,
      (o) => deleteObject(client, bucket, o.key),
    );
    await deleteObject(client, bucket, sessionKey);
  }

  async #ids(): Promise<string[]> {
    const { prefixes } = await listObjects(this.#host.client, this.#host.bucket, this.#root, {
      delimiter: '/',
      maxEntries: MAX_LISTED,
    });
    return prefixes.map((p) => p.slice(this.#root.length, -1)).filter((id) => /^[0-9a-f]{32}$/.test(id));
  }

  async list(opts: { key?: string; limit?: number } = {}): Promise<UploadSession[]> {
    const limit = opts.limit ?? 100;
    const records = (
      await mapLimited(await this.#ids(), CONCURRENCY, (id) => this.#record(id).catch(() => undefined))
    ).filter((r): r is S3SessionRecord => r !== undefined && (opts.key === undefined || r.key === opts.key));
    records.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    const sessions: UploadSession[] = [];
    for (const record of records.slice(0, limit)) {
      const session = await this.get(record.uploadId).catch(() => undefined);
      if (session !== undefined) sessions.push(session);
    }
    return sessions;
  }

  async gc(olderThan: Date): Promise<number> {
    let removed = 0;
    for (const id of await this.#ids()) {
      let updatedAt: number;
      try {
        updatedAt = (await this.get(id)).updatedAt.getTime();
      } catch {
        // No readable record (a crash while creating it, or a part recorded after an abort):
        // judge by the newest object's age.
        const { objects } = await listObjects(this.#host.client, this.#host.bucket, this.#sessionPrefix(id), {
          maxEntries: MAX_LISTED,
        });
        updatedAt = Math.max(0, ...objects.map((o) => o.lastModified?.getTime() ?? 0));
      }
      if (updatedAt < olderThan.getTime()) {
        await this.abort(id);
        removed++;
      }
    }
    return removed;
  }
}

function view(record: SessionRecord, parts: UploadedPart[], updatedAt: Date): UploadSession {
  return {
    uploadId: record.uploadId,
    key: record.key,
    sizeBytes: record.sizeBytes,
    partSizeBytes: record.partSizeBytes,
    partCount: record.partCount,
    createdAt: new Date(record.createdAt),
    updatedAt,
    parts,
    receivedBytes: parts.reduce((n, p) => n + p.sizeBytes, 0),
  };
}
