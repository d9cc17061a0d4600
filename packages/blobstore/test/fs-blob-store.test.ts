// FsBlobStore against a real temporary directory: the shared contract plus the on-disk layout
// and the failure modes of a filesystem (unwritable root, leftovers of a crashed write).

import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from '@abota/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsBlobStore } from '../src/index.js';
import { blobStoreContract, chunked, expectBlobError, keyOf, readAll } from './blob-store-contract.js';
import { uploadSessionContract } from './upload-session-contract.js';

let rootDir: string;

beforeAll(async () => {
  rootDir = await makeTempDir('abota-blobstore-fs-');
});
afterAll(async () => {
  await rm(rootDir, { recursive: true, force: true });
});

describe('FsBlobStore', () => {
  blobStoreContract(() => ({
    createStore: (options) => new FsBlobStore(rootDir, options),
    listTemporaries: async () =>
      (await readdir(join(rootDir, 'sha256'))).filter((name) => name.startsWith('.')),
  }));

  uploadSessionContract(() => ({
    createStore: () => new FsBlobStore(rootDir),
    partSizeBytes: 64 * 1024,
    listSessionLeftovers: async (uploadId) => [
      ...(await readdir(join(rootDir, 'uploads')).catch(() => [] as string[])).filter((n) => n === uploadId),
      ...(await readdir(join(rootDir, 'sha256')).catch(() => [] as string[])).filter((n) =>
        n.startsWith('.'),
      ),
    ],
  }));

  it('lays blobs out as <rootDir>/sha256/<hex>, the release directory blobs/ layout', async () => {
    const data = randomBytes(5000);
    const key = keyOf(data);
    await new FsBlobStore(rootDir).put(key, chunked(data));
    expect((await readFile(join(rootDir, key))).equals(data)).toBe(true);
    expect(new FsBlobStore(rootDir).pathOf(key)).toBe(join(rootDir, 'sha256', key.slice(7)));
  });

  it('serves blobs written into the layout by other tools (e.g. a copied release directory)', async () => {
    const data = randomBytes(3000);
    const key = keyOf(data);
    await mkdir(join(rootDir, 'sha256'), { recursive: true });
    await writeFile(join(rootDir, key), data);
    const read = await new FsBlobStore(rootDir).get(key, { start: 1000 });
    expect((await readAll(read.body)).equals(data.subarray(1000))).toBe(true);
  });

  it('ignores a temporary file left by a crashed write: the blob stays absent and can be written again', async () => {
    const data = randomBytes(2000);
    const key = keyOf(data);
    const store = new FsBlobStore(rootDir);
    const leftover = join(rootDir, 'sha256', '.tmp-crashed');
    await writeFile(leftover, data.subarray(0, 100));
    expect(await store.head(key)).toBeUndefined();
    await store.put(key, chunked(data));
    expect((await readAll((await store.get(key)).body)).equals(data)).toBe(true);
    await rm(leftover);
  });

  it('returns no presigned URL: the server streams fs blobs itself', async () => {
    expect(
      await new FsBlobStore(rootDir).presignGet(keyOf(new Uint8Array(1)), { expiresInSeconds: 60 }),
    ).toBeUndefined();
  });

  it('creates the blob directory on check() for a fresh data directory', async () => {
    const fresh = join(rootDir, 'fresh', 'blobs');
    await new FsBlobStore(fresh).check();
    expect(await readdir(join(fresh, 'sha256'))).toEqual([]);
  });

  it('fails check() with ERR_BLOB_STORE_UNAVAILABLE naming the directory when the root is not a directory', async () => {
    const file = join(rootDir, 'not-a-directory');
    await writeFile(file, 'x');
    const error = await expectBlobError(new FsBlobStore(file).check(), 'ERR_BLOB_STORE_UNAVAILABLE');
    expect(error.message).toContain(file);
  });

  it('fails put with ERR_BLOB_STORE_IO and stores nothing when the directory cannot be created', async () => {
    const file = join(rootDir, 'also-not-a-directory');
    await writeFile(file, 'x');
    const data = randomBytes(10);
    await expectBlobError(new FsBlobStore(file).put(keyOf(data), chunked(data)), 'ERR_BLOB_STORE_IO');
  });

  it('stops reading and releases the file when the reader breaks off early', async () => {
    const data = randomBytes(300_000);
    const key = keyOf(data);
    const store = new FsBlobStore(rootDir);
    await store.put(key, chunked(data));
    const read = await store.get(key);
    let seen = 0;
    for await (const chunk of read.body) {
      seen += chunk.byteLength;
      break;
    }
    expect(seen).toBeLessThan(data.length);
    // A body never iterated can be closed too.
    await (await store.get(key)).body[Symbol.asyncIterator]().return?.();
  });

  it('refuses a maximum blob size that is not a non-negative integer', () => {
    expect(() => new FsBlobStore(rootDir, { maxBlobSizeBytes: -1 })).toThrow(/maxBlobSizeBytes/);
  });
});
