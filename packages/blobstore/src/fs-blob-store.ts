// BlobStore on a local filesystem: the embedded default (`./data/blobs`). Layout
// `<rootDir>/sha256/<hex>`, the same as a release directory's `blobs/` (docs/CONTRACTS.md), so
// a release dir's blobs/ can be served directly. Writes go to a temporary file in the same
// directory, are fsynced and renamed into place: a crash leaves either no blob or a whole one.

import { randomUUID } from 'node:crypto';
import { type FileHandle, mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
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
import { FsUploads } from './fs-uploads.js';
import { keyToSha256Hex } from './key.js';
import { checkRange, resolveRange } from './range.js';
import { emptyBody, streamBody } from './stream-body.js';
import {
  DEFAULT_UPLOAD_PART_SIZE_BYTES,
  MAX_UPLOAD_PART_SIZE_BYTES,
  MAX_UPLOAD_PARTS,
} from './upload-session.js';
import { VerifiedBody } from './verified-body.js';

export interface FsBlobStoreOptions {
  /** Largest blob `put` accepts (default 5 GiB; any safe integer is allowed here). */
  maxBlobSizeBytes?: number;
  /** Default part size of upload sessions (64 KiB .. 64 MiB; default 8 MiB). */
  uploadPartSizeBytes?: number;
}

/** Parts of an fs upload session may be small: they are files on a local disk. */
const FS_MIN_UPLOAD_PART_SIZE_BYTES = 64 * 1024;

/** Read-side chunk size: the memory bound of one streaming read. */
const READ_CHUNK_BYTES = 64 * 1024;
/** Temporary files start with a dot so they can never be mistaken for a `<hex>` blob. */
const TEMP_PREFIX = '.tmp-';

function errnoCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string'
    ? error.code
    : undefined;
}

function ioError(what: string, path: string, cause: unknown): BlobStoreError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new BlobStoreError('ERR_BLOB_STORE_IO', `${what} ${path} failed: ${reason}`, { cause });
}

export class FsBlobStore implements BlobStore {
  readonly rootDir: string;
  readonly maxBlobSizeBytes: number;
  readonly uploadLimits: UploadLimits;
  readonly #dir: string;
  readonly #uploads: FsUploads;

  constructor(rootDir: string, options: FsBlobStoreOptions = {}) {
    if (typeof rootDir !== 'string' || rootDir === '') {
      throw new BlobStoreError('ERR_BLOB_CONFIG_INVALID', 'FsBlobStore needs a root directory path');
    }
    this.rootDir = rootDir;
    this.#dir = join(rootDir, 'sha256');
    this.maxBlobSizeBytes = checkMaxBlobSize(
      options.maxBlobSizeBytes ?? DEFAULT_MAX_BLOB_SIZE_BYTES,
      Number.MAX_SAFE_INTEGER,
      'FsBlobStore',
    );
    const defaultPartSizeBytes = options.uploadPartSizeBytes ?? DEFAULT_UPLOAD_PART_SIZE_BYTES;
    if (
      !Number.isSafeInteger(defaultPartSizeBytes) ||
      defaultPartSizeBytes < FS_MIN_UPLOAD_PART_SIZE_BYTES ||
      defaultPartSizeBytes > MAX_UPLOAD_PART_SIZE_BYTES
    ) {
      throw new BlobStoreError(
        'ERR_BLOB_CONFIG_INVALID',
        `FsBlobStore: uploadPartSizeBytes must be an integer from ${FS_MIN_UPLOAD_PART_SIZE_BYTES} to ${MAX_UPLOAD_PART_SIZE_BYTES}, got ${String(defaultPartSizeBytes)}`,
      );
    }
    this.uploadLimits = {
      minPartSizeBytes: FS_MIN_UPLOAD_PART_SIZE_BYTES,
      maxPartSizeBytes: MAX_UPLOAD_PART_SIZE_BYTES,
      defaultPartSizeBytes,
      maxParts: MAX_UPLOAD_PARTS,
    };
    this.#uploads = new FsUploads(this, this.uploadLimits);
  }

