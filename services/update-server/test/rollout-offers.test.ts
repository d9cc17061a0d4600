// The offer path of a poll against a real server (PGlite): concurrency caps, device-local
// maintenance windows (the device's timezone attribute read by the poll statement), groups and
// running-version constraints, and precedence between two rollouts for the same device.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createHarness,
  createProduct,
  createProvisioningToken,
  deviceKeyPair,
  deviceTokenSigner,
  type Harness,
  makeProduct,
  makeRelease,
  openTestBlobStore,
  openTestDatabase,
  type ProductKeys,
  pushRelease,
  type TestBlobStore,
  type TestDatabase,
  type TestDevice,
} from './harness.js';

let database: TestDatabase;
let blobStore: TestBlobStore;
let h: Harness;

beforeAll(async () => {
  database = await openTestDatabase('pglite');
  blobStore = await openTestBlobStore('fs');
  h = await createHarness(database.database, blobStore.blobs);
});
afterAll(async () => {
  await database?.dispose();
  await blobStore?.dispose();
});

async function setup(product: string): Promise<{ keys: ProductKeys; token: string; releaseId: string }> {
  const keys = await makeProduct(product);
  await createProduct(h, keys);
  const token = await createProvisioningToken(h, product);
  const releaseId = await pushRelease(h, await makeRelease(keys, '2.0.0'));
  return { keys, token, releaseId };
}

async function register(
  product: string,
  token: string,
  attributes: Record<string, string> = {},
): Promise<TestDevice> {
  const { privateKey, publicJwk } = await deviceKeyPair();
  const res = await h.request('/v1/device/register', {
    method: 'POST',
    json: { token, publicKeyJwk: publicJwk, product, hardware: 'hyperv-x64', attributes },
  });
  if (res.status !== 201) throw new Error(`register: ${res.status} ${await res.text()}`);
  const { deviceId } = (await res.json()) as { deviceId: string };
  return { id: deviceId, privateKey, token: deviceTokenSigner(deviceId, privateKey, h.clock) };
}

async function poll(d: TestDevice, version = '1.0.0'): Promise<{ status: string; rolloutId?: string }> {
  const res = await h.request('/v1/device/poll', {
    method: 'POST',
    token: await d.token(),
    json: { version, bootedSlot: 'A' },
  });
  return (await res.json()) as { status: string; rolloutId?: string };
}

