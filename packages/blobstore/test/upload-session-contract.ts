// The upload-session contract (docs/CONTRACTS.md "@abota/blobstore", upload sessions), run unchanged
// against FsBlobStore and S3BlobStore: parts in any order, resume after a cut-off part, refused
// parts and blobs that store nothing, two store instances (replicas) sharing one session, limits,
// expiry.

import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { BlobStore } from '../src/index.js';
import { chunked, expectBlobError, keyOf, readAll } from './blob-store-contract.js';

export interface UploadContractFixture {
  /** A new store instance on the shared backend: two of them stand for two server replicas. */
  createStore(): BlobStore;
  /** The part size sessions use in these tests (the store's minimum keeps them quick). */
  partSizeBytes: number;
  /** Every file/object an upload session with this id left in the backend. */
  listSessionLeftovers(uploadId: string): Promise<string[]>;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** A body that yields `cutAfter` bytes of `bytes` and then fails like a reset connection. */
async function* droppedConnection(bytes: Uint8Array, cutAfter: number): AsyncGenerator<Uint8Array> {
  yield* chunked(bytes.subarray(0, cutAfter), 64 * 1024);
  throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
}

export function uploadSessionContract(makeFixture: () => UploadContractFixture): void {
  describe('upload sessions', () => {
    const part = (data: Uint8Array, partSize: number, n: number): Uint8Array =>
      data.subarray((n - 1) * partSize, Math.min(n * partSize, data.byteLength));

    it('takes parts in any order, reports them, and publishes only the verified whole on complete', async () => {
      const f = makeFixture();
      const store = f.createStore();
      const size = f.partSizeBytes * 2 + 1234;
      const data = randomBytes(size);
      const key = keyOf(data);
      const session = await store.createUpload(key, {
        sizeBytes: size,
        sha256: sha256(data),
        partSizeBytes: f.partSizeBytes,
      });
      expect(session).toMatchObject({
        key,
        sizeBytes: size,
        partSizeBytes: f.partSizeBytes,
        partCount: 3,
        parts: [],
        receivedBytes: 0,
      });
      expect(session.uploadId).toMatch(/^[0-9a-f]{32}$/);
      for (const n of [3, 1]) {
        const p = part(data, f.partSizeBytes, n);
        expect(
          await store.uploadPart(session.uploadId, n, chunked(p), {
            sizeBytes: p.byteLength,
            sha256: sha256(p),
          }),
        ).toEqual({ partNumber: n, sizeBytes: p.byteLength, sha256: sha256(p) });
      }
      const half = await store.getUpload(session.uploadId);
      expect(half.parts.map((p) => p.partNumber)).toEqual([1, 3]);
      expect(half.receivedBytes).toBe(f.partSizeBytes + 1234);
      expect(half.updatedAt.getTime()).toBeGreaterThanOrEqual(half.createdAt.getTime());
      expect(await store.head(key), 'nothing visible before complete').toBeUndefined();
      await expectBlobError(store.completeUpload(session.uploadId), 'ERR_BLOB_UPLOAD_INCOMPLETE');
      expect((await store.getUpload(session.uploadId)).parts).toHaveLength(2);

      await store.uploadPart(session.uploadId, 2, chunked(part(data, f.partSizeBytes, 2)));
      expect(await store.completeUpload(session.uploadId)).toEqual({ key, sizeBytes: size, created: true });
      expect(sha256(await readAll((await store.get(key)).body))).toBe(sha256(data));
      await expectBlobError(store.getUpload(session.uploadId), 'ERR_BLOB_UPLOAD_NOT_FOUND');
      expect(await f.listSessionLeftovers(session.uploadId)).toEqual([]);
    });

    it('resumes after a connection dropped mid-part: the cut-off part is not recorded and is simply sent again', async () => {
      const f = makeFixture();
      const store = f.createStore();
      const size = f.partSizeBytes * 2;
      const data = randomBytes(size);
      const key = keyOf(data);
      const { uploadId } = await store.createUpload(key, { sizeBytes: size, partSizeBytes: f.partSizeBytes });
      await store.uploadPart(uploadId, 1, chunked(part(data, f.partSizeBytes, 1)));
      const second = part(data, f.partSizeBytes, 2);
      const failure = await store
        .uploadPart(uploadId, 2, droppedConnection(second, second.byteLength >> 1), {
          sizeBytes: second.byteLength,
        })
        .catch((e: unknown) => e);
      expect((failure as { code?: string }).code, 'the caller’s own error passes through').toBe('ECONNRESET');
      const resumed = await store.getUpload(uploadId);
      expect(resumed.parts.map((p) => p.partNumber)).toEqual([1]);
      expect(resumed.receivedBytes).toBe(f.partSizeBytes);
      await store.uploadPart(uploadId, 2, chunked(second), { sha256: sha256(second) });
      expect((await store.completeUpload(uploadId)).created).toBe(true);
      expect(sha256(await readAll((await store.get(key)).body))).toBe(sha256(data));
    });

    it('refuses a part with the wrong digest or size and keeps the earlier good copy of it', async () => {
      const f = makeFixture();
      const store = f.createStore();
      const size = f.partSizeBytes + 100;
      const data = randomBytes(size);
      const key = keyOf(data);
      const { uploadId } = await store.createUpload(key, { sizeBytes: size, partSizeBytes: f.partSizeBytes });
      const first = part(data, f.partSizeBytes, 1);
      await store.uploadPart(uploadId, 1, chunked(first));
      const flipped = Buffer.from(first);
      flipped[7] = (flipped[7] ?? 0) ^ 0xff;
      const wrong = await expectBlobError(
        store.uploadPart(uploadId, 1, chunked(flipped), { sha256: sha256(first) }),
        'ERR_BLOB_DIGEST_MISMATCH',
      );
      expect(wrong.message).toContain(`expected ${sha256(first)}`);
      await expectBlobError(
        store.uploadPart(uploadId, 2, chunked(randomBytes(101))),
        'ERR_BLOB_SIZE_MISMATCH',
      );
      await expectBlobError(
        store.uploadPart(uploadId, 2, chunked(randomBytes(99))),
        'ERR_BLOB_SIZE_MISMATCH',
      );
      await expectBlobError(
        store.uploadPart(uploadId, 2, chunked(randomBytes(100)), { sizeBytes: 99 }),
        'ERR_BLOB_SIZE_MISMATCH',
      );
      expect((await store.getUpload(uploadId)).parts).toEqual([
        { partNumber: 1, sizeBytes: first.byteLength, sha256: sha256(first) },
      ]);
      await store.uploadPart(uploadId, 2, chunked(part(data, f.partSizeBytes, 2)));
      expect((await store.completeUpload(uploadId)).created).toBe(true);
    });

    it('refuses to complete bytes that are not the announced blob: nothing under the key, session and staging gone', async () => {
      const f = makeFixture();
      const store = f.createStore();
      const size = f.partSizeBytes + 4096;
      const announced = randomBytes(size);
      const key = keyOf(announced);
      const other = randomBytes(size);
      const { uploadId } = await store.createUpload(key, { sizeBytes: size, partSizeBytes: f.partSizeBytes });
      // Each part is self-consistent (its own sha256 matches), but the whole is another blob.
      for (const n of [1, 2]) {
        const p = part(other, f.partSizeBytes, n);
        await store.uploadPart(uploadId, n, chunked(p), { sha256: sha256(p) });
      }
      const error = await expectBlobError(store.completeUpload(uploadId), 'ERR_BLOB_DIGEST_MISMATCH');
      expect(error.message).toContain(`has sha256 ${sha256(other)}, expected ${sha256(announced)}`);
      expect(await store.head(key)).toBeUndefined();
      await expectBlobError(store.getUpload(uploadId), 'ERR_BLOB_UPLOAD_NOT_FOUND');
      expect(await f.listSessionLeftovers(uploadId)).toEqual([]);
    });

    it('lets two store instances (server replicas) continue one session: create on one, parts on both, complete on the other', async () => {
      const f = makeFixture();
      const a = f.createStore();
      const b = f.createStore();
      const size = f.partSizeBytes * 3;
      const data = randomBytes(size);
      const key = keyOf(data);
      const { uploadId } = await a.createUpload(key, { sizeBytes: size, partSizeBytes: f.partSizeBytes });
      await b.uploadPart(uploadId, 2, chunked(part(data, f.partSizeBytes, 2)));
      await Promise.all([
        a.uploadPart(uploadId, 1, chunked(part(data, f.partSizeBytes, 1))),
        b.uploadPart(uploadId, 3, chunked(part(data, f.partSizeBytes, 3))),
      ]);
      expect((await a.getUpload(uploadId)).parts.map((p) => p.partNumber)).toEqual([1, 2, 3]);
      expect(await b.completeUpload(uploadId)).toEqual({ key, sizeBytes: size, created: true });
      await expectBlobError(a.getUpload(uploadId), 'ERR_BLOB_UPLOAD_NOT_FOUND');
      expect(sha256(await readAll((await a.get(key)).body))).toBe(sha256(data));
    });

    it('two replicas completing the same session at once both end well: the blob is stored once, a loser at most sees the session gone', async () => {
      const f = makeFixture();
      const a = f.createStore();
      const b = f.createStore();
      const data = randomBytes(f.partSizeBytes * 2 + 3);
      const key = keyOf(data);
      const { uploadId } = await a.createUpload(key, {
        sizeBytes: data.byteLength,
        partSizeBytes: f.partSizeBytes,
      });
      for (const n of [1, 2, 3]) await a.uploadPart(uploadId, n, chunked(part(data, f.partSizeBytes, n)));
      const results = await Promise.allSettled([a.completeUpload(uploadId), b.completeUpload(uploadId)]);
      const created = results.filter((r) => r.status === 'fulfilled' && r.value.created);
      expect(created.length).toBeGreaterThanOrEqual(1);
      for (const r of results) {
        if (r.status === 'rejected')
          expect((r.reason as { code?: string }).code).toBe('ERR_BLOB_UPLOAD_NOT_FOUND');
        else expect(r.value).toMatchObject({ key, sizeBytes: data.byteLength });
      }
      expect(sha256(await readAll((await a.get(key)).body))).toBe(sha256(data));
      expect(await f.listSessionLeftovers(uploadId)).toEqual([]);
    });

    it('finds open sessions by key, aborts idempotently, and completes as "already there" when the blob got stored meanwhile', async () => {
      const f = makeFixture();
      const store = f.createStore();
      const data = randomBytes(f.partSizeBytes + 10);
      const key = keyOf(data);
      const s1 = await store.createUpload(key, {
        sizeBytes: data.byteLength,
        partSizeBytes: f.partSizeBytes,
      });
      const s2 = await store.createUpload(key, {
        sizeBytes: data.byteLength,
        partSizeBytes: f.partSizeBytes,
      });
      const listed = await store.listUploads({ key });
      expect(listed.map((s) => s.uploadId).sort()).toEqual([s1.uploadId, s2.uploadId].sort());
      expect(await store.listUploads({ key: keyOf(randomBytes(8)) })).toEqual([]);

      await store.abortUpload(s1.uploadId);
      await store.abortUpload(s1.uploadId);
      await expectBlobError(store.getUpload(s1.uploadId), 'ERR_BLOB_UPLOAD_NOT_FOUND');
      await expectBlobError(
        store.uploadPart(s1.uploadId, 1, chunked(part(data, f.partSizeBytes, 1))),
        'ERR_BLOB_UPLOAD_NOT_FOUND',
      );

      for (const n of [1, 2]) await store.uploadPart(s2.uploadId, n, chunked(part(data, f.partSizeBytes, n)));
      await store.put(key, chunked(data));
      expect(await store.completeUpload(s2.uploadId)).toEqual({
        key,
        sizeBytes: data.byteLength,
        created: false,
      });
      expect(await f.listSessionLeftovers(s2.uploadId)).toEqual([]);
    });

    it('validates ids, part numbers, sizes and part geometry before touching storage', async () => {
      const f = makeFixture();
      const store = f.createStore();
      const key = keyOf(randomBytes(16));
      await expectBlobError(store.getUpload('../../etc'), 'ERR_BLOB_ARGUMENT_INVALID');
      await expectBlobError(store.abortUpload('A'.repeat(32)), 'ERR_BLOB_ARGUMENT_INVALID');
      await expectBlobError(store.getUpload('0'.repeat(32)), 'ERR_BLOB_UPLOAD_NOT_FOUND');
      await expectBlobError(store.createUpload(key, { sizeBytes: 0 }), 'ERR_BLOB_ARGUMENT_INVALID');
      await expectBlobError(store.createUpload('sha256/../x', { sizeBytes: 10 }), 'ERR_BLOB_KEY_INVALID');
      await expectBlobError(
        store.createUpload(key, { sizeBytes: 10, sha256: '0'.repeat(64) }),
        'ERR_BLOB_DIGEST_MISMATCH',
      );
      await expectBlobError(
        store.createUpload(key, { sizeBytes: 10, partSizeBytes: store.uploadLimits.minPartSizeBytes - 1 }),
        'ERR_BLOB_ARGUMENT_INVALID',
      );
      await expectBlobError(store.createUpload(key, { sizeBytes: 6 * 1024 ** 3 }), 'ERR_BLOB_TOO_LARGE');
      // More parts than allowed at the requested size: the part size is raised, not refused
      // (only testable where that many minimum-size parts stay under the 5 GiB blob limit).
      const big = store.uploadLimits.minPartSizeBytes * store.uploadLimits.maxParts + 1;
      const raised = await store.createUpload(key, {
        sizeBytes: big <= 5 * 1024 ** 3 ? big : 10 * f.partSizeBytes,
        partSizeBytes: store.uploadLimits.minPartSizeBytes,
      });
      expect(raised.partCount).toBeLessThanOrEqual(store.uploadLimits.maxParts);
      if (big <= 5 * 1024 ** 3)
        expect(raised.partSizeBytes).toBeGreaterThan(store.uploadLimits.minPartSizeBytes);
      await expectBlobError(
        store.uploadPart(raised.uploadId, 0, chunked(new Uint8Array(1))),
        'ERR_BLOB_ARGUMENT_INVALID',
      );
      await expectBlobError(
        store.uploadPart(raised.uploadId, raised.partCount + 1, chunked(new Uint8Array(1))),
        'ERR_BLOB_ARGUMENT_INVALID',
      );
      await store.abortUpload(raised.uploadId);
    });

    it('gcUploads removes only sessions idle since before the cut-off, parts and all', async () => {
      const f = makeFixture();
      const store = f.createStore();
      const data = randomBytes(f.partSizeBytes + 1);
      const { uploadId } = await store.createUpload(keyOf(data), {
        sizeBytes: data.byteLength,
        partSizeBytes: f.partSizeBytes,
      });
      await store.uploadPart(uploadId, 1, chunked(part(data, f.partSizeBytes, 1)));
      expect(await store.gcUploads(new Date(Date.now() - 3600_000))).toBe(0);
      expect((await store.getUpload(uploadId)).parts).toHaveLength(1);
      expect(await store.gcUploads(new Date(Date.now() + 3600_000))).toBeGreaterThanOrEqual(1);
      await expectBlobError(store.getUpload(uploadId), 'ERR_BLOB_UPLOAD_NOT_FOUND');
      expect(await f.listSessionLeftovers(uploadId)).toEqual([]);
    });
  });
}
