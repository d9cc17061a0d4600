// Argument checks shared by every BlobStore implementation, so fs and S3 reject the same inputs
// with the same codes before touching storage.

import type { PresignOptions, PutOptions } from './blob-store.js';
import { BlobStoreError } from './errors.js';
import { assertSha256Hex, keyToSha256Hex } from './key.js';

/** 5 GiB: the largest object S3 CopyObject accepts (S3BlobStore publishes blobs by copy). */
export const DEFAULT_MAX_BLOB_SIZE_BYTES = 5 * 1024 ** 3;

/** SigV4 presigned URLs live at most 7 days. */
export const MAX_PRESIGN_EXPIRY_SECONDS = 604_800;

export function assertByteCount(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new BlobStoreError(
      'ERR_BLOB_ARGUMENT_INVALID',
      `${what} must be a non-negative integer, got ${String(value)}`,
    );
  }
}

/** Validates `put` arguments; returns the hex the body must hash to. */
export function checkPutArguments(
  key: string,
  opts: PutOptions | undefined,
  maxBlobSizeBytes: number,
): string {
  const hex = keyToSha256Hex(key);
  if (opts?.sha256 !== undefined) {
    assertSha256Hex(opts.sha256, `expected sha256 for ${key}`);
    if (opts.sha256 !== hex) {
      throw new BlobStoreError(
        'ERR_BLOB_DIGEST_MISMATCH',
        `expected sha256 ${opts.sha256} disagrees with the key ${key}; nothing stored`,
      );
    }
  }
  if (opts?.sizeBytes !== undefined) {
    assertByteCount(opts.sizeBytes, `expected size of ${key}`);
    if (opts.sizeBytes > maxBlobSizeBytes) {
      throw new BlobStoreError(
        'ERR_BLOB_TOO_LARGE',
        `${key} is announced as ${opts.sizeBytes} bytes, over the store's maximum blob size of ${maxBlobSizeBytes} bytes`,
      );
    }
  }
  return hex;
}

/** For an idempotent put of a blob that already exists: the caller's expected size must agree. */
export function checkExistingSize(key: string, storedSizeBytes: number, opts: PutOptions | undefined): void {
  if (opts?.sizeBytes !== undefined && opts.sizeBytes !== storedSizeBytes) {
    throw new BlobStoreError(
      'ERR_BLOB_SIZE_MISMATCH',
      `${key} is already stored with ${storedSizeBytes} bytes, but ${opts.sizeBytes} were expected`,
    );
  }
}

export function checkPresignOptions(opts: PresignOptions): void {
  const s = opts?.expiresInSeconds;
  if (!Number.isSafeInteger(s) || s < 1 || s > MAX_PRESIGN_EXPIRY_SECONDS) {
    throw new BlobStoreError(
      'ERR_BLOB_ARGUMENT_INVALID',
      `expiresInSeconds must be an integer from 1 to ${MAX_PRESIGN_EXPIRY_SECONDS}, got ${String(s)}`,
    );
  }
}

export function checkMaxBlobSize(value: number, limit: number, store: string): number {
  if (!Number.isSafeInteger(value) || value < 0 || value > limit) {
    throw new BlobStoreError(
      'ERR_BLOB_CONFIG_INVALID',
      `${store}: maxBlobSizeBytes must be an integer from 0 to ${limit}, got ${String(value)}`,
    );
  }
  return value;
}

/**
 * Makes sure a put's body is finished with when the put settles, whether it was read to the end,
 * abandoned on an error, or never read (invalid arguments, blob already stored): a Node stream
 * is destroyed (its iterator's `return()` would not do that before the first read, leaking the
 * file descriptor), any other iterable gets `return()` on its iterator.
 */
export async function closeBody(body: AsyncIterable<Uint8Array>): Promise<void> {
  try {
    if ('destroy' in body && typeof body.destroy === 'function') {
      body.destroy();
      return;
    }
    await body[Symbol.asyncIterator]().return?.();
  } catch {
    // Closing is best effort: the body belongs to the caller, and its own error (if any) has
    // already surfaced through the put.
  }
}
