// The root chain a poll answer carries (issue #16 defect 2): every root a product has had is
// kept, and an offer to a device that reports its root version carries the later roots, oldest
// first and bounded, so an online device can follow a key rotation (TUF §5.3).
import { createTrustRoot, signTrustRoot, type TrustRoot } from '@abota/manifest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as harness from './harness.js';

/** The version a served root text claims. */
const versionOf = (text: string): number =>
  (
    JSON.parse(Buffer.from((JSON.parse(text) as { payload: string }).payload, 'base64url').toString()) as {
      version: number;
    }
  ).version;

describe.each(harness.DB_BACKENDS)('root chain in poll answers on %s', (backend) => {
  let tdb: harness.TestDatabase;
  let tblobs: harness.TestBlobStore;
  let h: harness.Harness;
  let keys: harness.ProductKeys;
  let device: harness.TestDevice;
  const ROOTS = 19;

  beforeAll(async () => {
    tdb = await harness.openTestDatabase(backend);
    tblobs = await harness.openTestBlobStore('fs');
    h = await harness.createHarness(tdb.database, tblobs.blobs);
    keys = await harness.makeProduct('rotating');
    await harness.createProduct(h, keys);
    // Rotate v1 → v19 (same keys: each step signed by the previous root and itself).
    let root: TrustRoot = keys.root;
    for (let version = 2; version <= ROOTS; version++) {
      const next = await createTrustRoot({
        version,
        expires: new Date(Date.now() + 365 * 86_400_000),
        rootKeys: [keys.rootKey],
        rootThreshold: 1,
        releaseKeys: [keys.releaseKey],
        releaseThreshold: 1,
      });
      const res = await h.request(`/v1/admin/products/${keys.product}/trust-root`, {
        method: 'PUT',
        key: h.adminKey,
        json: { trustRoot: await signTrustRoot(next, [keys.rootKey], root) },
      });
      expect(res.status).toBe(200);
      root = next;
    }
    const releaseId = await harness.pushRelease(h, await harness.makeRelease({ ...keys, root }, '2.0.0'));
    device = await harness.registerDevice(
      h,
      keys.product,
      await harness.createProvisioningToken(h, keys.product),
    );
    await harness.startRollout(h, releaseId);
  }, 60_000);
  afterAll(async () => {
    await tdb?.dispose();
    await tblobs?.dispose();
  });

  const poll = async (extra: Record<string, unknown>) => {
    const res = await h.request('/v1/device/poll', {
      method: 'POST',
      token: await device.token(),
      json: { version: '1.0.0', bootedSlot: 'A', ...extra },
    });
    expect(res.status).toBe(200);
    return (await res.json()) as { status: string; roots?: string[] };
  };

  it('serves the roots after the device root, oldest first, at most 16 per answer', async () => {
    const first = await poll({ trustRootVersion: 1 });
    expect(first.status).toBe('update');
    expect(first.roots?.map(versionOf)).toEqual(Array.from({ length: 16 }, (_, i) => i + 2));
    const rest = await poll({ trustRootVersion: 17 });
    expect(rest.roots?.map(versionOf)).toEqual([18, 19]);
  });

  it('serves no roots to a device on the current root or one that does not say its root', async () => {
    expect(await poll({ trustRootVersion: ROOTS })).not.toHaveProperty('roots');
    expect(await poll({})).not.toHaveProperty('roots');
  });

  it('refuses a trustRootVersion that is not a positive integer (400)', async () => {
    const res = await h.request('/v1/device/poll', {
      method: 'POST',
      token: await device.token(),
      json: { version: '1.0.0', bootedSlot: 'A', trustRootVersion: 0 },
    });
    expect(res.status).toBe(400);
  });
});
