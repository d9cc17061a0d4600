import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlobStoreError } from './errors.js';
import { assertBlobKey, digestToKey, isBlobKey, keyToDigest, keyToSha256Hex } from './key.js';

const hex64 = fc.stringMatching(/^[0-9a-f]{64}$/);

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return error instanceof BlobStoreError ? error.code : `not a BlobStoreError: ${String(error)}`;
  }
  return undefined;
}

describe('content-address keys', () => {
  it('maps digest sha256:<hex> to key sha256/<hex> and back for every hex', () => {
    fc.assert(
      fc.property(hex64, (hex) => {
        expect(digestToKey(`sha256:${hex}`)).toBe(`sha256/${hex}`);
        expect(keyToDigest(`sha256/${hex}`)).toBe(`sha256:${hex}`);
        expect(keyToSha256Hex(`sha256/${hex}`)).toBe(hex);
        expect(isBlobKey(`sha256/${hex}`)).toBe(true);
      }),
    );
  });

  it('rejects any other string as a key with ERR_BLOB_KEY_INVALID, never a different error', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (s) => {
        fc.pre(!/^sha256\/[0-9a-f]{64}$/.test(s));
        expect(isBlobKey(s)).toBe(false);
        expect(codeOf(() => assertBlobKey(s))).toBe('ERR_BLOB_KEY_INVALID');
        expect(codeOf(() => keyToDigest(s))).toBe('ERR_BLOB_KEY_INVALID');
      }),
    );
  });

  it('rejects traversal, upper case, wrong algorithm and wrong separator in keys and digests', () => {
    const hex = 'ab'.repeat(32);
    for (const bad of [
      `sha256/../${hex.slice(3)}`,
      `sha256/${hex.toUpperCase()}`,
      `sha512/${hex}`,
      `sha256:${hex}`,
      `sha256/${hex}/`,
      ` sha256/${hex}`,
    ]) {
      expect(
        codeOf(() => assertBlobKey(bad)),
        bad,
      ).toBe('ERR_BLOB_KEY_INVALID');
    }
    for (const bad of [`sha256/${hex}`, `SHA256:${hex}`, `sha256:${hex}0`, hex]) {
      expect(
        codeOf(() => digestToKey(bad)),
        bad,
      ).toBe('ERR_BLOB_KEY_INVALID');
    }
    expect(codeOf(() => assertBlobKey(42 as unknown as string))).toBe('ERR_BLOB_KEY_INVALID');
  });

  it('quotes the offending key in the message, truncated when long', () => {
    const error = (() => {
      try {
        assertBlobKey(`../${'x'.repeat(500)}`);
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(error?.message).toContain('"../xxx');
    expect(error?.message.length).toBeLessThan(250);
  });
});