  /** The file a key is stored in. Safe to join: the key was validated to be `sha256/<hex>`. */
  pathOf(key: string): string {
    return join(this.#dir, keyToSha256Hex(key));
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
    const finalPath = this.pathOf(key);
    const existing = await this.head(key);
    if (existing !== undefined) {
      checkExistingSize(key, existing.sizeBytes, opts);
      return existing;
    }
    try {
      await mkdir(this.#dir, { recursive: true });
    } catch (error) {
      throw ioError('creating directory', this.#dir, error);
    }
    const tempPath = join(this.#dir, `${TEMP_PREFIX}${randomUUID()}`);
    let handle: FileHandle | undefined;
    try {
      try {
        handle = await open(tempPath, 'wx', 0o644);
      } catch (error) {
        throw ioError('creating temporary file', tempPath, error);
      }
      const verified = new VerifiedBody(body, {
        key,
        sha256Hex,
        sizeBytes: opts?.sizeBytes,
        maxBlobSizeBytes: this.maxBlobSizeBytes,
      });
      for await (const chunk of verified.chunks()) {
        await writeAll(handle, chunk, tempPath);
      }
      try {
        // fsync before rename: otherwise a crash can leave the final name on a short file.
        await handle.sync();
        await handle.close();
        handle = undefined;
        await rename(tempPath, finalPath);
      } catch (error) {
        throw ioError('publishing', finalPath, error);
      }
      await syncDirectory(this.#dir);
      return { key, sizeBytes: verified.sizeBytes };
    } catch (error) {
      await handle?.close().catch(() => {});
      await unlink(tempPath).catch(() => {});
      throw error;
    }
  }

  async get(key: string, range?: ByteRange): Promise<BlobRead> {
    const path = this.pathOf(key);
    checkRange(key, range);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      const code = errnoCode(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        throw new BlobStoreError('ERR_BLOB_NOT_FOUND', `no blob ${key} in ${this.rootDir}`);
      }
      throw ioError('opening', path, error);
    }
    try {
      // Size from the open handle, not a separate stat: the bytes streamed are those of this file.
      const { size } = await handle.stat();
      const { start, end } = resolveRange(key, range, size);
      if (end < start) {
        await handle.close();
        return { body: emptyBody, totalSizeBytes: size, start, end };
      }
      const stream = handle.createReadStream({
        start,
        end,
        highWaterMark: READ_CHUNK_BYTES,
        autoClose: true,
      });
      return { body: streamBody(stream, end - start + 1, path), totalSizeBytes: size, start, end };
    } catch (error) {
      await handle.close().catch(() => {});
      if (error instanceof BlobStoreError) throw error;
      throw ioError('reading', path, error);
    }
  }

  async head(key: string): Promise<BlobInfo | undefined> {
    const path = this.pathOf(key);
    try {
      const s = await stat(path);
      if (!s.isFile()) {
        throw new BlobStoreError(
          'ERR_BLOB_STORE_IO',
          `${path} should be a regular file holding ${key}, but is not`,
        );
      }
      return { key, sizeBytes: s.size };
    } catch (error) {
      const code = errnoCode(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      if (error instanceof BlobStoreError) throw error;
      throw ioError('stat of', path, error);
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    try {
      await unlink(path);
    } catch (error) {
      const code = errnoCode(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw ioError('deleting', path, error);
    }
  }

  async presignGet(key: string, opts: PresignOptions): Promise<string | undefined> {
    keyToSha256Hex(key);
    checkPresignOptions(opts);
    return undefined;
  }

  /** Creates `<rootDir>/sha256` if needed and proves it writable by writing and removing a probe file. */
  async check(): Promise<void> {
    const probe = join(this.#dir, `${TEMP_PREFIX}probe-${randomUUID()}`);
    try {
      await mkdir(this.#dir, { recursive: true });
      const handle = await open(probe, 'wx', 0o644);
      try {
        await handle.write(new Uint8Array([0]));
        await handle.sync();
      } finally {
        await handle.close();
      }
      await unlink(probe);
    } catch (error) {
      await unlink(probe).catch(() => {});
      const reason = error instanceof Error ? error.message : String(error);
      throw new BlobStoreError(
        'ERR_BLOB_STORE_UNAVAILABLE',
        `blob directory ${this.#dir} is not writable: ${reason}`,
        { cause: error },
      );
    }
  }

  // ---- upload sessions (fs-uploads.ts; layout `<rootDir>/uploads/<uploadId>/`) ----

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
}

async function writeAll(handle: FileHandle, chunk: Uint8Array, path: string): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) {
    let bytesWritten: number;
    try {
      ({ bytesWritten } = await handle.write(chunk, offset, chunk.byteLength - offset));
    } catch (error) {
      throw ioError('writing', path, error);
    }
    offset += bytesWritten;
  }
}

/** fsync the directory so the rename itself survives a crash (POSIX rename is atomic, not durable). */
async function syncDirectory(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (error) {
    throw ioError('syncing directory', dir, error);
  } finally {
    await handle?.close().catch(() => {});
  }
}
