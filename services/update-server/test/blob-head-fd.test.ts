// Issue #16 defect 6: HEAD with a Range header on the blob download route opened the blob
// (FsBlobStore: a file handle and a read stream), and hono drops a HEAD answer's body without
// cancelling it, so every such request left a file descriptor open until garbage collection
// (a range that fits in the first 64 KiB read hit end of file at once and closed itself, so the
// blob here is larger). Counted in /proc/self/fd around 200 requests over real HTTP.
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createHarness,
  type Harness,
  openTestBlobStore,
  openTestDatabase,
  type TestBlobStore,
  type TestDatabase,
} from './harness.js';

const openFds = () => readdirSync('/proc/self/fd').length;
const BLOB = new Uint8Array(randomBytes(512 * 1024));
const HEX = createHash('sha256').update(BLOB).digest('hex');

describe('HEAD with Range on the filesystem blob store', () => {
  let tdb: TestDatabase;
  let tblobs: TestBlobStore;
  let h: Harness;
  let server: ReturnType<typeof serve>;
  let url: string;

  beforeAll(async () => {
    tdb = await openTestDatabase('pglite');
    tblobs = await openTestBlobStore('fs');
    h = await createHarness(tdb.database, tblobs.blobs, { blobDelivery: 'stream' });
    const put = await h.request(`/v1/admin/blobs/sha256/${HEX}`, {
      method: 'PUT',
      key: h.adminKey,
      headers: { 'content-type': 'application/octet-stream' },
      body: BLOB,
    });
    expect(put.status).toBe(201);
    server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
    await new Promise<void>((ok) => server.once('listening', ok));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/device/blobs/sha256/${HEX}`;
  });
  afterAll(async () => {
    await new Promise<void>((ok) => server?.close(() => ok()));
    await tdb?.dispose();
    await tblobs?.dispose();
  });

  it('answers 206 headers without opening the blob, so no descriptor stays open', async () => {
    // An admin key may download through the device route (README "Security").
    const headers = { authorization: `Bearer ${h.adminKey}`, range: 'bytes=1000-299999' };
    for (let i = 0; i < 5; i++) await fetch(url, { method: 'HEAD', headers });
    const before = openFds();
    for (let i = 0; i < 200; i++) {
      const res = await fetch(url, { method: 'HEAD', headers });
      expect(res.status).toBe(206);
      expect(res.headers.get('content-range')).toBe(`bytes 1000-299999/${BLOB.length}`);
      expect(res.headers.get('content-length')).toBe('299000');
    }
    const after = openFds();
    // Sockets come and go; the leak was one descriptor per request (200).
    expect(after - before).toBeLessThan(20);
    // GET with the same range still streams exactly those bytes.
    const get = await fetch(url, { headers });
    expect(get.status).toBe(206);
    expect(new Uint8Array(await get.arrayBuffer())).toEqual(BLOB.subarray(1000, 300000));
  });
});
