// The BlobStore contract (docs/CONTRACTS.md "@abota/blobstore"), run unchanged against every
// implementation so fs and S3 behave the same for the update server and the publisher.

import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { BlobStore } from '../src/index.js';
import { BlobStoreError } from '../src/index.js';

export interface ContractFixture {
  /** A store on the shared backend (fresh options each call, same data). */
  createStore(options?: { maxBlobSizeBytes?: number }): BlobStore;
  /** Names of temporary files/objects a put may leave behind (must be empty after any put). */
  listTemporaries(): Promise<string[]>;
}

export function keyOf(bytes: Uint8Array): string {
  return `sha256/${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Yields `bytes` in chunks of `chunkBytes`, like a network or file stream would. */
export async function* chunked(bytes: Uint8Array, chunkBytes = 64 * 1024): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < bytes.byteLength; offset += chunkBytes) {
    yield bytes.subarray(offset, Math.min(offset + chunkBytes, bytes.byteLength));
  }
}

/** A body that fails the test if anything reads it, and records whether it was closed. */
export function untouchableBody(): AsyncIterable<Uint8Array> & { closed: boolean; read: boolean } {
  const body = {
    closed: false,
    read: false,
    [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
      return {
        next: async () => {
          body.read = true;
          throw new Error('this body must not be read');
        },
        return: async () => {
          body.closed = true;
          return { done: true, value: undefined };
        },
      };
    },
  };
  return body;
}

export async function readAll(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of body) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

export async function expectBlobError(promise: Promise<unknown>, code: string): Promise<BlobStoreError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected ${code}`).toBeInstanceOf(BlobStoreError);
  expect((error as BlobStoreError).code).toBe(code);
  return error as BlobStoreError;
}

export const INVALID_KEYS = [
  '',
  '../etc/passwd',
  'sha256/../../../etc/passwd',
  `sha256/${'a'.repeat(63)}`,
  `sha256/${'a'.repeat(65)}`,
  `sha256/${'A'.repeat(64)}`,
  `sha256/${'g'.repeat(64)}`,
  `sha256/${'a'.repeat(64)}/..`,
  `sha256/${'a'.repeat(64)}\n`,
  `/sha256/${'a'.repeat(64)}`,
  `sha256\\${'a'.repeat(64)}`,
  `sha256:${'a'.repeat(64)}`,
  `sha512/${'a'.repeat(64)}`,
  'a'.repeat(64),
];

