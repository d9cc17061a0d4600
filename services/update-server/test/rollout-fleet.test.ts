// Canary rollouts end to end: 1,000 simulated devices over real HTTP on loopback against an
// in-process server on PGlite, an injected clock to skip bake times. A healthy release goes
// 1 % → 10 % → 100 % by itself; a release whose health check fails on some canaries pauses at
// 1 % with the measured failure rate; rolling it back returns exactly the affected devices.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditLog } from '../src/db/schema.js';
import { inRolloutPercent } from '../src/rollout/bucket.js';
import type { RolloutEngine } from '../src/rollout/engine.js';
import type { RolloutStatusView } from '../src/rollout/status.js';
import { eq } from 'drizzle-orm';
import { type Harness, makeRelease, type ProductKeys, pushRelease, type TestDatabase } from './harness.js';
import {
  type FleetDevice,
  type FleetServer,
  type Listening,
  openFleet,
  poll,
  pollRound,
} from './rollout-fleet.js';

const FLEET_SIZE = 1000;
const STAGES = [
  { percent: 1, minBakeSeconds: 3600, minCommitted: 5, maxFailurePercent: 10, minSample: 2 },
  { percent: 10, minBakeSeconds: 3600, minCommitted: 20, maxFailurePercent: 10, minSample: 2 },
  { percent: 100 },
];

let f: FleetServer;
let database: TestDatabase;
let server: Listening;
let engine: RolloutEngine;
let h: Harness;
let keys: ProductKeys;
let fleet: FleetDevice[];

beforeAll(async () => {
  f = await openFleet(FLEET_SIZE);
  ({ database, server, engine, h, keys, fleet } = f);
}, 300_000);

afterAll(async () => {
  await f?.close();
});

async function admin<T>(path: string, json?: unknown): Promise<{ status: number; body: T }> {
  const res = await h.request(path, {
    method: json === undefined ? 'GET' : 'POST',
    key: h.adminKey,
    ...(json === undefined ? {} : { json }),
  });
  return { status: res.status, body: (await res.json()) as T };
}

async function status(id: string) {
  return (
    await admin<{ rollout: { state: string; currentStage: number }; status: RolloutStatusView }>(
      `/v1/admin/rollouts/${id}/status`,
    )
  ).body;
}

/** What the engine does now: background runs from reports first, then one timer tick. */
async function evaluate() {
  await engine.idle();
  return engine.evaluateAll();
}

async function auditOf(id: string) {
  return database.database.db
    .select({ action: auditLog.action, actor: auditLog.actor, details: auditLog.details })
    .from(auditLog)
    .where(eq(auditLog.target, `rollout:${id}`))
    .orderBy(auditLog.id);
}

const idsWhere = (pred: (d: FleetDevice) => boolean) => new Set(fleet.filter(pred).map((d) => d.id));

