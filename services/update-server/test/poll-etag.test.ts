// Conditional polls (issue #16 "conditional polls"): every poll answer has a strong ETag derived
// from what decides it; a poll whose If-None-Match names the current answer gets 304 with no
// body, and still records the device's report exactly as a 200 poll does. A new rollout, a pause
// and a new trust root each change the answer, hence the ETag. On PGlite and PostgreSQL.
import { createTrustRoot, signTrustRoot } from '@abota/manifest';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../src/index.js';
import { ifNoneMatchHits } from '../src/routes/poll-etag.js';
import * as harness from './harness.js';

describe('ifNoneMatchHits', () => {
  it('compares weakly, accepts lists and *, and matches nothing when absent', () => {
    expect(ifNoneMatchHits('"nu-a"', '"nu-a"')).toBe(true);
    expect(ifNoneMatchHits('W/"nu-a"', '"nu-a"')).toBe(true);
    expect(ifNoneMatchHits('"x", "nu-a"', '"nu-a"')).toBe(true);
    expect(ifNoneMatchHits('*', '"nu-a"')).toBe(true);
    expect(ifNoneMatchHits('"nu-b"', '"nu-a"')).toBe(false);
    expect(ifNoneMatchHits('nu-a', '"nu-a"')).toBe(false);
    expect(ifNoneMatchHits(undefined, '"nu-a"')).toBe(false);
  });
});

describe.each(harness.DB_BACKENDS)('conditional polls on %s', (backend) => {
  let tdb: harness.TestDatabase;
  let tblobs: harness.TestBlobStore;
  let h: harness.Harness;
  let keys: harness.ProductKeys;
  let device: harness.TestDevice;
  let twin: harness.TestDevice;

  beforeAll(async () => {
    tdb = await harness.openTestDatabase(backend);
    tblobs = await harness.openTestBlobStore('fs');
    h = await harness.createHarness(tdb.database, tblobs.blobs);
    keys = await harness.makeProduct('etag-vm');
    await harness.createProduct(h, keys);
    const token = await harness.createProvisioningToken(h, keys.product);
    device = await harness.registerDevice(h, keys.product, token);
    twin = await harness.registerDevice(h, keys.product, token);
  }, 60_000);
  afterAll(async () => {
    await tdb?.dispose();
    await tblobs?.dispose();
  });

  const poll = async (d: harness.TestDevice, body: Record<string, unknown>, etag?: string) =>
    h.request('/v1/device/poll', {
      method: 'POST',
      token: await d.token(),
      json: { version: '1.0.0', bootedSlot: 'A', trustRootVersion: 1, ...body },
      ...(etag !== undefined ? { headers: { 'if-none-match': etag } } : {}),
    });
  const row = async (d: harness.TestDevice) => {
    const [r] = await tdb.database.db.select().from(schema.devices).where(eq(schema.devices.id, d.id));
    if (r === undefined) throw new Error('no device row');
    const { id: _id, publicKeyJwk: _k, ...rest } = r;
    return rest;
  };
  const etagOf = (res: Response): string => {
    const e = res.headers.get('etag');
    expect(e).toMatch(/^"[a-z]{2}-[A-Za-z0-9_-]+"$/);
    return e as string;
  };
  const admin = (path: string, json: unknown = {}, method = 'POST') =>
    h.request(path, { method, key: h.adminKey, json });

  it('answers 304 to an unchanged answer, records the report like a 200, and changes the ETag on every change', async () => {
    // No rollout: no-update, and the same answer again is a 304 with no body.
    const first = await poll(device, {});
    expect(first.status).toBe(200);
    expect(((await first.json()) as { status: string }).status).toBe('no-update');
    const noUpdate = etagOf(first);
    const again = await poll(device, {}, noUpdate);
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');
    expect(etagOf(again)).toBe(noUpdate);
    expect(Number(again.headers.get('abota-poll-after-seconds'))).toBeGreaterThan(0);
    // A tag that is not the answer's gets the full answer.
    expect((await poll(device, {}, '"nu-other"')).status).toBe(200);

    // The 304 poll records version, slot, install state and last-seen exactly as a 200 poll
    // (the twin polls the same report without If-None-Match at the same time).
    h.clock.advanceSeconds(90);
    const report = { version: '1.0.1', bootedSlot: 'B', installState: 'idle' };
    expect((await poll(device, report, noUpdate)).status).toBe(304);
    expect((await poll(twin, report)).status).toBe(200);
    const recorded = await row(device);
    expect(recorded).toMatchObject({ currentVersion: '1.0.1', bootedSlot: 'B', lastSeenAt: h.clock.now() });
    expect(recorded).toEqual(await row(twin));

    // A new rollout: 200 with the offer and a new ETag; the same offer again is a 304.
    const releaseId = await harness.pushRelease(h, await harness.makeRelease(keys, '2.0.0'));
    const rolloutId = await harness.startRollout(h, releaseId);
    const offered = await poll(device, {}, noUpdate);
    expect(offered.status).toBe(200);
    expect(((await offered.json()) as { status: string }).status).toBe('update');
    const offer = etagOf(offered);
    expect(offer).not.toBe(noUpdate);
    expect((await poll(device, {}, offer)).status).toBe(304);

    // Paused: no-update again (200, the no-update ETag); resumed: the offer again.
    expect((await admin(`/v1/admin/rollouts/${rolloutId}/pause`)).status).toBe(200);
    const paused = await poll(device, {}, offer);
    expect(paused.status).toBe(200);
    expect(((await paused.json()) as { status: string }).status).toBe('no-update');
    expect(etagOf(paused)).toBe(noUpdate);
    expect((await admin(`/v1/admin/rollouts/${rolloutId}/resume`)).status).toBe(200);
    const resumed = await poll(device, {}, noUpdate);
    expect(resumed.status).toBe(200);
    expect(etagOf(resumed)).toBe(offer);

    // A new trust root: the offer now carries it, so a 200 with a new ETag.
    const v2 = await createTrustRoot({
      version: 2,
      expires: new Date(Date.now() + 365 * 86_400_000),
      rootKeys: [keys.rootKey],
      rootThreshold: 1,
      releaseKeys: [keys.releaseKey],
      releaseThreshold: 1,
    });
    const put = await admin(
      `/v1/admin/products/${keys.product}/trust-root`,
      { trustRoot: await signTrustRoot(v2, [keys.rootKey], keys.root) },
      'PUT',
    );
    expect(put.status).toBe(200);
    const rotated = await poll(device, {}, offer);
    expect(rotated.status).toBe(200);
    expect(((await rotated.json()) as { roots?: string[] }).roots).toHaveLength(1);
    const withRoot = etagOf(rotated);
    expect(withRoot).not.toBe(offer);
    expect((await poll(device, {}, withRoot)).status).toBe(304);
    // A device already on root 2 gets the offer without roots: the earlier ETag.
    expect((await poll(device, { trustRootVersion: 2 }, offer)).status).toBe(304);
  });
});
