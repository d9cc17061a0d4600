// Deltas end to end on the server (docs/CONTRACTS.md "Deltas end to end"), on PGlite and the
// real PostgreSQL, with FsBlobStore and S3BlobStore on s3rver: real images with real dm-verity
// trees (@abota/verity), real deltas made by @abota/delta's `diff`, registration and every
// refusal, idempotency, the poll offering only deltas from the reported version, device blob
// access (and its refusal across products), blob deletion guards, yank and release deletion.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { diff } from '@abota/delta';
import { type ReleaseManifest, signManifest } from '@abota/manifest';
import { makeTempDir } from '@abota/testkit';
import { formatVerity } from '@abota/verity';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../src/index.js';
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
  type ProductKeys,
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

const BLOCK_BYTES = 4096;
const IMAGE_BLOCKS = 32;

type ErrorBody = { error: { code: string; message: string } };
interface DeltaView {
  id: string;
  releaseId: string;
  image: string;
  sourceVersion: string;
  sourceRootHash: string;
  sourceSizeBytes: number;
  targetRootHash: string;
  digest: string;
  sizeBytes: number;
  createdAt: string;
}
interface PollBody {
  status: string;
  artifacts?: Record<string, string>;
  deltas?: {
    image: string;
    digest: string;
    sizeBytes: number;
    url: string;
    sourceVersion: string;
    sourceRootHash: string;
  }[];
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** `base` with the listed blocks replaced by random bytes. */
function withChangedBlocks(base: Uint8Array, blocks: number[]): Uint8Array {
  const out = new Uint8Array(base);
  for (const b of blocks) out.set(randomBytes(BLOCK_BYTES), b * BLOCK_BYTES);
  return out;
}

interface Image {
  path: string;
  bytes: Uint8Array;
  rootHash: string;
  hashTree: Uint8Array;
  verity: ReleaseManifest['images']['rootfs']['verity'];
}

/** Writes the image and builds its real dm-verity hash file (the release's hashTree blob). */
async function makeImage(dir: string, name: string, bytes: Uint8Array): Promise<Image> {
  const path = join(dir, `${name}.img`);
  const hashPath = join(dir, `${name}.hash`);
  await writeFile(path, bytes);
  const { rootHash, params } = await formatVerity({ dataPath: path, hashPath, params: {} });
  const hashTree = new Uint8Array(await readFile(hashPath));
  return {
    path,
    bytes,
    rootHash,
    hashTree,
    verity: {
      hashType: params.hashType,
      algorithm: params.algorithm as 'sha256',
      dataBlockSize: params.dataBlockSize as 4096,
      hashBlockSize: params.hashBlockSize as 4096,
      dataBlocks: params.dataBlocks,
      salt: Buffer.from(params.salt).toString('hex'),
      rootHash,
      superblock: params.superblock,
      ...(params.uuid === undefined ? {} : { uuid: params.uuid }),
      hashOffset: params.hashOffset,
      hashTree: { digest: `sha256:${sha256(hashTree)}`, sizeBytes: hashTree.length },
    },
  };
}

/** A signed release whose rootfs is `image` (artifact uncompressed). */
async function imageRelease(keys: ProductKeys, version: string, image: Image): Promise<TestRelease> {
  const artifactDigest = `sha256:${sha256(image.bytes)}`;
  const now = new Date();
  const manifest: ReleaseManifest = {
    schemaVersion: 1,
    product: keys.product,
    compatible: ['hyperv-x64'],
    version,
    securityVersion: 1,
    created: `${now.toISOString().slice(0, 19)}Z`,
    expires: `${new Date(now.getTime() + 30 * 86400_000).toISOString().slice(0, 19)}Z`,
    images: {
      rootfs: {
        sizeBytes: image.bytes.length,
        verity: image.verity,
        artifact: {
          digest: artifactDigest,
          sizeBytes: image.bytes.length,
          codec: 'none',
          uncompressedSizeBytes: image.bytes.length,
        },
      },
    },
  };
  const jws = await signManifest(manifest, [keys.releaseKey], keys.root);
  return {
    manifest,
    manifestJws: JSON.stringify(jws),
    blobs: new Map([
      [artifactDigest, image.bytes],
      [image.verity.hashTree.digest, image.hashTree],
    ]),
    artifactDigest,
    hashTreeDigest: image.verity.hashTree.digest,
  };
}

interface Delta {
  bytes: Uint8Array;
  digest: string;
  sizeBytes: number;
}

/** A real delta from `source` to `target` recording the given root hashes in its header. */
async function makeDelta(
  dir: string,
  source: Image,
  target: { path: string; rootHash: string },
  opts: { maxOpTargetBytes?: number } = {},
): Promise<Delta> {
  const outPath = join(dir, `delta-${randomUUID()}.bin`);
  await diff({
    sourcePath: source.path,
    targetPath: target.path,
    outPath,
    blockSize: BLOCK_BYTES,
    sourceRootHash: source.rootHash,
    targetRootHash: target.rootHash,
    brotliQuality: 5,
    ...opts,
  });
  const bytes = new Uint8Array(await readFile(outPath));
  return { bytes, digest: `sha256:${sha256(bytes)}`, sizeBytes: bytes.length };
}

describe.each(MATRIX)('deltas on %s with the %s blob store', (dbBackend, blobBackend) => {
  let tdb: TestDatabase;
  let tblobs: TestBlobStore;
  let dir: string;
  let h: Harness;
  let hStream: Harness;
  let hPublic: Harness;
  let keys: ProductKeys;
  let v1: Image;
  let v2: Image;
  let elsewhere: Image;
  let v090: Image;
  let release2Id: string;
  let release2: TestRelease;
  /** 1.0.0 → 2.0.0 */
  let d1: Delta;
  /** 1.0.0 → 2.0.0 again, other op sizes: another digest for the same (image, source). */
  let d1Other: Delta;
  /** 0.9.0 (not on the server) → 2.0.0 */
  let dx: Delta;
  /** 1.0.0 → an image that is not 2.0.0 */
  let dWrongTarget: Delta;
  /** 1.0.0 → a one-block-longer image, claiming 2.0.0's root hash */
  let dWrongSize: Delta;
  let viewerKey: string;
  let operatorKey: string;
  let dev100: TestDevice;
  let dev090: TestDevice;
  let dev080: TestDevice;
  let otherDevice: TestDevice;
  let otherArtifactHex: string;
  const registered = new Map<string, DeltaView>();

  const put = async (bytes: Uint8Array) => {
    const res = await h.request(`/v1/admin/blobs/sha256/${sha256(bytes)}`, {
      method: 'PUT',
      key: h.adminKey,
      headers: { 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    expect([200, 201]).toContain(res.status);
  };
  const register = (body: Record<string, unknown>, key = h.adminKey, releaseId = release2Id) =>
    h.request(`/v1/admin/releases/${releaseId}/deltas`, { method: 'POST', key, json: body });
  const registration = (d: Delta, sourceVersion: string, sourceRootHash: string) => ({
    image: 'rootfs',
    sourceVersion,
    sourceRootHash,
    digest: d.digest,
    sizeBytes: d.sizeBytes,
  });
  const list = async (key = h.adminKey) => {
    const res = await h.request(`/v1/admin/releases/${release2Id}/deltas`, { key });
    expect(res.status).toBe(200);
    return ((await res.json()) as { items: DeltaView[] }).items;
  };
  const poll = async (app: Harness, device: TestDevice, version: string) => {
    const res = await app.request('/v1/device/poll', {
      method: 'POST',
      token: await device.token(),
      json: { version, bootedSlot: 'A' },
    });
    expect(res.status).toBe(200);
    return (await res.json()) as PollBody;
  };
  const offersWithDelta = async () => {
    const text = await (await h.request('/metrics', { key: h.adminKey })).text();
    const line = text
      .split('\n')
      .find((l) => l.startsWith('abota_offers_with_delta_total{product="eflow-vm"}'));
    return line === undefined ? 0 : Number(line.split(' ').at(-1));
  };

  const deltaAudits = async () =>
    (
      await tdb.database.db
        .select({ action: schema.auditLog.action })
        .from(schema.auditLog)
        .where(eq(schema.auditLog.target, `release:${release2Id}`))
    ).filter((r) => r.action.startsWith('release.delta.'));
  const apiKey = async (role: string) => {
    const res = await h.request('/v1/admin/api-keys', {
      method: 'POST',
      key: h.adminKey,
      json: { name: role, role },
    });
    expect(res.status).toBe(201);
    return ((await res.json()) as { key: string }).key;
  };

  beforeAll(async () => {
    tdb = await openTestDatabase(dbBackend);
    tblobs = await openTestBlobStore(blobBackend);
    dir = await makeTempDir('abota-server-deltas-');
    h = await createHarness(tdb.database, tblobs.blobs, { blobDelivery: 'redirect' });
    hStream = {
      ...(await createHarness(tdb.database, tblobs.blobs, { blobDelivery: 'stream' })),
      adminKey: h.adminKey,
      clock: h.clock,
    };
    hPublic = {
      ...(await createHarness(tdb.database, tblobs.blobs, { publicUrl: 'https://updates.example' })),
      adminKey: h.adminKey,
      clock: h.clock,
    };

    const base = new Uint8Array(randomBytes(IMAGE_BLOCKS * BLOCK_BYTES));
    v1 = await makeImage(dir, 'v1', base);
    v2 = await makeImage(dir, 'v2', withChangedBlocks(base, [3, 20]));
    elsewhere = await makeImage(dir, 'elsewhere', withChangedBlocks(base, [7]));
    v090 = await makeImage(dir, 'v090', withChangedBlocks(base, [0, 1, 2, 30]));
    const longer = join(dir, 'longer.img');
    await writeFile(longer, Buffer.concat([v2.bytes, randomBytes(BLOCK_BYTES)]));

    keys = await makeProduct('eflow-vm');
    await createProduct(h, keys);
    await pushRelease(h, await imageRelease(keys, '1.0.0', v1));
    release2 = await imageRelease(keys, '2.0.0', v2);
    release2Id = await pushRelease(h, release2);

    d1 = await makeDelta(dir, v1, v2);
    d1Other = await makeDelta(dir, v1, v2, { maxOpTargetBytes: 2 * BLOCK_BYTES });
    dx = await makeDelta(dir, v090, v2);
    dWrongTarget = await makeDelta(dir, v1, elsewhere);
    dWrongSize = await makeDelta(dir, v1, { path: longer, rootHash: v2.rootHash });
    expect(d1Other.digest).not.toBe(d1.digest);
    for (const d of [d1, d1Other, dx, dWrongTarget, dWrongSize]) await put(d.bytes);

    viewerKey = await apiKey('viewer');
    operatorKey = await apiKey('operator');

    const token = await createProvisioningToken(h, keys.product);
    dev100 = await registerDevice(h, keys.product, token);
    dev090 = await registerDevice(h, keys.product, token);
    dev080 = await registerDevice(h, keys.product, token);
    await startRollout(h, release2Id);

    // Another product with its own release and rollout: its devices may fetch its blobs only.
    const otherKeys = await makeProduct('other-vm');
    await createProduct(h, otherKeys);
    const otherRelease = await makeRelease(otherKeys, '5.0.0');
    await startRollout(h, await pushRelease(h, otherRelease));
    otherArtifactHex = otherRelease.artifactDigest.slice(7);
    otherDevice = await registerDevice(
      h,
      otherKeys.product,
      await createProvisioningToken(h, otherKeys.product),
    );
  }, 120_000);

  afterAll(async () => {
    await tdb?.dispose();
    await tblobs?.dispose();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('refuses each bad registration with its own code and changes nothing', async () => {
    const cases: [string, Record<string, unknown>, number, string, RegExp][] = [
      [
        'blob never uploaded',
        { ...registration(d1, '1.0.0', v1.rootHash), digest: `sha256:${sha256(randomBytes(9))}` },
        422,
        'ERR_BLOB_NOT_FOUND',
        /not uploaded; PUT \/v1\/admin\/blobs\/sha256\//,
      ],
      [
        'blob of another size',
        { ...registration(d1, '1.0.0', v1.rootHash), sizeBytes: d1.sizeBytes + 1 },
        422,
        'ERR_DELTA_INVALID',
        new RegExp(`is ${d1.sizeBytes} bytes in the store, the registration says ${d1.sizeBytes + 1}`),
      ],
      [
        'header naming another target',
        registration(dWrongTarget, '1.0.0', v1.rootHash),
        422,
        'ERR_DELTA_INVALID',
        new RegExp(
          `names target root hash "${elsewhere.rootHash}", the release's rootfs has "${v2.rootHash}"`,
        ),
      ],
      [
        'header target size differs from the release image',
        registration(dWrongSize, '1.0.0', v1.rootHash),
        422,
        'ERR_DELTA_INVALID',
        new RegExp(
          `produces ${(IMAGE_BLOCKS + 1) * BLOCK_BYTES} bytes, the release's rootfs is ${IMAGE_BLOCKS * BLOCK_BYTES}`,
        ),
      ],
      [
        'header naming another source than sourceRootHash',
        registration(d1, '0.9.0', v090.rootHash),
        422,
        'ERR_DELTA_INVALID',
        new RegExp(`names source root hash "${v1.rootHash}", not sourceRootHash "${v090.rootHash}"`),
      ],
      [
        'a blob that is not a delta',
        {
          ...registration(d1, '1.0.0', v1.rootHash),
          digest: release2.artifactDigest,
          sizeBytes: v2.bytes.length,
        },
        422,
        'ERR_DELTA_INVALID',
        /is not a valid delta: not an abota delta: expected magic "ABOTADLT"/,
      ],
      [
        'source version released here with another root hash',
        registration(dx, '1.0.0', v090.rootHash),
        409,
        'ERR_DELTA_SOURCE_MISMATCH',
        new RegExp(`eflow-vm 1.0.0 rootfs has root hash "${v1.rootHash}", not "${v090.rootHash}"`),
      ],
      [
        'image not in the release',
        { ...registration(d1, '1.0.0', v1.rootHash), image: 'boot' },
        422,
        'ERR_DELTA_INVALID',
        /eflow-vm 2\.0\.0 has no boot image \(it has rootfs\)/,
      ],
      [
        'source version equal to the release',
        registration(d1, '2.0.0', v1.rootHash),
        422,
        'ERR_DELTA_INVALID',
        /sourceVersion is the release's own version/,
      ],
      [
        'an image name outside the contract',
        { ...registration(d1, '1.0.0', v1.rootHash), image: 'efi' },
        400,
        'ERR_VALIDATION',
        /image/,
      ],
      [
        'an upper-case root hash',
        registration(d1, '1.0.0', v1.rootHash.toUpperCase()),
        400,
        'ERR_VALIDATION',
        /sourceRootHash/,
      ],
    ];
    for (const [what, body, status, code, message] of cases) {
      const res = await register(body);
      const err = (await res.json()) as ErrorBody;
      expect({ what, status: res.status, code: err.error.code }).toEqual({ what, status, code });
      expect(err.error.message, what).toMatch(message);
    }
    for (const key of [viewerKey, operatorKey]) {
      const res = await register(registration(d1, '1.0.0', v1.rootHash), key);
      expect(res.status).toBe(403);
      expect(((await res.json()) as ErrorBody).error.code).toBe('ERR_FORBIDDEN');
    }
    const missing = await register(registration(d1, '1.0.0', v1.rootHash), h.adminKey, randomUUID());
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as ErrorBody).error.code).toBe('ERR_NOT_FOUND');

    expect(await list()).toEqual([]);
    expect(await deltaAudits()).toEqual([]);
  });

  it('registers real deltas with the identities read from their headers, idempotently', async () => {
    const created = await register(registration(d1, '1.0.0', v1.rootHash));
    expect(created.status).toBe(201);
    const d1View = (await created.json()) as DeltaView;
    expect(d1View).toMatchObject({
      releaseId: release2Id,
      image: 'rootfs',
      sourceVersion: '1.0.0',
      sourceRootHash: v1.rootHash,
      sourceSizeBytes: v1.bytes.length,
      targetRootHash: v2.rootHash,
      digest: d1.digest,
      sizeBytes: d1.sizeBytes,
    });
    registered.set('d1', d1View);

    // A source version the server has no release of: the header is all there is to check.
    const fromUnknown = await register(registration(dx, '0.9.0', v090.rootHash));
    expect(fromUnknown.status).toBe(201);
    registered.set('dx', (await fromUnknown.json()) as DeltaView);

    const again = await register(registration(d1, '1.0.0', v1.rootHash));
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual(d1View);

    const replaced = await register(registration(d1Other, '1.0.0', v1.rootHash));
    expect(replaced.status).toBe(409);
    const conflict = (await replaced.json()) as ErrorBody;
    expect(conflict.error.code).toBe('ERR_CONFLICT');
    expect(conflict.error.message).toContain(`already has delta ${d1View.id}`);

    const viewerList = await list(viewerKey);
    expect(viewerList.map((d) => d.digest).sort()).toEqual([d1.digest, dx.digest].sort());
    expect((await deltaAudits()).map((a) => a.action)).toEqual([
      'release.delta.register',
      'release.delta.register',
    ]);

    const openapi = (await (await h.request('/openapi.json')).json()) as {
      paths: Record<string, Record<string, unknown>>;
      components: { schemas: Record<string, unknown> };
    };
    expect(Object.keys(openapi.paths['/v1/admin/releases/{id}/deltas'] ?? {}).sort()).toEqual([
      'get',
      'post',
    ]);
    expect(openapi.paths['/v1/admin/releases/{id}/deltas/{deltaId}']).toHaveProperty('delete');
    expect(openapi.components.schemas).toHaveProperty('DeltaRegister');
    expect(openapi.components.schemas).toHaveProperty('DeltaOffer');
  });

  it('offers with a release only the deltas from the version the device reported', async () => {
    const metricBefore = await offersWithDelta();
    const hex = (d: Delta) => d.digest.slice(7);

    const from100 = await poll(h, dev100, '1.0.0');
    expect(from100.status).toBe('update');
    expect(from100.deltas).toEqual([
      {
        image: 'rootfs',
        digest: d1.digest,
        sizeBytes: d1.sizeBytes,
        url: `/v1/device/blobs/sha256/${hex(d1)}`,
        sourceVersion: '1.0.0',
        sourceRootHash: v1.rootHash,
      },
    ]);
    expect(from100.artifacts?.[release2.artifactDigest]).toBe(
      `/v1/device/blobs/sha256/${release2.artifactDigest.slice(7)}`,
    );

    const from090 = await poll(hPublic, dev090, '0.9.0');
    expect(from090.deltas).toEqual([
      {
        image: 'rootfs',
        digest: dx.digest,
        sizeBytes: dx.sizeBytes,
        url: `https://updates.example/v1/device/blobs/sha256/${hex(dx)}`,
        sourceVersion: '0.9.0',
        sourceRootHash: v090.rootHash,
      },
    ]);

    const from080 = await poll(h, dev080, '0.8.0');
    expect(from080.status).toBe('update');
    expect(from080).not.toHaveProperty('deltas');

    // Each harness has its own metrics: h made one offer with a delta, one without.
    expect(await offersWithDelta()).toBe(metricBefore + 1);
  });

  it('lets devices offered the release fetch a delta blob, not devices of another product', async () => {
    const path = `/v1/device/blobs/sha256/${d1.digest.slice(7)}`;
    const streamed = await hStream.request(path, { token: await dev100.token() });
    expect(streamed.status).toBe(200);
    expect(new Uint8Array(await streamed.arrayBuffer())).toEqual(d1.bytes);
    // Resuming mid-payload (FORMAT.md "Resuming") is a Range request like any blob.
    const tail = await hStream.request(path, {
      token: await dev100.token(),
      headers: { range: 'bytes=256-' },
    });
    expect(tail.status).toBe(206);
    expect(new Uint8Array(await tail.arrayBuffer())).toEqual(d1.bytes.subarray(256));

    const viaRedirect = await h.request(path, { token: await dev100.token() });
    if (blobBackend === 's3') {
      expect(viaRedirect.status).toBe(302);
      const presigned = await fetch(viaRedirect.headers.get('location') ?? '');
      expect(new Uint8Array(await presigned.arrayBuffer())).toEqual(d1.bytes);
    } else {
      expect(viaRedirect.status).toBe(200);
      expect(new Uint8Array(await viaRedirect.arrayBuffer())).toEqual(d1.bytes);
    }

    // The other product's device is authorised for its own release's blobs, not this delta.
    const own = await hStream.request(`/v1/device/blobs/sha256/${otherArtifactHex}`, {
      token: await otherDevice.token(),
    });
    expect(own.status).toBe(200);
    const refused = await h.request(path, { token: await otherDevice.token() });
    expect(refused.status).toBe(404);
    expect(((await refused.json()) as ErrorBody).error.code).toBe('ERR_NOT_FOUND');
  });

  it('keeps referenced blobs: blob DELETE refuses release and delta blobs, works once the delta is removed', async () => {
    for (const digest of [d1.digest, release2.artifactDigest]) {
      const res = await h.request(`/v1/admin/blobs/sha256/${digest.slice(7)}`, {
        method: 'DELETE',
        key: h.adminKey,
      });
      expect(res.status).toBe(409);
      expect(((await res.json()) as ErrorBody).error.code).toBe('ERR_BLOB_IN_USE');
    }

    const dxView = registered.get('dx');
    if (dxView === undefined) throw new Error('dx was not registered');
    const byViewer = await h.request(`/v1/admin/releases/${release2Id}/deltas/${dxView.id}`, {
      method: 'DELETE',
      key: viewerKey,
    });
    expect(byViewer.status).toBe(403);
    const wrongRelease = await h.request(`/v1/admin/releases/${randomUUID()}/deltas/${dxView.id}`, {
      method: 'DELETE',
      key: h.adminKey,
    });
    expect(wrongRelease.status).toBe(404);
    const removed = await h.request(`/v1/admin/releases/${release2Id}/deltas/${dxView.id}`, {
      method: 'DELETE',
      key: h.adminKey,
    });
    expect(removed.status).toBe(200);
    expect(await removed.json()).toEqual(dxView);
    expect((await list()).map((d) => d.id)).toEqual([registered.get('d1')?.id]);

    expect(await poll(h, dev090, '0.9.0')).not.toHaveProperty('deltas');
    const fetchRemoved = await hStream.request(`/v1/device/blobs/sha256/${dx.digest.slice(7)}`, {
      token: await dev090.token(),
    });
    expect(fetchRemoved.status).toBe(404);

    const hexDx = dx.digest.slice(7);
    const deleted = await h.request(`/v1/admin/blobs/sha256/${hexDx}`, { method: 'DELETE', key: h.adminKey });
    expect(deleted.status).toBe(200);
    expect(await deleted.json()).toEqual({ digest: dx.digest, sizeBytes: dx.sizeBytes });
    expect(await tblobs.blobs.head(`sha256/${hexDx}`)).toBeUndefined();
    const twice = await h.request(`/v1/admin/blobs/sha256/${hexDx}`, { method: 'DELETE', key: h.adminKey });
    expect(twice.status).toBe(404);
  });

  it('offers no delta of a yanked release, and deleting a release removes its deltas', async () => {
    // Warm the rollout cache with the offer, so the poll after the yank shows the invalidation.
    expect(await poll(h, dev100, '1.0.0')).toMatchObject({ status: 'update' });
    const yank = await h.request(`/v1/admin/releases/${release2Id}/yank`, {
      method: 'POST',
      key: h.adminKey,
      json: { reason: 'bad kernel' },
    });
    expect(yank.status).toBe(200);
    // Yanking invalidates the rollout cache: the release is not offered from the next poll on.
    const afterYank = await poll(h, dev100, '1.0.0');
    expect(afterYank).not.toHaveProperty('deltas');
    expect(afterYank).toMatchObject({ status: 'no-update' });
    const fetchYanked = await hStream.request(`/v1/device/blobs/sha256/${d1.digest.slice(7)}`, {
      token: await dev100.token(),
    });
    expect(fetchYanked.status).toBe(404);

    // No API deletes releases today; the schema must still not leave a delta behind one.
    const db = tdb.database.db;
    await db.delete(schema.rollouts).where(eq(schema.rollouts.releaseId, release2Id));
    await db.delete(schema.releases).where(eq(schema.releases.id, release2Id));
    const left = await db
      .select()
      .from(schema.releaseDeltas)
      .where(and(eq(schema.releaseDeltas.releaseId, release2Id)));
    expect(left).toEqual([]);
    const freed = await h.request(`/v1/admin/blobs/sha256/${d1.digest.slice(7)}`, {
      method: 'DELETE',
      key: h.adminKey,
    });
    expect(freed.status).toBe(200);
  });
});
