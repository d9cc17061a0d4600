// Byte-range resolution shared by the stores, with HTTP Range semantics (RFC 9110 §14.1.2):
// `end` is inclusive and clamped to the last byte; a start at or past the end is unsatisfiable.

import type { ByteRange } from './blob-store.js';
import { BlobStoreError } from './errors.js';

export interface ResolvedRange {
  start: number;
  /** Inclusive; `start - 1` for the whole of an empty blob. */
  end: number;
}

/** Throws ERR_BLOB_ARGUMENT_INVALID for a malformed range, before any storage access. */
export function checkRange(key: string, range: ByteRange | undefined): void {
  if (range === undefined) return;
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || start < 0) {
    throw new BlobStoreError(
      'ERR_BLOB_ARGUMENT_INVALID',
      `range start for ${key} must be a non-negative integer, got ${String(start)}`,
    );
  }
  if (end !== undefined && (!Number.isSafeInteger(end) || end < start)) {
    throw new BlobStoreError(
      'ERR_BLOB_ARGUMENT_INVALID',
      `range end for ${key} must be an integer >= start (${start}), got ${String(end)}`,
    );
  }
}

export function resolveRange(
  key: string,
  range: ByteRange | undefined,
  totalSizeBytes: number,
): ResolvedRange {
  checkRange(key, range);
  if (range === undefined) return { start: 0, end: totalSizeBytes - 1 };
  if (range.start >= totalSizeBytes) {
    throw unsatisfiable(key, range, totalSizeBytes);
  }
  const last = totalSizeBytes - 1;
  return { start: range.start, end: range.end === undefined ? last : Math.min(range.end, last) };
}

export function unsatisfiable(key: string, range: ByteRange, totalSizeBytes: number): BlobStoreError {
  return new BlobStoreError(
    'ERR_BLOB_RANGE_NOT_SATISFIABLE',
    `range bytes=${range.start}-${range.end ?? ''} of ${key} starts at or after its end (${totalSizeBytes} bytes)`,
    { totalSizeBytes },
  );
}

/** A byte-range request header value for `range`. */
export function rangeHeader(range: ByteRange): string {
  return `bytes=${range.start}-${range.end ?? ''}`;
}

/**
 * Checks a ranged GetObject's `Content-Range` against the request and returns the bytes to pass
 * on. A server may send more than asked (s3rver 3.7.1 answers `bytes=0-0` with the whole object,
 * reading an end of 0 as "no end"); the caller cuts the body to `end`. A range on an empty object
 * is unsatisfiable (S3 says 416; some compatible servers 206 with `bytes 0-0/0`).
 */
export function rangeFromContentRange(
  key: string,
  range: ByteRange,
  contentRange: string | undefined,
): { start: number; end: number; total: number } {
  const parsed = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(contentRange ?? '');
  if (parsed === null) throw new Error(`Content-Range ${JSON.stringify(contentRange)} is not "bytes a-b/n"`);
  const [start, end, total] = [Number(parsed[1]), Number(parsed[2]), Number(parsed[3])];
  if (range.start >= total) throw unsatisfiable(key, range, total);
  const wantedEnd = Math.min(range.end ?? total - 1, total - 1);
  if (start !== range.start || end < wantedEnd || end >= total) {
    throw new Error(`Content-Range ${contentRange} does not answer ${rangeHeader(range)}`);
  }
  return { start, end: wantedEnd, total };
}
