// Health after commit (issue #17): a stage with a bake window (`bakeMinutes`) advances only once
// its committed devices reported staying healthy for the window, by the server's clock; a device
// that rolls back after commit (or reports `unhealthy`, a crash loop) during the window counts as
// failed and pauses the stage. 1,000 devices over real HTTP against an in-process server on PGlite,
// the injected clock skipping the window.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inRolloutPercent } from '../src/rollout/bucket.js';
import { makeRelease, pushRelease } from './harness.js';
import { type FleetDevice, type FleetServer, openFleet, poll, pollRound, report } from './rollout-fleet.js';

const FLEET_SIZE = 1000;
let f: FleetServer;

beforeAll(async () => {
  f = await openFleet(FLEET_SIZE);
}, 300_000);
afterAll(async () => {
  await f?.close();
});

async function admin<T>(path: string, json?: unknown): Promise<{ status: number; body: T }> {
  const res = await f.h.request(path, {
    method: json === undefined ? 'GET' : 'POST',
    key: f.h.adminKey,
    ...(json === undefined ? {} : { json }),
  });
  return { status: res.status, body: (await res.json()) as T };
}

async function evaluate() {
  await f.engine.idle();
  return f.engine.evaluateAll();
}

const rolloutOf = async (id: string) =>
  (
    await admin<{ state: string; currentStage: number; stateReason: string | null }>(
      `/v1/admin/rollouts/${id}`,
    )
  ).body;

const healthy = (devices: readonly FleetDevice[], rolloutId: string, seconds: number) =>
  Promise.all(
    devices.map((d) =>
      report(f.server.url, d, { rolloutId, version: d.version, state: 'healthy', healthySeconds: seconds }),
    ),
  );

describe(`health after commit, a fleet of ${FLEET_SIZE} devices`, () => {
  it('a device that rolls back after commit during the bake window pauses the stage', async () => {
    const releaseId = await pushRelease(f.h, await makeRelease(f.keys, '1.1.0'));
    const created = await admin<{ id: string }>('/v1/admin/rollouts', {
      releaseId,
      stages: [
        { percent: 2, bakeMinutes: 10, minCommitted: 3, maxFailurePercent: 0, minSample: 2 },
        { percent: 100 },
      ],
    });
    expect(created.status).toBe(201);
    const id = created.body.id;
    const cohort = f.fleet.filter((d) => inRolloutPercent(id, d.id, 2));
    expect(cohort.length).toBeGreaterThan(5);
    // The offer tells the device the window; every canary installs and commits.
    expect(await poll(f.server.url, cohort[0] as FleetDevice)).toMatchObject({
      health: { bakeSeconds: 600 },
    });
    const first = await pollRound(f.server.url, f.fleet, undefined, { fetchAlways: true });
    expect(new Set(first.keys())).toEqual(new Set(cohort.map((d) => d.id)));
    const waiting = await evaluate();
    expect(waiting.map((r) => r.decision.action)).toEqual(['wait']);
    expect(waiting[0]?.decision.reason).toMatch(/stay healthy for 10 min after commit \(0 of 3 baked\)/);

    // Five minutes in, all healthy but one, whose slot falls back after commit (a watchdog reset
    // loop): it reports rolled-back for the release it had committed.
    f.h.clock.advanceSeconds(300);
    const [bad, ...good] = cohort as [FleetDevice, ...FleetDevice[]];
    await healthy(good, id, 300);
    await report(f.server.url, bad, {
      rolloutId: id,
      version: '1.0.0',
      state: 'rolled-back',
      errorCode: 'ERR_WATCHDOG',
    });
    bad.version = '1.0.0';
    await evaluate();
    const paused = await rolloutOf(id);
    expect(paused).toMatchObject({ state: 'paused', currentStage: 0 });
    expect(paused.stateReason).toContain(`(1 of ${cohort.length} devices failed or rolled back)`);
    // Nobody outside the canaries is offered the release, however long it stays paused.
    f.h.clock.advanceSeconds(3600);
    expect(await evaluate()).toEqual([]);
    expect(
      (
        await pollRound(
          f.server.url,
          f.fleet.filter((d) => !cohort.includes(d)),
        )
      ).size,
    ).toBe(0);
    expect((await admin(`/v1/admin/rollouts/${id}/abort`, { reason: 'bad release' })).status).toBe(200);
  }, 300_000);

  it('a stage with a 10 min bake advances only once its devices stayed healthy for 10 min, and unhealthy counts as failed', async () => {
    const releaseId = await pushRelease(f.h, await makeRelease(f.keys, '1.2.0'));
    const id = (
      await admin<{ id: string }>('/v1/admin/rollouts', {
        releaseId,
        stages: [
          { percent: 2, bakeMinutes: 10, minCommitted: 3, maxFailurePercent: 50, minSample: 2 },
          { percent: 100 },
        ],
      })
    ).body.id;
    const first = await pollRound(f.server.url, f.fleet, undefined, { fetchAlways: true });
    const cohort = f.fleet.filter((d) => first.has(d.id));
    expect(cohort.length).toBeGreaterThan(5);
    const [crashing, ...rest] = cohort as [FleetDevice, ...FleetDevice[]];
    // A crash-looping device says so; it is a failure of the stage (1 of n, under 50 %).
    await report(f.server.url, crashing, {
      rolloutId: id,
      version: '1.2.0',
      state: 'unhealthy',
      errorCode: 'ERR_CRASH_LOOP',
    });

    f.h.clock.advanceSeconds(599);
    await healthy(rest, id, 599);
    const early = await evaluate();
    expect(early[0]?.decision).toMatchObject({
      action: 'wait',
      numbers: { bakeMinutes: 10, stageBaked: 0, failures: 1 },
    });
    // The window has passed by the server's clock, but no device has reported 600 s healthy yet.
    f.h.clock.advanceSeconds(1);
    await evaluate();
    expect(await rolloutOf(id)).toMatchObject({ state: 'active', currentStage: 0 });
    await healthy(rest.slice(0, 2), id, 600);
    await evaluate();
    expect(await rolloutOf(id)).toMatchObject({ state: 'active', currentStage: 0 }); // 2 of 3 baked
    // The third report completes the sample: the engine, evaluating after it, advances.
    await healthy(rest.slice(2), id, 600);
    await evaluate();
    expect(await rolloutOf(id)).toMatchObject({ state: 'active', currentStage: 1 });
    // A repeated healthy report is a duplicate and changes nothing.
    const res = await fetch(`${f.server.url}/v1/device/report`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${await (rest[0] as FleetDevice).sign()}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ rolloutId: id, version: '1.2.0', state: 'healthy', healthySeconds: 600 }),
    });
    expect(await res.json()).toEqual({ status: 'accepted', duplicate: true });
  }, 300_000);
});
