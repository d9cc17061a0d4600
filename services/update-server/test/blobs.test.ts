// Blob transfer against FsBlobStore and S3BlobStore (a real s3rver on loopback), on both
// databases: uploads, HEAD for resumable pushes, device access only to blobs of releases offered
// to it, streamed Range responses (206, Content-Range, 416) and 302 presigned redirects.
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BlobBackend,
  createHarness,
  createProduct,
  createProvisioningToken,
  type DbBackend,
  type Harness,
  makeProduct,
  makeRelease,
  openTestBlobStore,
  openTestDatabase,
  pushRelease,
  registerDevice,
  startRollout,
  type TestBlobStore,
  type TestDatabase,
  type TestDevice,
  type TestRelease,
} from './harness.js';

const MATRIX: [DbBackend, BlobBackend][] = [
  ['pglite', 'fs'],
  ['pglite', 's3'],
  ['postgres', 'fs'],
  ['postgres', 's3'],
];

describe.each(MATRIX)('blobs on %s with the %s blob store', (dbBackend, blobBackend) => {
  let tdb: TestDatabase;
  let tblobs: TestBlobStore;
  let h: Harness;
  let hStream: Harness;
  let release: TestRelease;
  let member: TestDevice;
  let outsider: TestDevice;

  beforeAll(async () => {
    tdb = await openTestDatabase(dbBackend);
    tblobs = await openTestBlobStore(blobBackend);
    h = await createHarness(tdb.database, tblobs.blobs, { blobDelivery: 'redirect' });
    // A second app on the same database and store that always streams (S3 included).
    hStream = {
      ...(await createHarness(tdb.database, tblobs.blobs, { blobDelivery: 'stream' })),
      adminKey: h.adminKey,
    };
    const keys = await makeProduct('eflow-vm');
    await createProduct(h, keys);
    const token = await createProvisioningToken(h, keys.product);
    release = await makeRelease(keys, '1.0.0');
    const releaseId = await pushRelease(h, release);
    member = await registerDevice(h, keys.product, token);
    outsider = await registerDevice(h, keys.product, token);
    await startRollout(h, releaseId, { deviceIds: [member.id] });
    hStream.clock = h.clock;
  });
  afterAll(async () => {
    await tdb?.dispose();
    await tblobs?.dispose();
  });

  const artifactPath = () => `/v1/device/blobs/sha256/${release.artifactDigest.slice(7)}`;
  const artifact = () => release.blobs.get(release.artifactDigest) ?? new Uint8Array();

  it('reports presence with HEAD and skips a second upload of the same blob', async () => {
    const hex = release.artifactDigest.slice(7);
    const head = await h.request(`/v1/admin/blobs/sha256/${hex}`, { method: 'HEAD', key: h.adminKey });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(artifact().length));
    const again = await h.request(`/v1/admin/blobs/sha256/${hex}`, {
      method: 'PUT',
      key: h.adminKey,
      body: artifact(),
    });
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({
      digest: release.artifactDigest,
      sizeBytes: artifact().length,
      created: false,
    });
  });

  it('streams the whole blob and single ranges (206 + Content-Range), 416 past the end', async () => {
    const full = await hStream.request(artifactPath(), { token: await member.token() });
    expect(full.status).toBe(200);
    expect(full.headers.get('accept-ranges')).toBe('bytes');
    expect(new Uint8Array(await full.arrayBuffer())).toEqual(artifact());

    const part = await hStream.request(artifactPath(), {
      token: await member.token(),
      headers: { range: 'bytes=100-1123' },
    });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 100-1123/${artifact().length}`);
    expect(new Uint8Array(await part.arrayBuffer())).toEqual(artifact().subarray(100, 1124));

    const tail = await hStream.request(artifactPath(), {
      token: await member.token(),
      headers: { range: 'bytes=-10' },
    });
    expect(tail.status).toBe(206);
    expect(new Uint8Array(await tail.arrayBuffer())).toEqual(artifact().subarray(artifact().length - 10));

    const open = await hStream.request(artifactPath(), {
      token: await member.token(),
      headers: { range: 'bytes=8000-' },
    });
    expect(open.status).toBe(206);
    expect(new Uint8Array(await open.arrayBuffer())).toEqual(artifact().subarray(8000));

    const past = await hStream.request(artifactPath(), {
      token: await member.token(),
      headers: { range: `bytes=${artifact().length}-` },
    });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${artifact().length}`);
  });

  it('lets only devices the release is offered to (and admins) fetch its blobs', async () => {
    const refused = await hStream.request(artifactPath(), { token: await outsider.token() });
    expect(refused.status).toBe(404);
    const admin = await hStream.request(artifactPath(), { key: h.adminKey });
    expect(admin.status).toBe(200);
    expect(new Uint8Array(await admin.arrayBuffer())).toEqual(artifact());
    expect((await hStream.request(artifactPath())).status).toBe(401);
    // A replayed device JWT is refused for downloads too.
    const jwt = await member.token();
    expect((await hStream.request(artifactPath(), { token: jwt })).status).toBe(200);
    expect((await hStream.request(artifactPath(), { token: jwt })).status).toBe(401);
  });

  it(
    blobBackend === 's3'
      ? 'redirects to a presigned URL that serves the bytes and ranges'
      : 'streams when the store cannot presign',
    async () => {
      // A real listening server so the redirect is followed over HTTP as a device would.
      const server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
      await new Promise((ok) => server.once('listening', ok));
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      try {
        const res = await fetch(`${base}${artifactPath()}`, {
          headers: { authorization: `Bearer ${await member.token()}` },
          redirect: 'manual',
        });
        if (blobBackend === 's3') {
          expect(res.status).toBe(302);
          const location = res.headers.get('location') ?? '';
          expect(location).toMatch(
            /^http:\/\/127\.0\.0\.1:\d+\/abota\/blobs\/sha256\/[0-9a-f]{64}\?.*X-Amz-Signature=/,
          );
          const body = await fetch(location);
          expect(new Uint8Array(await body.arrayBuffer())).toEqual(artifact());
          const ranged = await fetch(location, { headers: { range: 'bytes=0-99' } });
          expect(ranged.status).toBe(206);
          expect(new Uint8Array(await ranged.arrayBuffer())).toEqual(artifact().subarray(0, 100));
          // Without a valid device token there is no redirect.
          expect(
            (
              await fetch(`${base}${artifactPath()}`, {
                headers: { authorization: `Bearer ${await outsider.token()}` },
                redirect: 'manual',
              })
            ).status,
          ).toBe(404);
        } else {
          expect(res.status).toBe(200);
          expect(new Uint8Array(await res.arrayBuffer())).toEqual(artifact());
        }
      } finally {
        await new Promise((ok) => server.close(ok));
      }
    },
  );

  it('lists blobs by digest with whether a release references them; unreferenced and createdBefore filter, pages continue', async () => {
    const stray = new TextEncoder().encode(`stray blob on ${dbBackend}/${blobBackend}`);
    const hex = createHash('sha256').update(stray).digest('hex');
    const put = await h.request(`/v1/admin/blobs/sha256/${hex}`, {
      method: 'PUT',
      key: h.adminKey,
      body: stray,
    });
    expect(put.status).toBe(201);
    const list = async (query: string) => {
      const res = await h.request(`/v1/admin/blobs${query}`, { key: h.adminKey });
      expect(res.status).toBe(200);
      return (await res.json()) as {
        items: { digest: string; sizeBytes: number; referenced: boolean }[];
        nextCursor: string | null;
      };
    };
    const all = await list('');
    expect(all.items.find((b) => b.digest === `sha256:${hex}`)).toMatchObject({
      referenced: false,
      sizeBytes: stray.length,
    });
    expect(all.items.find((b) => b.digest === release.artifactDigest)).toMatchObject({ referenced: true });
    expect(all.items.map((b) => b.digest)).toEqual([...all.items.map((b) => b.digest)].sort());
    expect((await list('?unreferenced=true')).items.map((b) => b.digest)).toEqual([`sha256:${hex}`]);
    expect((await list('?unreferenced=false')).items.every((b) => b.referenced)).toBe(true);
    const hourAgo = new Date(Date.now() - 3600_000).toISOString();
    expect((await list(`?unreferenced=true&createdBefore=${hourAgo}`)).items).toEqual([]);
    const first = await list('?limit=1');
    expect(first.items).toHaveLength(1);
    expect(first.nextCursor).toBe(first.items[0]?.digest);
    const rest = await list(`?cursor=${first.nextCursor}`);
    expect([...first.items, ...rest.items]).toEqual(all.items);
    const bad = await h.request('/v1/admin/blobs?cursor=abc', { key: h.adminKey });
    expect(bad.status).toBe(400);
    await h.request(`/v1/admin/blobs/sha256/${hex}`, { method: 'DELETE', key: h.adminKey });
  });
});