async function rollout(json: Record<string, unknown>): Promise<string> {
  const res = await h.request('/v1/admin/rollouts', { method: 'POST', key: h.adminKey, json });
  if (res.status !== 201) throw new Error(`rollout: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { id: string }).id;
}

describe('offers on poll', () => {
  it('caps devices updating at once with maxConcurrent and lets more in as they finish', async () => {
    const { token, releaseId } = await setup('cap-vm');
    const devices = await Promise.all(Array.from({ length: 5 }, () => register('cap-vm', token)));
    const id = await rollout({ releaseId, stages: [{ percent: 100, maxConcurrent: 2 }] });
    const first: TestDevice[] = [];
    for (const d of devices) if ((await poll(d)).status === 'update') first.push(d);
    expect(first).toHaveLength(2);
    // Already offered devices keep their offer at the cap.
    expect((await poll(first[0] as TestDevice)).status).toBe('update');
    for (const d of first) {
      const res = await h.request('/v1/device/report', {
        method: 'POST',
        token: await d.token(),
        json: { rolloutId: id, version: '2.0.0', state: 'committed' },
      });
      expect(res.status).toBe(202);
    }
    const rest = devices.filter((d) => !first.includes(d));
    let second = 0;
    for (const d of rest) if ((await poll(d)).status === 'update') second++;
    expect(second).toBe(2);
  });

  it('completes without waiting for a device that was decommissioned after its offer', async () => {
    const { token, releaseId } = await setup('gone-vm');
    const [kept, gone] = await Promise.all([register('gone-vm', token), register('gone-vm', token)]);
    const id = await rollout({ releaseId });
    expect((await poll(gone as TestDevice)).status).toBe('update');
    const decommission = await h.request(`/v1/admin/devices/${gone?.id}/decommission`, {
      method: 'POST',
      key: h.adminKey,
    });
    expect(decommission.status).toBe(200);
    expect((await poll(kept as TestDevice)).status).toBe('update');
    await h.request('/v1/device/report', {
      method: 'POST',
      token: await (kept as TestDevice).token(),
      json: { rolloutId: id, version: '2.0.0', state: 'committed' },
    });
    // The report triggers an evaluation (250 ms later): the decommissioned device's offer is not awaited.
    let state = '';
    for (let i = 0; i < 40 && state !== 'completed'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const res = await h.request(`/v1/admin/rollouts/${id}/status`, { key: h.adminKey });
      state = ((await res.json()) as { rollout: { state: string } }).rollout.state;
    }
    expect(state).toBe('completed');
  });

  it("opens a device-local maintenance window in each device's own time zone", async () => {
    const { token, releaseId } = await setup('window-vm');
    const kiribati = await register('window-vm', token, { timezone: 'Pacific/Kiritimati' }); // UTC+14
    const utc = await register('window-vm', token);
    await rollout({
      releaseId,
      maintenanceWindow: { timezone: 'device-local', start: '02:00', end: '04:00' },
    });
    // 13:00 UTC is 03:00 the next day in Kiritimati: inside its window, outside UTC's.
    h.clock.current = new Date('2026-11-25T13:00:00Z');
    expect((await poll(kiribati)).status).toBe('update');
    expect((await poll(utc)).status).toBe('no-update');
    h.clock.current = new Date('2026-11-26T03:00:00Z');
    expect((await poll(utc)).status).toBe('update');
    h.clock.current = new Date();
  });

  it('selects by group and running version, and prefers an explicit device-id rollout over a newer broad one', async () => {
    const { keys, token, releaseId } = await setup('select-vm');
    const eu = await register('select-vm', token);
    const us = await register('select-vm', token);
    for (const [d, tags] of [
      [eu, ['group:eu']],
      [us, ['group:us']],
    ] as const) {
      const res = await h.request(`/v1/admin/devices/${d.id}/tags`, {
        method: 'PUT',
        key: h.adminKey,
        json: { tags },
      });
      expect(res.status).toBe(200);
    }
    const euOnly = await rollout({
      releaseId,
      selector: { groups: ['eu'], currentVersion: '>=1.0.0 <1.5.0' },
    });
    expect(await poll(eu)).toMatchObject({ status: 'update', rolloutId: euOnly });
    expect((await poll(us)).status).toBe('no-update');
    // Outside the version constraint: nothing, even in the group.
    expect((await poll(eu, '1.6.0')).status).toBe('no-update');

    const hotfix = await pushRelease(h, await makeRelease(keys, '2.0.1'));
    const pinned = await rollout({ releaseId: hotfix, selector: { deviceIds: [us.id] } });
    const broad = await rollout({ releaseId: hotfix });
    // us: the explicit device-id rollout wins although the broad one started later.
    expect(await poll(us)).toMatchObject({ status: 'update', rolloutId: pinned });
    // eu: started installing 2.0.0 under euOnly, so it keeps that install rather than switching.
    const started = await h.request('/v1/device/report', {
      method: 'POST',
      token: await eu.token(),
      json: { rolloutId: euOnly, version: '2.0.0', state: 'downloading' },
    });
    expect(started.status).toBe(202);
    expect(await poll(eu)).toMatchObject({ status: 'update', rolloutId: euOnly });
    // Once it commits 2.0.0, the newest applicable rollout (broad, 2.0.1) is next.
    await h.request('/v1/device/report', {
      method: 'POST',
      token: await eu.token(),
      json: { rolloutId: euOnly, version: '2.0.0', state: 'committed' },
    });
    expect(await poll(eu, '2.0.0')).toMatchObject({ status: 'update', rolloutId: broad });
  });
});
