// Resumable upload sessions (docs/CONTRACTS.md "@abota/blobstore", upload sessions): one large blob
// sent as numbered parts over many requests, possibly to different server replicas, then
// assembled and verified as a whole before it appears under its content address. What both
// stores share lives here: the part geometry, upload ids, the session record and its checks.

import { randomBytes } from 'node:crypto';
import type { UploadedPart, UploadLimits } from './blob-store.js';
import { assertByteCount, checkPutArguments } from './checks.js';
import { BlobStoreError } from './errors.js';
import { assertSha256Hex } from './key.js';

/** S3's limit on parts per multipart upload; the fs store keeps the same so both behave alike. */
export const MAX_UPLOAD_PARTS = 10_000;
export const DEFAULT_UPLOAD_PART_SIZE_BYTES = 8 * 1024 * 1024;
/**
 * Largest part: the S3 store holds one part in memory while verifying it (so a bad part never
 * reaches S3), so this is also its memory bound per part request in flight.
 */
export const MAX_UPLOAD_PART_SIZE_BYTES = 64 * 1024 * 1024;
/** A session record is a few hundred bytes; anything bigger in its place is not one. */
export const MAX_SESSION_RECORD_BYTES = 64 * 1024;

const UPLOAD_ID_PATTERN = /^[0-9a-f]{32}$/;

/** What a store persists when a session is created (the fs and S3 stores add their own fields). */
export interface SessionRecord {
  schemaVersion: 1;
  uploadId: string;
  key: string;
  sha256: string;
  sizeBytes: number;
  partSizeBytes: number;
  partCount: number;
  /** ISO 8601. */
  createdAt: string;
}

/** 128 random bits as 32 lower-case hex characters: unguessable, and safe as a path segment. */
export function newUploadId(): string {
  return randomBytes(16).toString('hex');
}

/** Upload ids become file and object names: only the exact shape newUploadId makes is accepted. */
export function assertUploadId(uploadId: string): void {
  if (typeof uploadId !== 'string' || !UPLOAD_ID_PATTERN.test(uploadId)) {
    throw new BlobStoreError(
      'ERR_BLOB_ARGUMENT_INVALID',
      `upload id must be 32 lower-case hex characters, got ${JSON.stringify(String(uploadId).slice(0, 80))}`,
    );
  }
}

export function uploadNotFound(uploadId: string, where: string): BlobStoreError {
  return new BlobStoreError(
    'ERR_BLOB_UPLOAD_NOT_FOUND',
    `no upload session ${uploadId} in ${where}: it was completed, aborted or expired — start a new one`,
  );
}

/**
 * Validates createUpload's arguments and chooses the part size: the caller's (within the store's
 * bounds) or the store's default, raised when the blob would need more than MAX_UPLOAD_PARTS parts.
 */
export function planSession(
  key: string,
  opts: { sizeBytes: number; sha256?: string; partSizeBytes?: number },
  limits: UploadLimits,
  maxBlobSizeBytes: number,
): Omit<SessionRecord, 'schemaVersion' | 'uploadId' | 'createdAt'> {
  if (opts === undefined || opts.sizeBytes === undefined) {
    throw new BlobStoreError('ERR_BLOB_ARGUMENT_INVALID', `an upload session for ${key} needs its sizeBytes`);
  }
  const sha256 = checkPutArguments(
    key,
    { sizeBytes: opts.sizeBytes, ...(opts.sha256 === undefined ? {} : { sha256: opts.sha256 }) },
    maxBlobSizeBytes,
  );
  if (opts.sizeBytes < 1) {
    throw new BlobStoreError(
      'ERR_BLOB_ARGUMENT_INVALID',
      `an upload session needs at least 1 byte; store the empty blob ${key} with put`,
    );
  }
  let partSizeBytes = opts.partSizeBytes ?? limits.defaultPartSizeBytes;
  if (
    !Number.isSafeInteger(partSizeBytes) ||
    partSizeBytes < limits.minPartSizeBytes ||
    partSizeBytes > limits.maxPartSizeBytes
  ) {
    throw new BlobStoreError(
      'ERR_BLOB_ARGUMENT_INVALID',
      `part size must be an integer from ${limits.minPartSizeBytes} to ${limits.maxPartSizeBytes} bytes, got ${String(opts.partSizeBytes)}`,
    );
  }
  if (Math.ceil(opts.sizeBytes / partSizeBytes) > limits.maxParts) {
    // Round up to a whole MiB so the part size stays a friendly number.
    const needed = Math.ceil(opts.sizeBytes / limits.maxParts / 1048576) * 1048576;
    if (needed > limits.maxPartSizeBytes) {
      throw new BlobStoreError(
        'ERR_BLOB_TOO_LARGE',
        `${key} of ${opts.sizeBytes} bytes needs more than ${limits.maxParts} parts of at most ${limits.maxPartSizeBytes} bytes`,
      );
    }
    partSizeBytes = needed;
  }
  return {
    key,
    sha256,
    sizeBytes: opts.sizeBytes,
    partSizeBytes,
    partCount: Math.ceil(opts.sizeBytes / partSizeBytes),
  };
}

/** The exact size part `partNumber` must have: partSizeBytes for all but the last. */
export function expectedPartSize(session: SessionRecord, partNumber: number): number {
  if (!Number.isSafeInteger(partNumber) || partNumber < 1 || partNumber > session.partCount) {
    throw new BlobStoreError(
      'ERR_BLOB_ARGUMENT_INVALID',
      `part number must be an integer from 1 to ${session.partCount} for upload ${session.uploadId}, got ${String(partNumber)}`,
    );
  }
  return partNumber < session.partCount
    ? session.partSizeBytes
    : session.sizeBytes - (session.partCount - 1) * session.partSizeBytes;
}

