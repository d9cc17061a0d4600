// Blob keys are content addresses: digest `sha256:<hex>` ↔ key `sha256/<hex>` ↔ release path
// `blobs/sha256/<hex>` (docs/CONTRACTS.md, "Release manifest"). Keys are validated strictly
// because they become file paths and object names: only this exact shape, so no traversal.

import { BlobStoreError } from './errors.js';

const KEY_PATTERN = /^sha256\/([0-9a-f]{64})$/;
const DIGEST_PATTERN = /^sha256:([0-9a-f]{64})$/;
const HEX_PATTERN = /^[0-9a-f]{64}$/;

function describe(value: unknown): string {
  if (typeof value !== 'string') return `a ${typeof value}`;
  const shown = value.length > 80 ? `${value.slice(0, 80)}…` : value;
  return JSON.stringify(shown);
}

/** The 64 lower-case hex characters of a blob key; throws ERR_BLOB_KEY_INVALID otherwise. */
export function keyToSha256Hex(key: string): string {
  const hex = typeof key === 'string' ? KEY_PATTERN.exec(key)?.[1] : undefined;
  if (hex === undefined) {
    throw new BlobStoreError(
      'ERR_BLOB_KEY_INVALID',
      `blob key must be "sha256/" followed by 64 lower-case hex characters, got ${describe(key)}`,
    );
  }
  return hex;
}

/** Throws ERR_BLOB_KEY_INVALID unless `key` is `sha256/<64 lower-case hex>`. */
export function assertBlobKey(key: string): void {
  keyToSha256Hex(key);
}

export function isBlobKey(key: unknown): key is string {
  return typeof key === 'string' && KEY_PATTERN.test(key);
}

/** `sha256:<hex>` (manifest digest) → `sha256/<hex>` (blob key). */
export function digestToKey(digest: string): string {
  const hex = typeof digest === 'string' ? DIGEST_PATTERN.exec(digest)?.[1] : undefined;
  if (hex === undefined) {
    throw new BlobStoreError(
      'ERR_BLOB_KEY_INVALID',
      `digest must be "sha256:" followed by 64 lower-case hex characters, got ${describe(digest)}`,
    );
  }
  return `sha256/${hex}`;
}

/** `sha256/<hex>` (blob key) → `sha256:<hex>` (manifest digest). */
export function keyToDigest(key: string): string {
  return `sha256:${keyToSha256Hex(key)}`;
}

/** Throws ERR_BLOB_ARGUMENT_INVALID unless `hex` is 64 lower-case hex characters. */
export function assertSha256Hex(hex: string, what: string): void {
  if (typeof hex !== 'string' || !HEX_PATTERN.test(hex)) {
    throw new BlobStoreError(
      'ERR_BLOB_ARGUMENT_INVALID',
      `${what} must be 64 lower-case hex characters (a SHA-256), got ${describe(hex)}`,
    );
  }
}
