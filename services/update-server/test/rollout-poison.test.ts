// Issue #16 defect 4: one provisioning token could poison a canary. Ten fake devices registered
// with one token, offered the release and reporting `failed` without ever downloading it paused
// the rollout ("10 of 10 failed"). Now tokens default to one use, and a stage's failure rate
// counts only devices that were offered the release and fetched its blobs.
import { createLogger } from '../src/logger.js';
import { RolloutEngine } from '../src/rollout/engine.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
  startRollout,
  type TestBlobStore,
  type TestDatabase,
  type TestDevice,
  type TestRelease,
} from './harness.js';

describe.each(DB_BACKENDS)('rollout poisoning on %s', (backend) => {
  let tdb: TestDatabase;
  let tblobs: TestBlobStore;
  let h: Harness;
  let keys: ProductKeys;
  let engine: RolloutEngine;

  beforeAll(async () => {
    tdb = await openTestDatabase(backend);
    tblobs = await openTestBlobStore('fs');
    h = await createHarness(tdb.database, tblobs.blobs, { blobDelivery: 'stream' });
    keys = await makeProduct('eflow-vm');
    await createProduct(h, keys);
    engine = new RolloutEngine({
      db: tdb.database.db,
      clock: h.clock,
      logger: createLogger({ level: 'silent' }),
    });
  });
  afterAll(async () => {
    await tdb?.dispose();
    await tblobs?.dispose();
  });

  const poll = async (d: TestDevice) => {
    const res = await h.request('/v1/device/poll', {
      method: 'POST',
      token: await d.token(),
      json: { version: '0.9.0', bootedSlot: 'A' },
    });
    expect(res.status).toBe(200);
    return (await res.json()) as { status: string; rolloutId?: string };
  };
  const report = async (d: TestDevice, rolloutId: string, state: string) => {
    const res = await h.request('/v1/device/report', {
      method: 'POST',
      token: await d.token(),
      json: { rolloutId, version: '1.0.0', state },
    });
    expect(res.status).toBe(202);
  };
  const rolloutState = async (id: string) => {
    const res = await h.request(`/v1/admin/rollouts/${id}`, { key: h.adminKey });
    return ((await res.json()) as { state: string }).state;
  };

  it('a provisioning token registers one device unless created with more uses', async () => {
    const res = await h.request('/v1/admin/provisioning-tokens', {
      method: 'POST',
      key: h.adminKey,
      json: { product: keys.product, expiresInSeconds: 3600 },
    });
    const { token, maxUses } = (await res.json()) as { token: string; maxUses: number | null };
    expect(maxUses).toBe(1);
    await registerDevice(h, keys.product, token);
    await expect(registerDevice(h, keys.product, token)).rejects.toThrow(/403.*used 1 of 1 times/);
  });

  it('ten devices that never fetched the release cannot fail it; one that did can', async () => {
    const release: TestRelease = await makeRelease(keys, '1.0.0');
    const releaseId = await pushRelease(h, release);
    const token = await createProvisioningToken(h, keys.product, { maxUses: 12 });
    const fakes: TestDevice[] = [];
    for (let i = 0; i < 10; i++) fakes.push(await registerDevice(h, keys.product, token));
    // The canary: the ten fakes and one real device that downloads the release and commits it.
    const canary = await registerDevice(h, keys.product, token);
    const rolloutId = await startRollout(
      h,
      releaseId,
      { deviceIds: [...fakes, canary].map((d) => d.id) },
      {
        stages: [{ percent: 100, maxFailurePercent: 20, minSample: 1 }],
      },
    );
    for (const d of [...fakes, canary]) expect((await poll(d)).rolloutId).toBe(rolloutId);
    for (const d of fakes) await report(d, rolloutId, 'failed');
    const fetched = await h.request(`/v1/device/blobs/sha256/${release.artifactDigest.slice(7)}`, {
      token: await canary.token(),
    });
    expect(fetched.status).toBe(200);
    await fetched.arrayBuffer();
    await report(canary, rolloutId, 'committed');
    await engine.evaluateAll();
    // Every targeted device has finished: the rollout completes (it read "paused: 91 % (10 of
    // 11) failed" before), its reason naming the reports it did not count.
    expect(await rolloutState(rolloutId)).toBe('completed');
    const status = await h.request(`/v1/admin/rollouts/${rolloutId}/status`, { key: h.adminKey });
    const body = (await status.json()) as {
      status: { overall: { failures: number; counts: Record<string, number> } };
    };
    expect(body.status.overall.failures).toBe(0);
    expect(body.status.overall.counts.failed).toBe(10); // still shown: an operator sees the reports

    // Fakes alone (or a release every device refuses before downloading it: a bad signature)
    // cannot make a rollout read "completed" either: it stops, saying why.
    const onlyFakes = await startRollout(
      h,
      releaseId,
      { deviceIds: fakes.map((d) => d.id) },
      { stages: [{ percent: 100, maxFailurePercent: 20, minSample: 3 }] },
    );
    for (const d of fakes) expect((await poll(d)).rolloutId).toBe(onlyFakes);
    for (const d of fakes) await report(d, onlyFakes, 'failed');
    await engine.evaluateAll();
    expect(await rolloutState(onlyFakes)).toBe('paused');

    // A device that downloaded the artifact and then failed is a real failure.
    const real = await registerDevice(h, keys.product, token);
    const second = await startRollout(
      h,
      releaseId,
      { deviceIds: [real.id] },
      {
        stages: [{ percent: 100, maxFailurePercent: 20, minSample: 1 }],
      },
    );
    expect((await poll(real)).rolloutId).toBe(second);
    const blob = await h.request(`/v1/device/blobs/sha256/${release.artifactDigest.slice(7)}`, {
      token: await real.token(),
    });
    expect(blob.status).toBe(200);
    await blob.arrayBuffer();
    await report(real, second, 'failed');
    const results = await engine.evaluateAll();
    expect(results.find((r) => r.rolloutId === second)?.decision.action).toBe('pause');
    expect(await rolloutState(second)).toBe('paused');
  });
});
