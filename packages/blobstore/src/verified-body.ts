// Pass-through that hashes and counts a blob body while it is being written, so a store can
// refuse to publish bytes whose SHA-256 or length differs from what the key promises. Memory is
// bounded by the caller's chunk size: nothing is buffered here.

import { createHash } from 'node:crypto';
import { BlobStoreError } from './errors.js';

export interface VerifiedBodyExpectations {
  key: string;
  /** The key's hex: the body must hash to it. */
  sha256Hex: string;
  sizeBytes: number | undefined;
  maxBlobSizeBytes: number;
}

export class VerifiedBody {
  readonly #source: AsyncIterable<Uint8Array>;
  readonly #expected: VerifiedBodyExpectations;
  #sizeBytes = 0;
  #verified = false;

  constructor(source: AsyncIterable<Uint8Array>, expected: VerifiedBodyExpectations) {
    this.#source = source;
    this.#expected = expected;
  }

  /** Bytes seen so far; after `chunks()` finished without throwing, the verified size. */
  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  /** True once every byte was seen and size and digest matched. */
  get verified(): boolean {
    return this.#verified;
  }

  /**
   * Yields the source's chunks unchanged. Throws ERR_BLOB_TOO_LARGE / ERR_BLOB_SIZE_MISMATCH as
   * soon as the count goes over a limit, and ERR_BLOB_SIZE_MISMATCH / ERR_BLOB_DIGEST_MISMATCH
   * after the last chunk — before the consumer can treat the write as complete.
   */
  async *chunks(): AsyncGenerator<Uint8Array, void, undefined> {
    const { key, sha256Hex, sizeBytes, maxBlobSizeBytes } = this.#expected;
    const hash = createHash('sha256');
    for await (const chunk of this.#source) {
      if (!(chunk instanceof Uint8Array)) {
        throw new BlobStoreError(
          'ERR_BLOB_ARGUMENT_INVALID',
          `body of ${key} must yield Uint8Array chunks, got a ${typeof chunk} at byte ${this.#sizeBytes}`,
        );
      }
      this.#sizeBytes += chunk.byteLength;
      if (sizeBytes !== undefined && this.#sizeBytes > sizeBytes) {
        throw new BlobStoreError(
          'ERR_BLOB_SIZE_MISMATCH',
          `body of ${key} is longer than the expected ${sizeBytes} bytes (already ${this.#sizeBytes}); nothing stored`,
        );
      }
      if (this.#sizeBytes > maxBlobSizeBytes) {
        throw new BlobStoreError(
          'ERR_BLOB_TOO_LARGE',
          `body of ${key} exceeds the store's maximum blob size of ${maxBlobSizeBytes} bytes; nothing stored`,
        );
      }
      hash.update(chunk);
      yield chunk;
    }
    if (sizeBytes !== undefined && this.#sizeBytes !== sizeBytes) {
      throw new BlobStoreError(
        'ERR_BLOB_SIZE_MISMATCH',
        `body of ${key} has ${this.#sizeBytes} bytes, expected ${sizeBytes}; nothing stored`,
      );
    }
    const actualHex = hash.digest('hex');
    if (actualHex !== sha256Hex) {
      throw new BlobStoreError(
        'ERR_BLOB_DIGEST_MISMATCH',
        `body of ${key} (${this.#sizeBytes} bytes) has sha256 ${actualHex}, expected ${sha256Hex}; nothing stored`,
      );
    }
    this.#verified = true;
  }
}
