// Upload sessions of FsBlobStore. Layout under the store's root (beside `sha256/`, never inside it):
//   uploads/<uploadId>/session.json            the SessionRecord, written once (temp + rename)
//   uploads/<uploadId>/part-<00001>.<sha256>   one verified part; the name carries its digest, so
//                                              a part and its record appear in one atomic rename
//   uploads/<uploadId>/.tmp-<uuid>             a part being received
// Completion streams the parts in order through FsBlobStore.put, which hashes, fsyncs and renames
// into `sha256/<hex>` only when the whole blob's digest and size match.

import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type {
  BlobInfo,
  CompletedUpload,
  CreateUploadOptions,
  PutOptions,
  UploadedPart,
  UploadLimits,
  UploadPartOptions,
  UploadSession,
} from './blob-store.js';
import { closeBody } from './checks.js';
import { BlobStoreError } from './errors.js';
import {
  assertUploadId,
  checkPartDigest,
  checkPartOptions,
  expectedPartSize,
  incomplete,
  MAX_SESSION_RECORD_BYTES,
  missingParts,
  newUploadId,
  parseSessionRecord,
  planSession,
  type SessionRecord,
  uploadNotFound,
} from './upload-session.js';

const SESSION_FILE = 'session.json';
const PART_FILE = /^part-(\d{5})\.([0-9a-f]{64})$/;
const UPLOAD_ID_DIR = /^[0-9a-f]{32}$/;

/** What the uploads need from the store they belong to. */
export interface FsUploadHost {
  readonly rootDir: string;
  readonly maxBlobSizeBytes: number;
  put(key: string, body: AsyncIterable<Uint8Array>, opts?: PutOptions): Promise<BlobInfo>;
  head(key: string): Promise<BlobInfo | undefined>;
}

function errnoCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string'
    ? error.code
    : undefined;
}

function ioError(what: string, path: string, cause: unknown): BlobStoreError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new BlobStoreError('ERR_BLOB_STORE_IO', `${what} ${path} failed: ${reason}`, { cause });
}

const partName = (partNumber: number, sha256: string): string =>
  `part-${String(partNumber).padStart(5, '0')}.${sha256}`;

export class FsUploads {
  readonly #host: FsUploadHost;
  readonly #limits: UploadLimits;
  readonly #dir: string;

  constructor(host: FsUploadHost, limits: UploadLimits) {
    this.#host = host;
    this.#limits = limits;
    this.#dir = join(host.rootDir, 'uploads');
  }

  #sessionDir(uploadId: string): string {
    assertUploadId(uploadId);
    return join(this.#dir, uploadId);
  }

