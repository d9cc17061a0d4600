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
