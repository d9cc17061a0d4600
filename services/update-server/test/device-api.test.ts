// The device API end to end in-process, on PGlite and on the real PostgreSQL: registration with
// provisioning tokens, JWT authentication (expiry, replay, signature, audience, identity),
// poll offers from rollouts and idempotent reports.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pruneUsedJwtIds, schema } from '../src/index.js';
import {
  createHarness,
  createProduct,
  createProvisioningToken,
  DB_BACKENDS,
  deviceKeyPair,
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
} from './harness.js';

interface PollOffer {
  status: 'update';
  rolloutId: string;
  release: { version: string; manifestJws: string };
  artifacts: Record<string, string>;
  pollAfterSeconds: number;
  deltas?: unknown;
  allowDowngrade: boolean;
}

describe.each(DB_BACKENDS)('device API on %s', (backend) => {
  let tdb: TestDatabase;
  let tblobs: TestBlobStore;
  let h: Harness;
  let keys: ProductKeys;
  let token: string;

  beforeAll(async () => {
    tdb = await openTestDatabase(backend);
    tblobs = await openTestBlobStore('fs');
    h = await createHarness(tdb.database, tblobs.blobs, {
      pollIntervalSeconds: 600,
      pollJitterFraction: 0.2,
    });
    keys = await makeProduct('eflow-vm');
    await createProduct(h, keys);
    token = await createProvisioningToken(h, keys.product);
  });
  afterAll(async () => {
    await tdb?.dispose();
    await tblobs?.dispose();
  });

  const poll = async (token: string, body: Record<string, unknown> = { version: '1.0.0', bootedSlot: 'A' }) =>
    h.request('/v1/device/poll', { method: 'POST', token, json: body });

  it('registers a device with a provisioning token and answers no-update with a jittered interval', async () => {
    const device = await registerDevice(h, keys.product, token);
    const res = await poll(await device.token());
    expect(res.status).toBe(200);
    const body = (await res.json()) as { status: string; pollAfterSeconds: number };
    expect(body.status).toBe('no-update');
    expect(body.pollAfterSeconds).toBeGreaterThanOrEqual(480);
    expect(body.pollAfterSeconds).toBeLessThanOrEqual(720);
    const [row] = await tdb.database.db
      .select()
      .from(schema.devices)
      .where((await import('drizzle-orm')).eq(schema.devices.id, device.id));
    expect(row?.currentVersion).toBe('1.0.0');
    expect(row?.bootedSlot).toBe('A');
  });

  it('refuses registration with an unknown, wrong-product, revoked, expired or used-up token, and a private JWK', async () => {
    const { publicJwk } = await deviceKeyPair();
    const register = (t: string, product = keys.product, jwk: unknown = publicJwk) =>
      h.request('/v1/device/register', {
        method: 'POST',
        json: { token: t, publicKeyJwk: jwk, product, hardware: 'hyperv-x64' },
      });
    const before = (await tdb.database.db.select().from(schema.devices)).length;

    const unknown = await register('abp_not-a-real-token');
    expect(unknown.status).toBe(403);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe(
      'ERR_PROVISIONING_TOKEN_INVALID',
    );

    const other = await makeProduct('other-product');
    await createProduct(h, other);
    const wrongProduct = await register(token, 'other-product');
    expect(wrongProduct.status).toBe(403);
    expect(((await wrongProduct.json()) as { error: { message: string } }).error.message).toMatch(
      /another product/,
    );

    const once = await createProvisioningToken(h, keys.product, { maxUses: 1 });
    expect((await register(once)).status).toBe(201);
    const usedUp = await register(once);
    expect(usedUp.status).toBe(403);
    expect(((await usedUp.json()) as { error: { message: string } }).error.message).toMatch(/used 1 of 1/);

    const revocable = await createProvisioningToken(h, keys.product);
    const list = (await (await h.request('/v1/admin/provisioning-tokens', { key: h.adminKey })).json()) as {
      items: { id: string; uses: number }[];
    };
    const ids = list.items.map((t) => t.id);
    // The newest token is the revocable one: revoke it through the API.
    const revoke = await h.request(`/v1/admin/provisioning-tokens/${ids.at(-1)}/revoke`, {
      method: 'POST',
      key: h.adminKey,
    });
    expect(revoke.status).toBe(200);
    expect(
      ((await (await register(revocable)).json()) as { error: { message: string } }).error.message,
    ).toMatch(/revoked/);

    const expiring = await createProvisioningToken(h, keys.product, { expiresInSeconds: 60 });
    h.clock.advanceSeconds(61);
    expect(
      ((await (await register(expiring)).json()) as { error: { message: string } }).error.message,
    ).toMatch(/expired/);
    h.clock.advanceSeconds(-61);

    const withPrivate = await register(token, keys.product, { ...publicJwk, d: 'A'.repeat(43) });
    expect(withPrivate.status).toBe(400);
    expect(((await withPrivate.json()) as { error: { message: string } }).error.message).toMatch(
      /private key/,
    );

    // Only the one successful registration above added a row.
    expect((await tdb.database.db.select().from(schema.devices)).length).toBe(before + 1);
  });

  it('refuses expired, replayed, wrongly signed, wrong-audience, over-long and other-device tokens', async () => {
    const a = await registerDevice(h, keys.product, token);
    const b = await registerDevice(h, keys.product, token);
    const now = Math.floor(h.clock.now().getTime() / 1000);
    const expectRefused = async (jwt: string, code: string, message?: RegExp) => {
      const res = await poll(jwt);
      expect(res.status).toBe(401);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe(code);
      if (message !== undefined) expect(body.error.message).toMatch(message);
    };
    await expectRefused(
      await a.token({ iat: now - 400, exp: now - 100 }),
      'ERR_DEVICE_TOKEN_INVALID',
      /expired/,
    );
    await expectRefused(await a.token({ aud: 'someone-else' }), 'ERR_DEVICE_TOKEN_INVALID', /aud/);
    await expectRefused(await a.token({ key: b.privateKey }), 'ERR_DEVICE_TOKEN_INVALID', /signature/);
    await expectRefused(await a.token({ iat: now, exp: now + 3600 }), 'ERR_DEVICE_TOKEN_INVALID', /lifetime/);
    // Device A claiming to be B: signed with A's key, so B's key does not verify it.
    await expectRefused(await a.token({ sub: b.id, iss: b.id }), 'ERR_DEVICE_TOKEN_INVALID', /signature/);
    await expectRefused(await a.token({ iss: b.id }), 'ERR_DEVICE_TOKEN_INVALID', /iss/);
    await expectRefused(await a.token({ sub: randomUUID(), iss: randomUUID() }), 'ERR_DEVICE_UNKNOWN');
    await expectRefused('not.a.jwt', 'ERR_DEVICE_TOKEN_INVALID');
    const once = await a.token();
    expect((await poll(once)).status).toBe(200);
    await expectRefused(once, 'ERR_DEVICE_TOKEN_REPLAYED');
    const noAuth = await h.request('/v1/device/poll', {
      method: 'POST',
      json: { version: '1.0.0', bootedSlot: 'A' },
    });
    expect(noAuth.status).toBe(401);
  });

  it('offers the matching rollout with the signed manifest verbatim, not the running version, and records the offer', async () => {
    const keysB = await makeProduct('offer-product');
    await createProduct(h, keysB);
    const t = await createProvisioningToken(h, keysB.product);
    const release = await makeRelease(keysB, '2.0.0');
    const releaseId = await pushRelease(h, release);
    const tagged = await registerDevice(h, keysB.product, t);
    const untagged = await registerDevice(h, keysB.product, t);
    const otherHw = await registerDevice(h, keysB.product, t, 'arm64-board');
    await h.request(`/v1/admin/devices/${tagged.id}/tags`, {
      method: 'PUT',
      key: h.adminKey,
      json: { tags: ['canary'] },
    });
    const rolloutId = await startRollout(h, releaseId, { tags: ['canary'] });

    const offer = (await (await poll(await tagged.token())).json()) as PollOffer;
    expect(offer.status).toBe('update');
    expect(offer.rolloutId).toBe(rolloutId);
    expect(offer.release).toEqual({ version: '2.0.0', manifestJws: release.manifestJws });
    // No delta registered: the field is absent (not []); a normal rollout permits no downgrade.
    expect(offer).not.toHaveProperty('deltas');
    expect(offer.allowDowngrade).toBe(false);
    expect(Object.keys(offer.artifacts).sort()).toEqual(
      [release.artifactDigest, release.hashTreeDigest].sort(),
    );
    expect(offer.artifacts[release.artifactDigest]).toBe(
      `/v1/device/blobs/sha256/${release.artifactDigest.slice(7)}`,
    );

    expect(((await (await poll(await untagged.token())).json()) as { status: string }).status).toBe(
      'no-update',
    );
    expect(((await (await poll(await otherHw.token())).json()) as { status: string }).status).toBe(
      'no-update',
    );
    // Already running 2.0.0: nothing to offer.
    expect(
      (
        (await (await poll(await tagged.token(), { version: '2.0.0', bootedSlot: 'B' })).json()) as {
          status: string;
        }
      ).status,
    ).toBe('no-update');
    // A newer running version is not downgraded unless the rollout allows it.
    expect(
      (
        (await (await poll(await tagged.token(), { version: '3.0.0', bootedSlot: 'B' })).json()) as {
          status: string;
        }
      ).status,
    ).toBe('no-update');

    const detail = (await (
      await h.request(`/v1/admin/rollouts/${rolloutId}`, { key: h.adminKey })
    ).json()) as { deviceCounts: Record<string, number> };
    expect(detail.deviceCounts).toEqual({ offered: 1 });

    // Paused rollouts offer nothing; resumed ones offer again; aborted is final.
    expect(
      (await h.request(`/v1/admin/rollouts/${rolloutId}/pause`, { method: 'POST', key: h.adminKey })).status,
    ).toBe(200);
    expect(((await (await poll(await tagged.token())).json()) as { status: string }).status).toBe(
      'no-update',
    );
    expect(
      (await h.request(`/v1/admin/rollouts/${rolloutId}/resume`, { method: 'POST', key: h.adminKey })).status,
    ).toBe(200);
    expect(((await (await poll(await tagged.token())).json()) as { status: string }).status).toBe('update');
    expect(
      (await h.request(`/v1/admin/rollouts/${rolloutId}/abort`, { method: 'POST', key: h.adminKey })).status,
    ).toBe(200);
    const again = await h.request(`/v1/admin/rollouts/${rolloutId}/resume`, {
      method: 'POST',
      key: h.adminKey,
    });
    expect(again.status).toBe(409);
    expect(((await again.json()) as { error: { code: string } }).error.code).toBe('ERR_ROLLOUT_STATE');
    expect(((await (await poll(await tagged.token())).json()) as { status: string }).status).toBe(
      'no-update',
    );
  });

  it('takes reports idempotently per (device, rollout, state) and refuses reports for rollouts never offered', async () => {
    const keysC = await makeProduct('report-product');
    await createProduct(h, keysC);
    const t = await createProvisioningToken(h, keysC.product);
    const releaseId = await pushRelease(h, await makeRelease(keysC, '1.1.0'));
    const rolloutId = await startRollout(h, releaseId);
    const a = await registerDevice(h, keysC.product, t);
    const b = await registerDevice(h, keysC.product, t);
    const offer = (await (await poll(await a.token())).json()) as PollOffer;
    expect(offer.rolloutId).toBe(rolloutId);

    const report = async (device: typeof a, body: Record<string, unknown>) =>
      h.request('/v1/device/report', { method: 'POST', token: await device.token(), json: body });
    const first = await report(a, { rolloutId, version: '1.1.0', state: 'downloading', progress: 10 });
    expect(first.status).toBe(202);
    expect(await first.json()).toEqual({ status: 'accepted', duplicate: false });
    const dup = await report(a, { rolloutId, version: '1.1.0', state: 'downloading', progress: 50 });
    expect(await dup.json()).toEqual({ status: 'accepted', duplicate: true });
    expect((await report(a, { rolloutId, version: '1.1.0', state: 'committed' })).status).toBe(202);

    // Device B was never offered this rollout: it cannot report into it.
    const foreign = await report(b, { rolloutId, version: '1.1.0', state: 'failed' });
    expect(foreign.status).toBe(404);
    const bad = await report(a, { rolloutId, version: '1.1.0', state: 'exploded' });
    expect(bad.status).toBe(400);
    // Device B cannot report as device A: a token naming A but signed by B's key is refused.
    const impersonation = await h.request('/v1/device/report', {
      method: 'POST',
      token: await b.token({ sub: a.id, iss: a.id }),
      json: { rolloutId, version: '1.1.0', state: 'failed' },
    });
    expect(impersonation.status).toBe(401);

    const metrics = await (await h.request('/metrics', { key: h.adminKey })).text();
    expect(metrics).toMatch(/abota_device_reports_total\{state="downloading"\} 1\n/);
    expect(metrics).toMatch(/abota_device_polls_total\{result="update"\} \d+/);
    expect(metrics).toMatch(/abota_offers_total\{product="report-product"\} 1\n/);

    const events = (await (await h.request(`/v1/admin/devices/${a.id}`, { key: h.adminKey })).json()) as {
      currentVersion: string;
      events: { state: string }[];
    };
    expect(events.events.map((e) => e.state).sort()).toEqual(['committed', 'downloading']);
    expect(events.currentVersion).toBe('1.1.0');
    const detail = (await (
      await h.request(`/v1/admin/rollouts/${rolloutId}`, { key: h.adminKey })
    ).json()) as { deviceCounts: Record<string, number> };
    expect(detail.deviceCounts).toEqual({ committed: 1 });
    // A committed device is not offered the same rollout again, even if it reports an old version.
    expect(
      (
        (await (await poll(await a.token(), { version: '1.0.0', bootedSlot: 'A' })).json()) as {
          status: string;
        }
      ).status,
    ).toBe('no-update');
  });

  it('updates the version and slot from the commit report, before any poll', async () => {
    const keysD = await makeProduct('slot-product');
    await createProduct(h, keysD);
    const t = await createProvisioningToken(h, keysD.product);
    const rolloutId = await startRollout(h, await pushRelease(h, await makeRelease(keysD, '2.0.0')));
    const d = await registerDevice(h, keysD.product, t);
    expect(((await (await poll(await d.token())).json()) as PollOffer).rolloutId).toBe(rolloutId);
    const shown = async () =>
      (await (await h.request(`/v1/admin/devices/${d.id}`, { key: h.adminKey })).json()) as {
        currentVersion: string;
        bootedSlot: string;
        installState: string;
      };
    expect(await shown()).toMatchObject({ currentVersion: '1.0.0', bootedSlot: 'A' });
    const report = async (body: Record<string, unknown>) =>
      h.request('/v1/device/report', { method: 'POST', token: await d.token(), json: body });
    expect((await report({ rolloutId, version: '2.0.0', state: 'rebooting' })).status).toBe(202);
    expect(await shown()).toMatchObject({ currentVersion: '1.0.0', bootedSlot: 'A' });
    expect((await report({ rolloutId, version: '2.0.0', state: 'committed', bootedSlot: 'B' })).status).toBe(
      202,
    );
    expect(await shown()).toMatchObject({
      currentVersion: '2.0.0',
      bootedSlot: 'B',
      installState: 'committed',
    });
    expect((await report({ rolloutId, version: '2.0.0', state: 'committed', bootedSlot: 'C' })).status).toBe(
      400,
    );
  });

  it('keeps offering a rollout to a device that reported device-error, and lets its retry move it on', async () => {
    const keysE = await makeProduct('device-error-product');
    await createProduct(h, keysE);
    const t = await createProvisioningToken(h, keysE.product);
    const rolloutId = await startRollout(h, await pushRelease(h, await makeRelease(keysE, '2.0.0')));
    const d = await registerDevice(h, keysE.product, t);
    const report = async (body: Record<string, unknown>) =>
      (await (
        await h.request('/v1/device/report', {
          method: 'POST',
          token: await d.token(),
          json: { rolloutId, version: '2.0.0', ...body },
        })
      ).json()) as { duplicate: boolean };
    const counts = async () =>
      (
        (await (await h.request(`/v1/admin/rollouts/${rolloutId}`, { key: h.adminKey })).json()) as {
          deviceCounts: Record<string, number>;
        }
      ).deviceCounts;
    const offered = async () => ((await (await poll(await d.token())).json()) as PollOffer).rolloutId;
    expect(await offered()).toBe(rolloutId);
    await report({ state: 'downloading', progress: 0 });
    const broken = { state: 'device-error', errorCode: 'ERR_BOOTCTL_STATE_MISSING' };
    expect(await report(broken)).toEqual({ status: 'accepted', duplicate: false });
    expect(await counts()).toEqual({ 'device-error': 1 });
    // Still broken: offered again; the same two reports again are duplicate events, yet they
    // move the device into its retry and back into device-error.
    expect(await offered()).toBe(rolloutId);
    expect(await report({ state: 'downloading', progress: 0 })).toMatchObject({ duplicate: true });
    expect(await counts()).toEqual({ downloading: 1 });
    // Another fault this time: the device's device-error event says so.
    const slotPath = { state: 'device-error', errorCode: 'ERR_INSTALL_SLOT_IO', message: 'no such file' };
    expect(await report(slotPath)).toMatchObject({ duplicate: true });
    expect(await counts()).toEqual({ 'device-error': 1 });
    const detail = (await (await h.request(`/v1/admin/devices/${d.id}`, { key: h.adminKey })).json()) as {
      events: { state: string; errorCode: string | null; message: string | null }[];
    };
    expect(detail.events.filter((e) => e.state === 'device-error')).toEqual([
      expect.objectContaining({ errorCode: 'ERR_INSTALL_SLOT_IO', message: 'no such file' }),
    ]);
    // Fixed: the retry's repeated `downloading` moves it out of device-error, then it commits.
    expect(await offered()).toBe(rolloutId);
    await report({ state: 'downloading', progress: 0 });
    expect(await counts()).toEqual({ downloading: 1 });
    expect(await report({ state: 'committed', bootedSlot: 'B' })).toEqual({
      status: 'accepted',
      duplicate: false,
    });
    expect(await counts()).toEqual({ committed: 1 });
    // An outcome is final: a late device-error does not reopen it, and nothing is offered again.
    expect(await report(broken)).toEqual({ status: 'accepted', duplicate: true });
    expect(await counts()).toEqual({ committed: 1 });
    expect(((await (await poll(await d.token())).json()) as { status: string }).status).toBe('no-update');
  });

  it('refuses a decommissioned device even when its key is cached', async () => {
    const d = await registerDevice(h, keys.product, token);
    // Poll first so this replica has the device key cached: decommissioning must still win.
    expect((await poll(await d.token())).status).toBe(200);
    expect(
      (await h.request(`/v1/admin/devices/${d.id}/decommission`, { method: 'POST', key: h.adminKey })).status,
    ).toBe(200);
    const res = await poll(await d.token());
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('ERR_DEVICE_DECOMMISSIONED');
  });

  it('forgets JWT ids only after their tokens expired', async () => {
    const d = await registerDevice(h, keys.product, token);
    await poll(await d.token());
    const count = async () => (await tdb.database.db.select().from(schema.usedJwtIds)).length;
    const before = await count();
    expect(await pruneUsedJwtIds(tdb.database.db, h.clock.now())).toBe(0);
    expect(await count()).toBe(before);
    expect(await pruneUsedJwtIds(tdb.database.db, new Date(h.clock.now().getTime() + 3600_000))).toBe(before);
    expect(await count()).toBe(0);
  });
});
