// Resumable uploads over the admin API (routes/uploads.ts) on PGlite with FsBlobStore and with
// S3BlobStore on a real s3rver: parts in any order, Content-Digest checks, completion with the audit
// record, two app replicas continuing one session, a connection dropped in the middle of a part
// over real HTTP, refused wholes that store nothing, roles, limits and expiry.
import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gcUploadSessions, schema } from '../src/index.js';
import {
  type BlobBackend,
  createHarness,
  type Harness,
  openTestBlobStore,
  openTestDatabase,
  type TestBlobStore,
  type TestDatabase,
} from './harness.js';

const KiB = 1024;
const MiB = 1024 * KiB;

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const contentDigest = (b: Uint8Array): string =>
  `sha-256=:${createHash('sha256').update(b).digest('base64')}:`;

interface UploadView {
  uploadId: string;
  digest: string;
  sizeBytes: number;
  partSizeBytes: number;
  partCount: number;
  parts: { partNumber: number; sizeBytes: number; sha256: string }[];
  receivedBytes: number;
  expiresAt: string;
}

describe.each<BlobBackend>(['fs', 's3'])('resumable uploads on PGlite with the %s blob store', (backend) => {
  let tdb: TestDatabase;
  let tblobs: TestBlobStore;
  let h: Harness;
  /** A second app (replica) on the same database and blob store. */
  let replica: Harness;
  const partSize = backend === 'fs' ? 64 * KiB : 5 * MiB;

  beforeAll(async () => {
    tdb = await openTestDatabase('pglite');
    tblobs = await openTestBlobStore(backend);
    h = await createHarness(tdb.database, tblobs.blobs, { maxBlobSizeBytes: 64 * MiB });
    replica = { ...(await createHarness(tdb.database, tblobs.blobs)), adminKey: h.adminKey };
  }, 60_000);
  afterAll(async () => {
    await tdb?.dispose();
    await tblobs?.dispose();
  });

  const part = (data: Uint8Array, n: number): Uint8Array =>
    data.subarray((n - 1) * partSize, Math.min(n * partSize, data.byteLength));

  async function create(app: Harness, data: Uint8Array): Promise<UploadView> {
    const res = await app.request('/v1/admin/uploads', {
      method: 'POST',
      key: h.adminKey,
      json: { digest: `sha256:${sha256(data)}`, sizeBytes: data.byteLength, partSizeBytes: partSize },
    });
    expect(res.status, await res.clone().text()).toBe(201);
    return (await res.json()) as UploadView;
  }

  function putPart(
    app: Harness,
    uploadId: string,
    n: number,
    bytes: Uint8Array,
    digest = contentDigest(bytes),
  ) {
    return app.request(`/v1/admin/uploads/${uploadId}/parts/${n}`, {
      method: 'PUT',
      key: h.adminKey,
      headers: { 'content-type': 'application/octet-stream', 'content-digest': digest },
      body: bytes,
    });
  }

  it('takes parts in any order, completes into the blob store with an audit record, then the session is gone', async () => {
    const data = randomBytes(partSize * 2 + 777);
    const digest = `sha256:${sha256(data)}`;
    const session = await create(h, data);
    expect(session).toMatchObject({
      digest,
      sizeBytes: data.byteLength,
      partSizeBytes: partSize,
      partCount: 3,
      parts: [],
    });
    expect(Date.parse(session.expiresAt)).toBeGreaterThan(Date.now() + 23 * 3600_000);

    for (const n of [2, 3, 1]) {
      const res = await putPart(h, session.uploadId, n, part(data, n));
      expect(res.status, await res.clone().text()).toBe(200);
      expect(await res.json()).toEqual({
        partNumber: n,
        sizeBytes: part(data, n).byteLength,
        sha256: sha256(part(data, n)),
      });
    }
    const status = (await (
      await h.request(`/v1/admin/uploads/${session.uploadId}`, { key: h.adminKey })
    ).json()) as UploadView;
    expect(status.parts.map((p) => p.partNumber)).toEqual([1, 2, 3]);
    expect(status.receivedBytes).toBe(data.byteLength);
    const listed = (await (
      await h.request(`/v1/admin/uploads?digest=${digest}`, { key: h.adminKey })
    ).json()) as {
      items: UploadView[];
    };
    expect(listed.items.map((s) => s.uploadId)).toEqual([session.uploadId]);

    const done = await h.request(`/v1/admin/uploads/${session.uploadId}/complete`, {
      method: 'POST',
      key: h.adminKey,
    });
    expect(done.status, await done.clone().text()).toBe(201);
    expect(await done.json()).toEqual({ digest, sizeBytes: data.byteLength, created: true });

    const fetched = await h.request(`/v1/device/blobs/sha256/${sha256(data)}`, { key: h.adminKey });
    if (fetched.status === 302) {
      const res = await fetch(fetched.headers.get('location') ?? '');
      expect(sha256(new Uint8Array(await res.arrayBuffer()))).toBe(sha256(data));
    } else {
      expect(fetched.status).toBe(200);
      expect(sha256(new Uint8Array(await fetched.arrayBuffer()))).toBe(sha256(data));
    }
    const [row] = await tdb.database.db.select().from(schema.blobs).where(eq(schema.blobs.digest, digest));
    expect(row?.sizeBytes).toBe(data.byteLength);
    const audit = await tdb.database.db
      .select()
      .from(schema.auditLog)
      .where(eq(schema.auditLog.target, digest));
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({
      action: 'blob.upload',
      details: { uploadId: session.uploadId, parts: 3 },
    });

    const gone = await h.request(`/v1/admin/uploads/${session.uploadId}`, { key: h.adminKey });
    expect(gone.status).toBe(404);
    expect(((await gone.json()) as { error: { code: string } }).error.code).toBe('ERR_UPLOAD_NOT_FOUND');
    const again = await h.request('/v1/admin/uploads', {
      method: 'POST',
      key: h.adminKey,
      json: { digest, sizeBytes: data.byteLength },
    });
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ digest, sizeBytes: data.byteLength, created: false });
  });

  it('lets two app replicas on one database and store continue one session', async () => {
    const data = randomBytes(partSize * 2 + 5);
    const { uploadId } = await create(h, data);
    expect((await putPart(replica, uploadId, 1, part(data, 1))).status).toBe(200);
    expect((await putPart(h, uploadId, 3, part(data, 3))).status).toBe(200);
    const seen = (await (
      await replica.request(`/v1/admin/uploads/${uploadId}`, { key: h.adminKey })
    ).json()) as UploadView;
    expect(seen.parts.map((p) => p.partNumber)).toEqual([1, 3]);
    expect((await putPart(replica, uploadId, 2, part(data, 2))).status).toBe(200);
    const done = await replica.request(`/v1/admin/uploads/${uploadId}/complete`, {
      method: 'POST',
      key: h.adminKey,
    });
    expect(done.status).toBe(201);
    expect((await tblobs.blobs.head(`sha256/${sha256(data)}`))?.sizeBytes).toBe(data.byteLength);
  });

  it('resumes after a connection dropped in the middle of a part (real HTTP): the part is missing, sent again, and completes', async () => {
    const data = randomBytes(partSize * 2);
    const { uploadId } = await create(h, data);
    const server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
    await new Promise((ok) => server.once('listening', ok));
    const { port } = server.address() as AddressInfo;
    try {
      const second = part(data, 2);
      // Announce the whole part, send half of it, then cut the connection as a failing network would.
      await new Promise<void>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1', () => {
          socket.write(
            `PUT /v1/admin/uploads/${uploadId}/parts/2 HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${h.adminKey}\r\ncontent-type: application/octet-stream\r\ncontent-length: ${second.byteLength}\r\n\r\n`,
          );
          socket.write(second.subarray(0, second.byteLength >> 1), () => {
            setTimeout(() => {
              socket.destroy();
              resolve();
            }, 200);
          });
        });
        socket.on('error', reject);
      });
      expect((await putPart(h, uploadId, 1, part(data, 1))).status).toBe(200);
      // The store notices the cut when the request stream errors; wait until it has settled.
      let view: UploadView | undefined;
      for (let i = 0; i < 50; i++) {
        view = (await (
          await h.request(`/v1/admin/uploads/${uploadId}`, { key: h.adminKey })
        ).json()) as UploadView;
        if (view.parts.length === 1) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(view?.parts.map((p) => p.partNumber)).toEqual([1]);
      expect(view?.receivedBytes).toBe(partSize);
      // A client going away is its own failure, not the server's: no "unhandled error" in the log.
      expect(h.logs.filter((line) => line.includes('unhandled error'))).toEqual([]);
      const res = await fetch(`http://127.0.0.1:${port}/v1/admin/uploads/${uploadId}/parts/2`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${h.adminKey}`, 'content-digest': contentDigest(second) },
        body: second,
      });
      expect(res.status).toBe(200);
      const done = await fetch(`http://127.0.0.1:${port}/v1/admin/uploads/${uploadId}/complete`, {
        method: 'POST',
        headers: { authorization: `Bearer ${h.adminKey}` },
      });
      expect(done.status).toBe(201);
    } finally {
      await new Promise((ok) => server.close(ok));
    }
  });

  it('refuses a part whose Content-Digest or size is wrong, and a malformed Content-Digest, storing nothing', async () => {
    const data = randomBytes(partSize + 10);
    const { uploadId } = await create(h, data);
    const first = part(data, 1);
    const flipped = Buffer.from(first);
    flipped[0] = (flipped[0] ?? 0) ^ 1;
    const wrong = await putPart(h, uploadId, 1, flipped, contentDigest(first));
    expect(wrong.status).toBe(422);
    expect(((await wrong.json()) as { error: { code: string } }).error.code).toBe('ERR_BLOB_DIGEST_MISMATCH');
    const long = await putPart(h, uploadId, 2, randomBytes(11));
    expect(long.status).toBe(400);
    expect(((await long.json()) as { error: { code: string } }).error.code).toBe('ERR_BLOB_SIZE_MISMATCH');
    const malformed = await putPart(h, uploadId, 2, part(data, 2), 'sha-256=:nope:');
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { error: { message: string } }).error.message).toMatch(/RFC 9530/);
    const beyond = await putPart(h, uploadId, 3, part(data, 2));
    expect(beyond.status).toBe(400);
    const view = (await (
      await h.request(`/v1/admin/uploads/${uploadId}`, { key: h.adminKey })
    ).json()) as UploadView;
    expect(view.parts).toEqual([]);

    const early = await h.request(`/v1/admin/uploads/${uploadId}/complete`, {
      method: 'POST',
      key: h.adminKey,
    });
    expect(early.status).toBe(409);
    expect(await early.json()).toMatchObject({
      error: { code: 'ERR_UPLOAD_INCOMPLETE', message: expect.stringMatching(/missing 1, 2/) },
    });
    expect(
      (await h.request(`/v1/admin/uploads/${uploadId}`, { method: 'DELETE', key: h.adminKey })).status,
    ).toBe(204);
    expect((await h.request(`/v1/admin/uploads/${uploadId}`, { key: h.adminKey })).status).toBe(404);
  });

  it('refuses to complete parts that do not make the announced blob: 422, nothing stored, no audit, session gone', async () => {
    const announced = randomBytes(partSize + 99);
    const other = randomBytes(partSize + 99);
    const digest = `sha256:${sha256(announced)}`;
    const { uploadId } = await create(h, announced);
    for (const n of [1, 2]) expect((await putPart(h, uploadId, n, part(other, n))).status).toBe(200);
    const res = await h.request(`/v1/admin/uploads/${uploadId}/complete`, {
      method: 'POST',
      key: h.adminKey,
    });
    expect(res.status).toBe(422);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('ERR_BLOB_DIGEST_MISMATCH');
    expect(await tblobs.blobs.head(`sha256/${sha256(announced)}`)).toBeUndefined();
    expect(
      (await h.request(`/v1/admin/blobs/sha256/${sha256(announced)}`, { method: 'HEAD', key: h.adminKey }))
        .status,
    ).toBe(404);
    expect(
      await tdb.database.db.select().from(schema.auditLog).where(eq(schema.auditLog.target, digest)),
    ).toEqual([]);
    expect((await h.request(`/v1/admin/uploads/${uploadId}`, { key: h.adminKey })).status).toBe(404);
  });

  it('needs a publisher or admin key, and refuses sizes over the server limit or bad ids', async () => {
    const data = randomBytes(1000);
    const viewer = await h.request('/v1/admin/api-keys', {
      method: 'POST',
      key: h.adminKey,
      json: { name: 'v', role: 'viewer' },
    });
    const viewerKey = ((await viewer.json()) as { key: string }).key;
    const publisher = await h.request('/v1/admin/api-keys', {
      method: 'POST',
      key: h.adminKey,
      json: { name: 'p', role: 'publisher' },
    });
    const publisherKey = ((await publisher.json()) as { key: string }).key;
    const body = { digest: `sha256:${sha256(data)}`, sizeBytes: data.byteLength };
    expect((await h.request('/v1/admin/uploads', { method: 'POST', json: body })).status).toBe(401);
    expect(
      (await h.request('/v1/admin/uploads', { method: 'POST', key: viewerKey, json: body })).status,
    ).toBe(403);
    const ok = await h.request('/v1/admin/uploads', { method: 'POST', key: publisherKey, json: body });
    expect(ok.status).toBe(201);
    const { uploadId } = (await ok.json()) as UploadView;
    expect(
      (await h.request(`/v1/admin/uploads/${uploadId}`, { method: 'DELETE', key: viewerKey })).status,
    ).toBe(403);

    const huge = await h.request('/v1/admin/uploads', {
      method: 'POST',
      key: h.adminKey,
      json: { digest: body.digest, sizeBytes: 64 * MiB + 1 },
    });
    expect(huge.status).toBe(413);
    const tinyParts = await h.request('/v1/admin/uploads', {
      method: 'POST',
      key: h.adminKey,
      json: { ...body, partSizeBytes: 1 },
    });
    expect(tinyParts.status).toBe(400);
    expect((await h.request('/v1/admin/uploads/..%2F..%2Fetc', { key: h.adminKey })).status).toBe(400);
    expect(
      (
        await h.request(`/v1/admin/uploads/${uploadId}/parts/0`, {
          method: 'PUT',
          key: h.adminKey,
          body: 'x',
        })
      ).status,
    ).toBe(400);
    await h.request(`/v1/admin/uploads/${uploadId}`, { method: 'DELETE', key: h.adminKey });
  });

  it('maintenance removes sessions idle for longer than uploadSessionIdleSeconds and keeps the others', async () => {
    const data = randomBytes(partSize + 1);
    const { uploadId } = await create(h, data);
    expect((await putPart(h, uploadId, 1, part(data, 1))).status).toBe(200);
    expect(await gcUploadSessions(tblobs.blobs, new Date(), 3600)).toBe(0);
    expect((await h.request(`/v1/admin/uploads/${uploadId}`, { key: h.adminKey })).status).toBe(200);
    expect(
      await gcUploadSessions(tblobs.blobs, new Date(Date.now() + 2 * 3600_000), 3600),
    ).toBeGreaterThanOrEqual(1);
    expect((await h.request(`/v1/admin/uploads/${uploadId}`, { key: h.adminKey })).status).toBe(404);
  });

  it('documents every upload route in the OpenAPI document', async () => {
    const doc = (await (await h.request('/openapi.json')).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    expect(Object.keys(doc.paths['/v1/admin/uploads'] ?? {}).sort()).toEqual(['get', 'post']);
    expect(Object.keys(doc.paths['/v1/admin/uploads/{id}'] ?? {}).sort()).toEqual(['delete', 'get']);
    expect(Object.keys(doc.paths['/v1/admin/uploads/{id}/parts/{n}'] ?? {})).toEqual(['put']);
    expect(Object.keys(doc.paths['/v1/admin/uploads/{id}/complete'] ?? {})).toEqual(['post']);
  });
});
