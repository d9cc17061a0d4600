// Issue #16 "load shedding": each replica admits at most ABOTA_MAX_IN_FLIGHT requests at once
// to the APIs; a burst beyond that is answered 503 + Retry-After at once (spread over 1-5 s)
// instead of queueing behind the database, and the operational routes keep answering.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createHarness,
  createProduct,
  createProvisioningToken,
  type Harness,
  makeProduct,
  openTestBlobStore,
  openTestDatabase,
  registerDevice,
  type TestBlobStore,
  type TestDatabase,
  type TestDevice,
} from './harness.js';

describe('load shedding', () => {
  let tdb: TestDatabase;
  let tblobs: TestBlobStore;
  let h: Harness;
  let device: TestDevice;

  beforeAll(async () => {
    tdb = await openTestDatabase('pglite');
    tblobs = await openTestBlobStore('fs');
    h = await createHarness(tdb.database, tblobs.blobs, { maxRequestsInFlight: 4 });
    const keys = await makeProduct('eflow-vm');
    await createProduct(h, keys);
    device = await registerDevice(h, keys.product, await createProvisioningToken(h, keys.product));
  });
  afterAll(async () => {
    await tdb?.dispose();
    await tblobs?.dispose();
  });

  const poll = (token: string) =>
    h.request('/v1/device/poll', { method: 'POST', token, json: { version: '1.0.0', bootedSlot: 'A' } });

  it('admits 4 of a burst of 40 polls, answers the rest 503 with Retry-After, and recovers', async () => {
    const tokens = await Promise.all(Array.from({ length: 40 }, () => device.token()));
    const [answers, health] = await Promise.all([Promise.all(tokens.map(poll)), h.request('/healthz')]);
    expect(health.status).toBe(200);
    const statuses = answers.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(4);
    const shed = answers.filter((r) => r.status === 503);
    expect(shed).toHaveLength(36);
    for (const r of shed) {
      const retryAfter = Number(r.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(5);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('ERR_UNAVAILABLE');
    }
    // Nothing is left counted in flight: the next calls are all admitted.
    for (let i = 0; i < 6; i++) expect((await poll(await device.token())).status).toBe(200);
    const metrics = await (await h.request('/metrics', { key: h.adminKey })).text();
    expect(metrics).toMatch(/^abota_requests_shed_total 36$/m);
  });
});