  async create(key: string, opts: CreateUploadOptions): Promise<UploadSession> {
    const plan = planSession(key, opts, this.#limits, this.#host.maxBlobSizeBytes);
    const uploadId = newUploadId();
    const dir = this.#sessionDir(uploadId);
    const createdAt = new Date();
    const record: SessionRecord = { schemaVersion: 1, uploadId, ...plan, createdAt: createdAt.toISOString() };
    const temp = join(dir, `.tmp-${randomUUID()}`);
    try {
      await mkdir(this.#dir, { recursive: true });
      await mkdir(dir);
      const handle = await open(temp, 'wx', 0o644);
      try {
        await handle.writeFile(JSON.stringify(record));
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, join(dir, SESSION_FILE));
    } catch (error) {
      await rm(dir, { recursive: true, force: true }).catch(() => {});
      throw ioError('creating upload session', dir, error);
    }
    return this.#view(record, [], createdAt);
  }

  async #record(uploadId: string): Promise<SessionRecord> {
    const path = join(this.#sessionDir(uploadId), SESSION_FILE);
    let text: string;
    try {
      const handle = await open(path, 'r');
      try {
        if ((await handle.stat()).size > MAX_SESSION_RECORD_BYTES)
          throw new BlobStoreError('ERR_BLOB_STORE_IO', `${path} is too large to be a session record`);
        text = await handle.readFile('utf8');
      } finally {
        await handle.close();
      }
    } catch (error) {
      const code = errnoCode(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') throw uploadNotFound(uploadId, this.#dir);
      if (error instanceof BlobStoreError) throw error;
      throw ioError('reading', path, error);
    }
    return parseSessionRecord(text, uploadId, path);
  }

  /** Parts on disk with their modification times; files of the wrong size are not counted. */
  async #parts(
    record: SessionRecord,
  ): Promise<{ parts: UploadedPart[]; names: Map<number, string>; latest: number }> {
    const dir = this.#sessionDir(record.uploadId);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (error) {
      const code = errnoCode(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') throw uploadNotFound(record.uploadId, this.#dir);
      throw ioError('listing', dir, error);
    }
    const byNumber = new Map<number, { part: UploadedPart; name: string; mtimeMs: number }>();
    let latest = 0;
    for (const name of names) {
      const match = PART_FILE.exec(name);
      if (match === null) continue;
      const partNumber = Number(match[1]);
      if (partNumber < 1 || partNumber > record.partCount) continue;
      const info = await stat(join(dir, name)).catch(() => undefined);
      if (info === undefined || info.size !== expectedPartSize(record, partNumber)) continue;
      latest = Math.max(latest, info.mtimeMs);
      const previous = byNumber.get(partNumber);
      if (previous !== undefined && previous.mtimeMs > info.mtimeMs) continue;
      byNumber.set(partNumber, {
        part: { partNumber, sizeBytes: info.size, sha256: match[2] ?? '' },
        name,
        mtimeMs: info.mtimeMs,
      });
    }
    const sorted = [...byNumber.values()].sort((a, b) => a.part.partNumber - b.part.partNumber);
    return {
      parts: sorted.map((p) => p.part),
      names: new Map(sorted.map((p) => [p.part.partNumber, p.name])),
      latest,
    };
  }

  #view(record: SessionRecord, parts: UploadedPart[], updatedAt: Date): UploadSession {
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

  async get(uploadId: string): Promise<UploadSession> {
    const record = await this.#record(uploadId);
    const { parts, latest } = await this.#parts(record);
    const created = Date.parse(record.createdAt);
    return this.#view(record, parts, new Date(Math.max(created, latest)));
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
    const record = await this.#record(uploadId);
    const sizeBytes = checkPartOptions(record, partNumber, opts);
    const dir = this.#sessionDir(uploadId);
    const what = `part ${partNumber} of upload ${uploadId}`;
    const temp = join(dir, `.tmp-${randomUUID()}`);
    let handle: FileHandle | undefined;
    try {
      try {
        handle = await open(temp, 'wx', 0o644);
      } catch (error) {
        const code = errnoCode(error);
        if (code === 'ENOENT' || code === 'ENOTDIR') throw uploadNotFound(uploadId, this.#dir);
        throw ioError('creating', temp, error);
      }
      const hash = createHash('sha256');
      let received = 0;
      for await (const chunk of body) {
        if (!(chunk instanceof Uint8Array)) {
          throw new BlobStoreError(
            'ERR_BLOB_ARGUMENT_INVALID',
            `body of ${what} must yield Uint8Array chunks, got a ${typeof chunk} at byte ${received}`,
          );
        }
        received += chunk.byteLength;
        if (received > sizeBytes) {
          throw new BlobStoreError(
            'ERR_BLOB_SIZE_MISMATCH',
            `${what} is longer than its ${sizeBytes} bytes; nothing stored`,
          );
        }
        hash.update(chunk);
        let offset = 0;
        while (offset < chunk.byteLength) {
          try {
            offset += (await handle.write(chunk, offset, chunk.byteLength - offset)).bytesWritten;
          } catch (error) {
            throw ioError('writing', temp, error);
          }
        }
      }
      if (received !== sizeBytes) {
        throw new BlobStoreError(
          'ERR_BLOB_SIZE_MISMATCH',
          `${what} has ${received} bytes, expected ${sizeBytes}; nothing stored`,
        );
      }
      const sha256 = hash.digest('hex');
      checkPartDigest(sha256, opts?.sha256, what);
      const name = partName(partNumber, sha256);
      try {
        await handle.sync();
        await handle.close();
        handle = undefined;
        await rename(temp, join(dir, name));
      } catch (error) {
        const code = errnoCode(error);
        if (code === 'ENOENT' || code === 'ENOTDIR') throw uploadNotFound(uploadId, this.#dir);
        throw ioError('storing', join(dir, name), error);
      }
      // An earlier copy of this part with other bytes is replaced.
      const prefix = `part-${String(partNumber).padStart(5, '0')}.`;
      for (const other of await readdir(dir).catch(() => [] as string[])) {
        if (other.startsWith(prefix) && other !== name) await unlink(join(dir, other)).catch(() => {});
      }
      return { partNumber, sizeBytes, sha256 };
    } catch (error) {
      await handle?.close().catch(() => {});
      await unlink(temp).catch(() => {});
      throw error;
    }
  }

  async complete(uploadId: string): Promise<CompletedUpload> {
    const record = await this.#record(uploadId);
    const { parts, names } = await this.#parts(record);
    const missing = missingParts(record, parts);
    if (missing.length > 0) throw incomplete(record, missing);
    const existing = await this.#host.head(record.key);
    if (existing !== undefined) {
      await this.abort(uploadId);
      return { ...existing, created: false };
    }
    const dir = this.#sessionDir(uploadId);
    async function* assembled(): AsyncGenerator<Uint8Array> {
      for (let n = 1; n <= record.partCount; n++) {
        const stream = createReadStream(join(dir, names.get(n) ?? ''), { highWaterMark: 1 << 20 });
        try {
          for await (const chunk of stream) yield chunk as Buffer;
        } finally {
          stream.destroy();
        }
      }
    }
    let info: BlobInfo;
    try {
      info = await this.#host.put(record.key, assembled(), {
        sizeBytes: record.sizeBytes,
        sha256: record.sha256,
      });
    } catch (error) {
      // The parts are not the announced blob: nothing was stored, and the session is useless.
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
      // A concurrent complete of the same session (another replica) may have stored the blob and
      // removed the parts under us: then the blob is there, and that is success.
      const stored = await this.#host.head(record.key).catch(() => undefined);
      if (stored !== undefined && stored.sizeBytes === record.sizeBytes) return { ...stored, created: false };
      throw error;
    }
    await this.abort(uploadId);
    return { ...info, created: true };
  }

  async abort(uploadId: string): Promise<void> {
    const dir = this.#sessionDir(uploadId);
    try {
      await rm(dir, { recursive: true, force: true });
    } catch (error) {
      throw ioError('removing upload session', dir, error);
    }
  }

  async #ids(): Promise<string[]> {
    try {
      return (await readdir(this.#dir)).filter((name) => UPLOAD_ID_DIR.test(name));
    } catch (error) {
      const code = errnoCode(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') return [];
      throw ioError('listing', this.#dir, error);
    }
  }

  async list(opts: { key?: string; limit?: number } = {}): Promise<UploadSession[]> {
    const limit = opts.limit ?? 100;
    const records: SessionRecord[] = [];
    for (const id of await this.#ids()) {
      const record = await this.#record(id).catch(() => undefined);
      if (record !== undefined && (opts.key === undefined || record.key === opts.key)) records.push(record);
    }
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
        // No readable record (a crash while creating it): judge by the directory's own age.
        const info = await stat(join(this.#dir, id)).catch(() => undefined);
        if (info === undefined) continue;
        updatedAt = info.mtimeMs;
      }
      if (updatedAt < olderThan.getTime()) {
        await this.abort(id);
        removed++;
      }
    }
    return removed;
  }
}