/**
 * Checks uploadPart's options against the session before any byte is read: a declared size other
 * than the part's is refused at once; a declared sha256 must be well formed.
 */
export function checkPartOptions(
  session: SessionRecord,
  partNumber: number,
  opts: { sizeBytes?: number; sha256?: string } | undefined,
): number {
  const expected = expectedPartSize(session, partNumber);
  if (opts?.sizeBytes !== undefined) {
    assertByteCount(opts.sizeBytes, `size of part ${partNumber}`);
    if (opts.sizeBytes !== expected) {
      throw new BlobStoreError(
        'ERR_BLOB_SIZE_MISMATCH',
        `part ${partNumber} of upload ${session.uploadId} must be ${expected} bytes, ${opts.sizeBytes} were announced; nothing stored`,
      );
    }
  }
  if (opts?.sha256 !== undefined) assertSha256Hex(opts.sha256, `expected sha256 of part ${partNumber}`);
  return expected;
}

/** Part numbers 1..partCount that are not in `parts`, in order. */
export function missingParts(session: { partCount: number }, parts: readonly UploadedPart[]): number[] {
  const have = new Set(parts.map((p) => p.partNumber));
  const missing: number[] = [];
  for (let n = 1; n <= session.partCount; n++) if (!have.has(n)) missing.push(n);
  return missing;
}

export function incomplete(session: SessionRecord, missing: readonly number[]): BlobStoreError {
  const shown = missing.slice(0, 20).join(', ');
  return new BlobStoreError(
    'ERR_BLOB_UPLOAD_INCOMPLETE',
    `upload ${session.uploadId} of ${session.key} has ${session.partCount - missing.length} of ${session.partCount} parts; missing ${shown}${missing.length > 20 ? `, … (${missing.length} in all)` : ''}`,
  );
}

/** Parses a stored session record, refusing anything that is not exactly one (fail closed). */
export function parseSessionRecord(text: string, uploadId: string, where: string): SessionRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw corrupt(uploadId, where, 'not JSON');
  }
  if (typeof value !== 'object' || value === null) throw corrupt(uploadId, where, 'not an object');
  const r = value as Record<string, unknown>;
  const int = (name: string, min: number): number => {
    const v = r[name];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min)
      throw corrupt(uploadId, where, `${name} is not an integer >= ${min}`);
    return v;
  };
  const str = (name: string): string => {
    const v = r[name];
    if (typeof v !== 'string') throw corrupt(uploadId, where, `${name} is not a string`);
    return v;
  };
  if (r['schemaVersion'] !== 1) throw corrupt(uploadId, where, 'schemaVersion is not 1');
  if (str('uploadId') !== uploadId) throw corrupt(uploadId, where, 'it names another upload');
  const record: SessionRecord = {
    schemaVersion: 1,
    uploadId,
    key: str('key'),
    sha256: str('sha256'),
    sizeBytes: int('sizeBytes', 1),
    partSizeBytes: int('partSizeBytes', 1),
    partCount: int('partCount', 1),
    createdAt: str('createdAt'),
  };
  if (
    record.key !== `sha256/${record.sha256}` ||
    !/^[0-9a-f]{64}$/.test(record.sha256) ||
    record.partCount !== Math.ceil(record.sizeBytes / record.partSizeBytes) ||
    record.partCount > MAX_UPLOAD_PARTS ||
    Number.isNaN(Date.parse(record.createdAt))
  ) {
    throw corrupt(uploadId, where, 'its fields disagree');
  }
  return record;
}

function corrupt(uploadId: string, where: string, why: string): BlobStoreError {
  return new BlobStoreError(
    'ERR_BLOB_STORE_IO',
    `the record of upload session ${uploadId} in ${where} is damaged (${why}); abort the session`,
  );
}

/**
 * Reads a part body into one buffer of exactly `sizeBytes`, hashing it: more bytes fail at once,
 * fewer at the end (ERR_BLOB_SIZE_MISMATCH). Memory: the part size.
 */
export async function readPart(
  body: AsyncIterable<Uint8Array>,
  sizeBytes: number,
  what: string,
  hash: { update(chunk: Uint8Array): unknown },
): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(sizeBytes);
  let offset = 0;
  for await (const chunk of body) {
    if (!(chunk instanceof Uint8Array)) {
      throw new BlobStoreError(
        'ERR_BLOB_ARGUMENT_INVALID',
        `body of ${what} must yield Uint8Array chunks, got a ${typeof chunk} at byte ${offset}`,
      );
    }
    if (offset + chunk.byteLength > sizeBytes) {
      throw new BlobStoreError(
        'ERR_BLOB_SIZE_MISMATCH',
        `${what} is longer than its ${sizeBytes} bytes; nothing stored`,
      );
    }
    buffer.set(chunk, offset);
    hash.update(chunk);
    offset += chunk.byteLength;
  }
  if (offset !== sizeBytes) {
    throw new BlobStoreError(
      'ERR_BLOB_SIZE_MISMATCH',
      `${what} has ${offset} bytes, expected ${sizeBytes}; nothing stored`,
    );
  }
  return buffer;
}

export function checkPartDigest(actualHex: string, expectedHex: string | undefined, what: string): void {
  if (expectedHex !== undefined && actualHex !== expectedHex) {
    throw new BlobStoreError(
      'ERR_BLOB_DIGEST_MISMATCH',
      `${what} has sha256 ${actualHex}, expected ${expectedHex}; nothing stored`,
    );
  }
}

/** Runs `task` over `items` with at most `concurrency` in flight; results in input order. */
export async function mapLimited<T, R>(
  items: readonly T[],
  concurrency: number,
  task: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}
