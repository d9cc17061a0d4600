// The admin API in-process on PGlite and the real PostgreSQL: roles, release push verification
// (real signatures, tampering, missing blobs), product root rotation, inventory listing with
// cursor pagination, body limits, error shape, and that logs and responses hold no secrets.
import { generateSigningKey, signManifest, signTrustRoot, createTrustRoot } from '@abota/manifest';
import { count } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../src/index.js';
import {
  createHarness,
  createProduct,
  createProvisioningToken,
  DB_BACKENDS,
  type Harness,
  makeProduct,
  makeRelease,
  openTestBlobStore,
  openTestDatabase,
  type ProductKeys,
  pushRelease,
  registerDevice,
  type TestBlobStore,
  type TestDatabase,
} from './harness.js';

type ErrorBody = { error: { code: string; message: string } };

describe.each(DB_BACKENDS)('admin API on %s', (backend) => {
  let tdb: TestDatabase;
  let tblobs: TestBlobStore;
  let h: Harness;
  let keys: ProductKeys;

  const rowCounts = async () => {
    const db = tdb.database.db;
    const tables = {
      releases: schema.releases,
      blobs: schema.blobs,
      products: schema.products,
      devices: schema.devices,
      rollouts: schema.rollouts,
      apiKeys: schema.apiKeys,
      provisioningTokens: schema.provisioningTokens,
      auditLog: schema.auditLog,
    };
    const out: Record<string, number> = {};
    for (const [name, table] of Object.entries(tables)) {
      const [row] = await db.select({ n: count() }).from(table);
      out[name] = Number(row?.n ?? -1);
    }
    return out;
  };

  const newKey = async (role: string) => {
    const res = await h.request('/v1/admin/api-keys', {
      method: 'POST',
      key: h.adminKey,
      json: { name: `${role} key`, role },
    });
    expect(res.status).toBe(201);
    return ((await res.json()) as { key: string }).key;
  };

  beforeAll(async () => {
    tdb = await openTestDatabase(backend);
    tblobs = await openTestBlobStore('fs');
    h = await createHarness(tdb.database, tblobs.blobs, {
      maxJsonBodyBytes: 64 * 1024,
      maxBlobSizeBytes: 64 * 1024,
    });
    keys = await makeProduct('eflow-vm');
    await createProduct(h, keys);
  });
  afterAll(async () => {
    await tdb?.dispose();
    await tblobs?.dispose();
  });

  it('pushes a signed release, lists, gets and yanks it; pushing the same JWS again is idempotent', async () => {
    const release = await makeRelease(keys, '1.0.0');
    const id = await pushRelease(h, release);
    const again = await h.request('/v1/admin/releases', {
      method: 'POST',
      key: h.adminKey,
      json: { manifestJws: release.manifestJws },
    });
    expect(again.status).toBe(200);
    expect(((await again.json()) as { id: string }).id).toBe(id);
    const got = (await (await h.request(`/v1/admin/releases/${id}`, { key: h.adminKey })).json()) as {
      version: string;
      securityVersion: number;
      manifestJws: string;
      blobs: { digest: string; role: string }[];
    };
    expect(got.version).toBe('1.0.0');
    expect(got.manifestJws).toBe(release.manifestJws);
    expect(got.blobs.map((b) => b.role).sort()).toEqual([
      'images.rootfs.artifact',
      'images.rootfs.verity.hashTree',
    ]);
    const list = (await (
      await h.request('/v1/admin/releases?product=eflow-vm', { key: h.adminKey })
    ).json()) as { items: { id: string }[] };
    expect(list.items.map((r) => r.id)).toContain(id);
    const yank = await h.request(`/v1/admin/releases/${id}/yank`, {
      method: 'POST',
      key: h.adminKey,
      json: { reason: 'bad kernel' },
    });
    expect(((await yank.json()) as { yanked: boolean }).yanked).toBe(true);
    const rollout = await h.request('/v1/admin/rollouts', {
      method: 'POST',
      key: h.adminKey,
      json: { releaseId: id },
    });
    expect(rollout.status).toBe(409);
  });

  it('refuses a tampered manifest, a signature by a key outside the trust root, and missing blobs — changing nothing', async () => {
    const release = await makeRelease(keys, '1.1.0');
    for (const [digest, bytes] of release.blobs) {
      await h.request(`/v1/admin/blobs/sha256/${digest.slice(7)}`, {
        method: 'PUT',
        key: h.adminKey,
        body: bytes,
      });
    }
    const before = await rowCounts();
    const jws = JSON.parse(release.manifestJws) as { payload: string; signatures: unknown[] };
    const payload = JSON.parse(Buffer.from(jws.payload, 'base64url').toString('utf8')) as {
      securityVersion: number;
    };
    payload.securityVersion = 99;
    const tampered = JSON.stringify({
      ...jws,
      payload: Buffer.from(JSON.stringify(payload)).toString('base64url'),
    });
    const res = await h.request('/v1/admin/releases', {
      method: 'POST',
      key: h.adminKey,
      json: { manifestJws: tampered },
    });
    expect(res.status).toBe(422);
    expect(((await res.json()) as ErrorBody).error.code).toMatch(
      /^ERR_(SIGNATURE_INVALID|THRESHOLD_NOT_MET|MANIFEST_INVALID)$/,
    );

    const rogue = await generateSigningKey();
    const rogueJws = JSON.stringify(await signManifest(release.manifest, [rogue]));
    const rogueRes = await h.request('/v1/admin/releases', {
      method: 'POST',
      key: h.adminKey,
      json: { manifestJws: rogueJws },
    });
    expect(rogueRes.status).toBe(422);
    expect(((await rogueRes.json()) as ErrorBody).error.code).toBe('ERR_THRESHOLD_NOT_MET');

    const junk = await h.request('/v1/admin/releases', {
      method: 'POST',
      key: h.adminKey,
      json: { manifestJws: '{"payload":1}' },
    });
    expect(junk.status).toBe(422);
    expect(((await junk.json()) as ErrorBody).error.code).toBe('ERR_JWS_MALFORMED');

    const missing = await makeRelease(keys, '1.2.0');
    const missingRes = await h.request('/v1/admin/releases', {
      method: 'POST',
      key: h.adminKey,
      json: { manifestJws: missing.manifestJws },
    });
    expect(missingRes.status).toBe(422);
    const missingBody = (await missingRes.json()) as ErrorBody;
    expect(missingBody.error.code).toBe('ERR_BLOB_MISSING');
    expect(missingBody.error.message).toContain(missing.artifactDigest);

    expect(await rowCounts()).toEqual(before);
  });

  it('enforces roles: a viewer cannot push or create keys, a publisher cannot start rollouts, bad keys are refused', async () => {
    const viewer = await newKey('viewer');
    const publisher = await newKey('publisher');
    const release = await makeRelease(keys, '2.0.0');
    const [digest, bytes] = [...release.blobs][0] ?? ['', new Uint8Array()];
    const before = await rowCounts();
    const put = await h.request(`/v1/admin/blobs/sha256/${digest.slice(7)}`, {
      method: 'PUT',
      key: viewer,
      body: bytes,
    });
    expect(put.status).toBe(403);
    expect(((await put.json()) as ErrorBody).error.code).toBe('ERR_FORBIDDEN');
    const push = await h.request('/v1/admin/releases', {
      method: 'POST',
      key: viewer,
      json: { manifestJws: release.manifestJws },
    });
    expect(push.status).toBe(403);
    expect(
      (
        await h.request('/v1/admin/api-keys', {
          method: 'POST',
          key: viewer,
          json: { name: 'x', role: 'admin' },
        })
      ).status,
    ).toBe(403);
    expect(
      (
        await h.request('/v1/admin/api-keys', {
          method: 'POST',
          key: publisher,
          json: { name: 'x', role: 'admin' },
        })
      ).status,
    ).toBe(403);
    expect(await rowCounts()).toEqual(before);
    expect((await h.request('/v1/admin/releases', { key: viewer })).status).toBe(200);

    const id = await pushRelease({ ...h, adminKey: publisher }, release);
    expect(
      (await h.request('/v1/admin/rollouts', { method: 'POST', key: publisher, json: { releaseId: id } }))
        .status,
    ).toBe(403);

    expect((await h.request('/v1/admin/releases')).status).toBe(401);
    expect(
      (await h.request('/v1/admin/releases', { key: 'abk_wrongwrongwrongwrongwrongwrongwrongwrong' })).status,
    ).toBe(401);
    // Revoked keys stop working at once.
    const list = (await (await h.request('/v1/admin/api-keys', { key: h.adminKey })).json()) as {
      items: { id: string; role: string }[];
    };
    const viewerId = list.items.find((k) => k.role === 'viewer')?.id;
    expect(
      (await h.request(`/v1/admin/api-keys/${viewerId}/revoke`, { method: 'POST', key: h.adminKey })).status,
    ).toBe(200);
    expect((await h.request('/v1/admin/releases', { key: viewer })).status).toBe(401);
  });

  it('refuses oversized and malformed bodies with a clear 4xx and changes nothing', async () => {
    const before = await rowCounts();
    const big = await h.request('/v1/admin/provisioning-tokens', {
      method: 'POST',
      key: h.adminKey,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        product: 'eflow-vm',
        expiresInSeconds: 3600,
        description: 'x'.repeat(100 * 1024),
      }),
    });
    expect(big.status).toBe(413);
    expect(((await big.json()) as ErrorBody).error.code).toBe('ERR_BODY_TOO_LARGE');

    const malformed = await h.request('/v1/admin/provisioning-tokens', {
      method: 'POST',
      key: h.adminKey,
      headers: { 'content-type': 'application/json' },
      body: '{"product": "eflow-vm",',
    });
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as ErrorBody).error).toEqual({
      code: 'ERR_VALIDATION',
      message: 'request body is not valid JSON',
    });

    const invalid = await h.request('/v1/admin/provisioning-tokens', {
      method: 'POST',
      key: h.adminKey,
      json: { product: 'eflow-vm', expiresInSeconds: -5 },
    });
    expect(invalid.status).toBe(400);
    expect(((await invalid.json()) as ErrorBody).error.message).toMatch(/expiresInSeconds/);

    const extra = await h.request('/v1/admin/rollouts', {
      method: 'POST',
      key: h.adminKey,
      json: { releaseId: crypto.randomUUID(), evil: true },
    });
    expect(extra.status).toBe(400);

    const wrongType = await h.request('/v1/admin/products', {
      method: 'POST',
      key: h.adminKey,
      headers: { 'content-type': 'text/plain' },
      body: 'hello',
    });
    expect(wrongType.status).toBe(415);

    const blobTooBig = new Uint8Array(64 * 1024 + 1);
    const hex = 'a'.repeat(64);
    const putBig = await h.request(`/v1/admin/blobs/sha256/${hex}`, {
      method: 'PUT',
      key: h.adminKey,
      body: blobTooBig,
    });
    expect(putBig.status).toBe(413);
    const wrongDigest = await h.request(`/v1/admin/blobs/sha256/${hex}`, {
      method: 'PUT',
      key: h.adminKey,
      body: new Uint8Array(10),
    });
    expect(wrongDigest.status).toBe(422);
    expect(((await wrongDigest.json()) as ErrorBody).error.code).toBe('ERR_BLOB_DIGEST_MISMATCH');
    expect(
      (await h.request(`/v1/admin/blobs/sha256/${hex}`, { method: 'HEAD', key: h.adminKey })).status,
    ).toBe(404);

    const unknownRoute = await h.request('/v1/admin/nothing', { key: h.adminKey });
    expect(unknownRoute.status).toBe(404);
    expect(((await unknownRoute.json()) as ErrorBody).error.code).toBe('ERR_NOT_FOUND');
    expect(await rowCounts()).toEqual(before);
  });

  it('creates products only with a valid self-signed root and rotates roots only through a verified N+1', async () => {
    const other = await makeProduct('rotating');
    const bad = await h.request('/v1/admin/products', {
      method: 'POST',
      key: h.adminKey,
      json: { id: 'broken', trustRoot: { payload: 'x', signatures: [] } },
    });
    expect(bad.status).toBe(422);
    await createProduct(h, other);
    expect(
      (
        await h.request('/v1/admin/products', {
          method: 'POST',
          key: h.adminKey,
          json: { id: 'rotating', trustRoot: other.signedRoot },
        })
      ).status,
    ).toBe(409);

    const newRootKey = await generateSigningKey();
    const v2 = await createTrustRoot({
      version: 2,
      expires: new Date(Date.now() + 86400_000 * 30),
      rootKeys: [newRootKey],
      rootThreshold: 1,
      releaseKeys: [other.releaseKey],
      releaseThreshold: 1,
    });
    // Signed by the new key only: not a valid rotation (the old root did not approve it).
    const unapproved = await signTrustRoot(v2, [newRootKey]);
    const refused = await h.request('/v1/admin/products/rotating/trust-root', {
      method: 'PUT',
      key: h.adminKey,
      json: { trustRoot: unapproved },
    });
    expect(refused.status).toBe(422);
    const approved = await signTrustRoot(v2, [newRootKey, other.rootKey], other.root);
    const rotated = await h.request('/v1/admin/products/rotating/trust-root', {
      method: 'PUT',
      key: h.adminKey,
      json: { trustRoot: approved },
    });
    expect(rotated.status).toBe(200);
    expect(((await rotated.json()) as { trustRootVersion: number }).trustRootVersion).toBe(2);
  });

  it('lists devices with filters and cursor pagination, tags them, and audits changes', async () => {
    const fleet = await makeProduct('fleet');
    await createProduct(h, fleet);
    const token = await createProvisioningToken(h, 'fleet');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++)
      ids.push((await registerDevice(h, 'fleet', token, i < 3 ? 'hyperv-x64' : 'arm64-board')).id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const q: string = `/v1/admin/devices?product=fleet&limit=2${cursor === null ? '' : `&cursor=${cursor}`}`;
      const pageBody = (await (await h.request(q, { key: h.adminKey })).json()) as {
        items: { id: string }[];
        nextCursor: string | null;
      };
      expect(pageBody.items.length).toBeLessThanOrEqual(2);
      seen.push(...pageBody.items.map((d) => d.id));
      cursor = pageBody.nextCursor;
    } while (cursor !== null);
    expect(seen.sort()).toEqual([...ids].sort());
    const arm = (await (
      await h.request('/v1/admin/devices?product=fleet&hardware=arm64-board', { key: h.adminKey })
    ).json()) as { items: unknown[] };
    expect(arm.items).toHaveLength(2);
    await h.request(`/v1/admin/devices/${ids[0]}/tags`, {
      method: 'PUT',
      key: h.adminKey,
      json: { tags: ['lab', 'canary'] },
    });
    const tagged = (await (await h.request('/v1/admin/devices?tag=canary', { key: h.adminKey })).json()) as {
      items: { id: string; tags: string[] }[];
    };
    expect(tagged.items.map((d) => d.id)).toEqual([ids[0]]);
    expect(tagged.items[0]?.tags).toEqual(['canary', 'lab']);
    const audits = await tdb.database.db.select().from(schema.auditLog);
    expect(audits.some((a) => a.action === 'device.tags' && a.target === `device:${ids[0]}`)).toBe(true);
    expect((await h.request('/v1/admin/devices?cursor=garbage', { key: h.adminKey })).status).toBe(400);
  });

  it('never puts stack traces or secrets into responses or logs', async () => {
    const token = await createProvisioningToken(h, 'eflow-vm');
    const device = await registerDevice(h, 'eflow-vm', token);
    const jwt = await device.token();
    await h.request('/v1/device/poll', {
      method: 'POST',
      token: jwt,
      json: { version: '1.0.0', bootedSlot: 'A' },
    });
    await h.request('/v1/device/poll', {
      method: 'POST',
      token: jwt,
      json: { version: '1.0.0', bootedSlot: 'A' },
    }); // replay
    const responses = [
      await h.request('/v1/admin/releases', {
        method: 'POST',
        key: h.adminKey,
        json: { manifestJws: 'garbage' },
      }),
      await h.request('/v1/admin/releases', { key: 'abk_wrongwrongwrongwrongwrongwrongwrongwrong' }),
      await h.request('/v1/device/poll', { method: 'POST', token: 'x.y.z', json: {} }),
    ];
    for (const res of responses) {
      const text = await res.text();
      expect(text).not.toMatch(/\n\s+at /);
      expect(text).not.toContain(h.adminKey);
    }
    const logText = h.logs.join('\n');
    expect(h.logs.length).toBeGreaterThan(10);
    for (const secret of [h.adminKey, token, jwt]) expect(logText).not.toContain(secret);
    expect(logText).not.toMatch(/\\n\s+at /);
  });
});