describe(`a fleet of ${FLEET_SIZE} devices`, () => {
  it('advances a healthy 1 % → 10 % → 100 % rollout by itself once each stage has baked, and completes it', async () => {
    const releaseId = await pushRelease(h, await makeRelease(keys, '1.1.0'));
    const created = await admin<{ id: string; state: string }>('/v1/admin/rollouts', {
      releaseId,
      stages: STAGES,
    });
    expect(created.status).toBe(201);
    const id = created.body.id;

    // Stage 1: exactly the devices whose bucket is below 100 (1 %) are offered.
    const first = await pollRound(server.url, fleet);
    expect(new Set(first.keys())).toEqual(idsWhere((d) => inRolloutPercent(id, d.id, 1)));
    expect(first.size).toBeGreaterThan(0);
    expect(first.size).toBeLessThan(30);
    expect((await evaluate()).map((r) => r.decision.action)).toEqual(['wait']);
    expect((await status(id)).status.next.reason).toMatch(/baking stage 1\/3 \(1%\)/);

    h.clock.advanceSeconds(3600);
    expect((await evaluate()).map((r) => [r.decision.action, r.applied])).toEqual([['advance', true]]);
    const second = await pollRound(server.url, fleet);
    expect(new Set(second.keys())).toEqual(
      idsWhere((d) => inRolloutPercent(id, d.id, 10) && !inRolloutPercent(id, d.id, 1)),
    );
    expect(second.size).toBeGreaterThan(50);
    expect(second.size).toBeLessThan(140);

    h.clock.advanceSeconds(1800);
    expect((await evaluate())[0]?.decision.action).toBe('wait'); // 10 % bakes for an hour too
    h.clock.advanceSeconds(1800);
    expect((await evaluate())[0]?.applied).toBe(true);
    const third = await pollRound(
      server.url,
      fleet.filter((d) => d.version !== '1.1.0'),
    );
    expect(first.size + second.size + third.size).toBe(FLEET_SIZE);
    await evaluate();

    const done = await status(id);
    expect(done.rollout.state).toBe('completed');
    expect(done.status.overall).toMatchObject({ committed: FLEET_SIZE, failures: 0, failurePercent: 0 });
    expect(done.status.stages.map((s) => s.committed)).toEqual([first.size, second.size, third.size]);

    // Every automatic decision is in the audit log with the numbers it was taken on.
    const audit = await auditOf(id);
    expect(audit.map((a) => a.action)).toEqual([
      'rollout.create',
      'rollout.advance',
      'rollout.advance',
      'rollout.complete',
    ]);
    expect(audit[1]).toMatchObject({
      actor: 'system:rollout-engine',
      details: {
        fromStage: 0,
        toStage: 1,
        numbers: { stageCommitted: first.size, failures: 0, bakedSeconds: 3600 },
      },
    });
    expect(audit[3]?.details).toMatchObject({ numbers: { committed: FLEET_SIZE } });
  }, 300_000);

  it('pauses at the first stage with the measured failure rate when canaries fail their health check, and a rollback is offered to exactly the canaries that committed', async () => {
    const before = new Map(fleet.map((d) => [d.id, d.version]));
    expect(new Set(before.values())).toEqual(new Set(['1.1.0']));
    const releaseId = await pushRelease(h, await makeRelease(keys, '1.2.0'));
    const id = (await admin<{ id: string }>('/v1/admin/rollouts', { releaseId, stages: STAGES })).body.id;
    const cohort = fleet.filter((d) => inRolloutPercent(id, d.id, 1));
    // Every second canary's new release fails its health check and the device falls back.
    const failing = new Set(cohort.filter((_, i) => i % 2 === 0).map((d) => d.id));

    // The engine re-evaluates shortly after each outcome, so it may pause in the middle of the
    // round: canaries polling after that are offered nothing.
    const first = await pollRound(server.url, fleet, (d) => failing.has(d.id));
    await evaluate();
    const offered = [...first.keys()];
    expect(offered.every((deviceId) => cohort.some((d) => d.id === deviceId))).toBe(true);
    const failed = offered.filter((deviceId) => failing.has(deviceId)).length;
    const measured = Math.round((failed / offered.length) * 1000) / 10;
    expect(measured).toBeGreaterThan(10);
    const paused = await status(id);
    expect(paused.rollout).toMatchObject({ state: 'paused', currentStage: 0 });
    expect(paused.status.overall).toMatchObject({
      failures: failed,
      committed: offered.length - failed,
      failurePercent: measured,
    });
    const audit = await auditOf(id);
    const decision = audit.at(-1) as {
      action: string;
      details: { numbers: { failures: number; outcomes: number; failurePercent: number } };
    };
    expect(decision.action).toBe('rollout.auto-pause');
    // The decision's own numbers: taken on the outcomes known at that moment, over the minimum sample.
    const { failures, outcomes, failurePercent } = decision.details.numbers;
    expect(outcomes).toBeGreaterThanOrEqual(2);
    expect(failures * 100).toBeGreaterThan(10 * outcomes);
    expect(failurePercent).toBe(Math.round((failures / outcomes) * 1000) / 10);
    expect(paused.status.stateReason).toContain(
      `failure rate ${failurePercent}% (${failures} of ${outcomes} devices`,
    );

    // Paused: nobody else is offered 1.2.0, however much time passes.
    h.clock.advanceSeconds(7200);
    expect(await evaluate()).toEqual([]);
    const nextCohort = fleet.filter((d) => inRolloutPercent(id, d.id, 10) && !inRolloutPercent(id, d.id, 1));
    expect((await pollRound(server.url, [...cohort, ...nextCohort])).size).toBe(0);

    const rollback = await admin<{ id: string; kind: string; state: string; allowDowngrade: boolean }>(
      `/v1/admin/rollouts/${id}/rollback`,
      { version: '1.1.0' },
    );
    expect(rollback.status).toBe(201);
    expect(rollback.body).toMatchObject({ kind: 'rollback', state: 'active', allowDowngrade: true });
    const back = await pollRound(server.url, fleet);
    // Only canaries that committed 1.2.0 are offered 1.1.0 again, with the permission to go back;
    // those that fell back already run 1.1.0. (These devices only report: that a device really
    // installs and commits the older release is test/e2e/updates.test.ts "rollback rollout".)
    expect(new Set(back.keys())).toEqual(new Set(offered.filter((deviceId) => !failing.has(deviceId))));
    expect(
      [...back.values()].every(
        (o) => o.version === '1.1.0' && o.rolloutId === rollback.body.id && o.allowDowngrade,
      ),
    ).toBe(true);
    // Once every one of them has reported committed, the rollback rollout completes.
    await evaluate();
    expect((await status(rollback.body.id)).rollout.state).toBe('completed');
    expect((await status(id)).rollout.state).toBe('aborted');
    // A device outside the canary cohort was never touched.
    const outsider = fleet.find((d) => !inRolloutPercent(id, d.id, 1));
    if (outsider === undefined) throw new Error('no device outside the cohort');
    expect((await poll(server.url, outsider)).status).toBe('no-update');
  }, 300_000);
});