export function blobStoreContract(fixture: () => ContractFixture): void {
  const store = (options?: { maxBlobSizeBytes?: number }) => fixture().createStore(options);
  const size = 100_003; // not a multiple of any chunk size: partial last chunks are exercised
  const data = randomBytes(size);
  const key = keyOf(data);

  describe('BlobStore contract', () => {
    it('stores a streamed blob and returns the same bytes, size and key', async () => {
      const s = store();
      expect(await s.put(key, chunked(data, 7_919), { sizeBytes: size, sha256: key.slice(7) })).toEqual({
        key,
        sizeBytes: size,
      });
      expect(await s.head(key)).toEqual({ key, sizeBytes: size });
      const read = await s.get(key);
      expect({ total: read.totalSizeBytes, start: read.start, end: read.end }).toEqual({
        total: size,
        start: 0,
        end: size - 1,
      });
      expect((await readAll(read.body)).equals(data)).toBe(true);
      expect(await fixture().listTemporaries()).toEqual([]);
    });

    it('stores and reads an empty blob; any range of it is unsatisfiable', async () => {
      const s = store();
      const empty = new Uint8Array(0);
      const emptyKey = keyOf(empty);
      expect(await s.put(emptyKey, chunked(empty))).toEqual({ key: emptyKey, sizeBytes: 0 });
      const read = await s.get(emptyKey);
      expect({ total: read.totalSizeBytes, start: read.start, end: read.end }).toEqual({
        total: 0,
        start: 0,
        end: -1,
      });
      expect((await readAll(read.body)).byteLength).toBe(0);
      const error = await expectBlobError(s.get(emptyKey, { start: 0 }), 'ERR_BLOB_RANGE_NOT_SATISFIABLE');
      expect(error.totalSizeBytes).toBe(0);
    });

    it('serves byte ranges: closed, open-ended, the last byte, and an end clamped to the blob', async () => {
      const s = store();
      await s.put(key, chunked(data));
      const cases: Array<[{ start: number; end?: number }, number, number]> = [
        [{ start: 10, end: 19 }, 10, 19],
        [{ start: 0, end: 0 }, 0, 0],
        [{ start: 65_530 }, 65_530, size - 1],
        [{ start: size - 1, end: size - 1 }, size - 1, size - 1],
        [{ start: size - 1 }, size - 1, size - 1],
        [{ start: size - 5, end: size + 1000 }, size - 5, size - 1],
      ];
      for (const [range, start, end] of cases) {
        const read = await s.get(key, range);
        expect(
          { start: read.start, end: read.end, total: read.totalSizeBytes },
          JSON.stringify(range),
        ).toEqual({
          start,
          end,
          total: size,
        });
        expect((await readAll(read.body)).equals(data.subarray(start, end + 1)), JSON.stringify(range)).toBe(
          true,
        );
      }
    });

    it('refuses a range starting at or past the end with ERR_BLOB_RANGE_NOT_SATISFIABLE and the total size', async () => {
      const s = store();
      await s.put(key, chunked(data));
      for (const start of [size, size + 1, 10 * size]) {
        const error = await expectBlobError(s.get(key, { start }), 'ERR_BLOB_RANGE_NOT_SATISFIABLE');
        expect(error.totalSizeBytes).toBe(size);
        expect(error.message).toContain(String(size));
      }
    });

    it('rejects malformed ranges with ERR_BLOB_ARGUMENT_INVALID', async () => {
      const s = store();
      await s.put(key, chunked(data));
      for (const range of [
        { start: -1 },
        { start: 5, end: 4 },
        { start: 1.5 },
        { start: 0, end: Number.NaN },
      ]) {
        await expectBlobError(s.get(key, range), 'ERR_BLOB_ARGUMENT_INVALID');
      }
    });

    it('stores nothing when the bytes do not hash to the key (ERR_BLOB_DIGEST_MISMATCH)', async () => {
      const s = store();
      const wrongKey = keyOf(randomBytes(32));
      const error = await expectBlobError(s.put(wrongKey, chunked(data)), 'ERR_BLOB_DIGEST_MISMATCH');
      expect(error.message).toContain(wrongKey.slice(7));
      expect(await s.head(wrongKey)).toBeUndefined();
      await expectBlobError(s.get(wrongKey), 'ERR_BLOB_NOT_FOUND');
      expect(await fixture().listTemporaries()).toEqual([]);
    });

    it('stores nothing when one byte of the body is flipped', async () => {
      const s = store();
      const other = randomBytes(50_000);
      const otherKey = keyOf(other);
      const corrupt = Buffer.from(other);
      corrupt[corrupt.length - 1] = (corrupt[corrupt.length - 1] ?? 0) ^ 0x01;
      await expectBlobError(s.put(otherKey, chunked(corrupt)), 'ERR_BLOB_DIGEST_MISMATCH');
      expect(await s.head(otherKey)).toBeUndefined();
      expect(await fixture().listTemporaries()).toEqual([]);
    });

    it('refuses an expected sha256 that disagrees with the key without reading the body', async () => {
      const body = untouchableBody();
      await expectBlobError(store().put(key, body, { sha256: 'b'.repeat(64) }), 'ERR_BLOB_DIGEST_MISMATCH');
      expect(body.read).toBe(false);
      await expectBlobError(
        store().put(key, untouchableBody(), { sha256: 'XYZ' }),
        'ERR_BLOB_ARGUMENT_INVALID',
      );
    });

    it('stores nothing when the body is shorter or longer than sizeBytes (ERR_BLOB_SIZE_MISMATCH)', async () => {
      const s = store();
      const other = randomBytes(30_000);
      const otherKey = keyOf(other);
      for (const sizeBytes of [other.length - 1, other.length + 1, 0]) {
        const error = await expectBlobError(
          s.put(otherKey, chunked(other, 4096), { sizeBytes }),
          'ERR_BLOB_SIZE_MISMATCH',
        );
        expect(error.message).toContain(String(sizeBytes));
        expect(await s.head(otherKey)).toBeUndefined();
      }
      await expectBlobError(s.put(otherKey, chunked(other), { sizeBytes: -1 }), 'ERR_BLOB_ARGUMENT_INVALID');
      expect(await fixture().listTemporaries()).toEqual([]);
    });

    it('stores nothing over maxBlobSizeBytes (ERR_BLOB_TOO_LARGE), announced or discovered while streaming', async () => {
      const s = store({ maxBlobSizeBytes: 1000 });
      const other = randomBytes(1001);
      const otherKey = keyOf(other);
      await expectBlobError(s.put(otherKey, chunked(other, 100)), 'ERR_BLOB_TOO_LARGE');
      await expectBlobError(s.put(otherKey, untouchableBody(), { sizeBytes: 1001 }), 'ERR_BLOB_TOO_LARGE');
      expect(await s.head(otherKey)).toBeUndefined();
      const fits = randomBytes(1000);
      expect(await s.put(keyOf(fits), chunked(fits, 100))).toEqual({ key: keyOf(fits), sizeBytes: 1000 });
      expect(await fixture().listTemporaries()).toEqual([]);
    });

    it('passes the error of a failing body through and stores nothing', async () => {
      const s = store();
      const other = randomBytes(20_000);
      const otherKey = keyOf(other);
      async function* failing(): AsyncGenerator<Uint8Array> {
        yield other.subarray(0, 10_000);
        throw new Error('connection reset by the uploader');
      }
      await expect(s.put(otherKey, failing())).rejects.toThrow('connection reset by the uploader');
      expect(await s.head(otherKey)).toBeUndefined();
      expect(await fixture().listTemporaries()).toEqual([]);
    });

    it('rejects a body that yields something other than bytes', async () => {
      const s = store();
      async function* strings(): AsyncGenerator<Uint8Array> {
        yield 'text' as unknown as Uint8Array;
      }
      const textKey = keyOf(Buffer.from('text'));
      await expectBlobError(s.put(textKey, strings()), 'ERR_BLOB_ARGUMENT_INVALID');
      expect(await s.head(textKey)).toBeUndefined();
    });

    it('is idempotent: putting an existing blob does not read the body, closes it and returns the stored info', async () => {
      const s = store();
      await s.put(key, chunked(data));
      const body = untouchableBody();
      expect(await s.put(key, body, { sizeBytes: size })).toEqual({ key, sizeBytes: size });
      expect(body.read).toBe(false);
      expect(body.closed).toBe(true);
      await expectBlobError(s.put(key, untouchableBody(), { sizeBytes: size + 1 }), 'ERR_BLOB_SIZE_MISMATCH');
      expect(await s.head(key)).toEqual({ key, sizeBytes: size });
    });

    it('destroys a Node stream body it does not read: blob already stored, or invalid arguments', async () => {
      const s = store();
      await s.put(key, chunked(data));
      const unread = Readable.from(chunked(data));
      await s.put(key, unread);
      expect(unread.destroyed).toBe(true);
      const rejected = Readable.from(chunked(data));
      await expectBlobError(s.put('sha256/nope', rejected), 'ERR_BLOB_KEY_INVALID');
      expect(rejected.destroyed).toBe(true);
    });

    it('releases a Node stream body abandoned on a mismatch', async () => {
      const other = randomBytes(50_000);
      const source = Readable.from(chunked(other, 1000));
      await expectBlobError(
        store().put(keyOf(other), source, { sizeBytes: 10_000 }),
        'ERR_BLOB_SIZE_MISMATCH',
      );
      expect(source.destroyed).toBe(true);
    });

    it('lets concurrent puts of the same blob both succeed with one intact copy', async () => {
      const s = store();
      const other = randomBytes(40_000);
      const otherKey = keyOf(other);
      const results = await Promise.all([
        s.put(otherKey, chunked(other, 1000)),
        s.put(otherKey, chunked(other, 3000)),
      ]);
      expect(results).toEqual([
        { key: otherKey, sizeBytes: other.length },
        { key: otherKey, sizeBytes: other.length },
      ]);
      expect((await readAll((await s.get(otherKey)).body)).equals(other)).toBe(true);
      expect(await fixture().listTemporaries()).toEqual([]);
    });

    it('reports a missing blob: get → ERR_BLOB_NOT_FOUND, head → undefined', async () => {
      const s = store();
      const missing = keyOf(randomBytes(16));
      await expectBlobError(s.get(missing), 'ERR_BLOB_NOT_FOUND');
      await expectBlobError(s.get(missing, { start: 0, end: 1 }), 'ERR_BLOB_NOT_FOUND');
      expect(await s.head(missing)).toBeUndefined();
    });

    it('deletes idempotently: a deleted or never stored blob deletes without error', async () => {
      const s = store();
      const other = randomBytes(1234);
      const otherKey = keyOf(other);
      await s.put(otherKey, chunked(other));
      await s.delete(otherKey);
      expect(await s.head(otherKey)).toBeUndefined();
      await expectBlobError(s.get(otherKey), 'ERR_BLOB_NOT_FOUND');
      await s.delete(otherKey);
      await s.delete(keyOf(randomBytes(16)));
    });

    it('rejects every key that is not sha256/<64 lower hex> (path traversal included) in every operation', async () => {
      const s = store();
      for (const bad of INVALID_KEYS) {
        const body = untouchableBody();
        await expectBlobError(s.put(bad, body), 'ERR_BLOB_KEY_INVALID');
        expect(body.read, bad).toBe(false);
        await expectBlobError(s.get(bad), 'ERR_BLOB_KEY_INVALID');
        await expectBlobError(s.head(bad), 'ERR_BLOB_KEY_INVALID');
        await expectBlobError(s.delete(bad), 'ERR_BLOB_KEY_INVALID');
        await expectBlobError(s.presignGet(bad, { expiresInSeconds: 60 }), 'ERR_BLOB_KEY_INVALID');
      }
    });

    it('rejects presign expiries outside 1 s .. 7 days', async () => {
      const s = store();
      for (const expiresInSeconds of [0, -5, 604_801, 1.5]) {
        await expectBlobError(s.presignGet(key, { expiresInSeconds }), 'ERR_BLOB_ARGUMENT_INVALID');
      }
    });

    it('passes the readiness check when usable', async () => {
      await expect(store().check()).resolves.toBeUndefined();
    });
  });
}
