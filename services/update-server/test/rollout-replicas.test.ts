// Two server replicas (two createApp instances, each with its own rollout cache and engine) on
// one real PostgreSQL database: every device gets the same answer from both, an operator's pause
// on one is honoured by the other within a second (LISTEN/NOTIFY, not the cache TTL), and when
// both evaluate the same rollout at once exactly one applies the transition.
import { randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type App, createApp } from '../src/app.js';
import { bootstrapAdminKey } from '../src/auth/api-keys.js';
import { generateSecret } from '../src/auth/secrets.js';
import { type Database, openDatabase } from '../src/db/database.js';
import { auditLog, rollouts } from '../src/db/schema.js';
import { createLogger } from '../src/logger.js';
import { inRolloutPercent } from '../src/rollout/bucket.js';
import { RolloutEngine } from '../src/rollout/engine.js';
import {
  createProduct,
  createProvisioningToken,
  type Harness,
  makeProduct,
  makeRelease,
  openTestBlobStore,
  POSTGRES_ADMIN_URL,
  pushRelease,
  type TestBlobStore,
  TestClock,
} from './harness.js';
import {
  type FleetDevice,
  inPool,
  type Listening,
  listen,
  poll,
  pollRound,
  registerFleet,
  report,
} from './rollout-fleet.js';

interface Replica {
  database: Database;
  engine: RolloutEngine;
  app: App;
  server: Listening;
}

const dbName = `abota_test_${randomBytes(6).toString('hex')}`;
const clock = new TestClock();
let blobStore: TestBlobStore;
let a: Replica;
let b: Replica;
let adminKey: string;
let fleet: FleetDevice[];
let rolloutId: string;
let outsiderId: string;

async function replica(url: string): Promise<Replica> {
  const database = await openDatabase({ kind: 'postgres', url, poolSize: 4 });
  const logger = createLogger({ level: 'silent' });
  // A long cache TTL: anything faster than a minute below is the notification at work.
  const engine = new RolloutEngine({
    db: database.db,
    clock,
    logger,
    listen: database.listen,
    cacheTtlMs: 60_000,
  });
  await engine.start({ intervalMs: 0 });
  const app = createApp({ db: database.db, blobs: blobStore.blobs, clock, logger, rollouts: engine });
  return { database, engine, app, server: await listen(app) };
}

function adminOf(r: Replica): Pick<Harness, 'request' | 'adminKey'> {
  return {
    adminKey,
    request: async (path, init = {}) => {
      const { key, json, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (key !== undefined) headers.set('authorization', `Bearer ${key}`);
      if (json !== undefined) headers.set('content-type', 'application/json');
      return r.app.request(path, {
        ...rest,
        headers,
        ...(json === undefined ? {} : { body: JSON.stringify(json) }),
      });
    },
  };
}

beforeAll(async () => {
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  await admin.end();
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${dbName}`;
  blobStore = await openTestBlobStore('fs');
  a = await replica(url.toString());
  b = await replica(url.toString());
  adminKey = generateSecret('abk');
  await bootstrapAdminKey({ db: a.database.db }, adminKey);
}, 120_000);

afterAll(async () => {
  for (const r of [a, b]) {
    if (r === undefined) continue;
    await r.engine.stop();
    await r.server.close();
    await r.database.close();
  }
  await blobStore?.dispose();
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await admin.end();
});

describe('two replicas on one PostgreSQL', () => {
  it('give every device the same answer, honour a pause made on the other within a second, and apply each transition once', async () => {
    const h = adminOf(a) as Harness;
    const keys = await makeProduct('replica-vm');
    await createProduct(h, keys);
    const token = await createProvisioningToken(h, keys.product);
    fleet = await registerFleet(a.server.url, {
      product: keys.product,
      token,
      count: 200,
      version: '1.0.0',
      clock,
    });
    const releaseId = await pushRelease(h, await makeRelease(keys, '2.0.0'));
    const created = await h.request('/v1/admin/rollouts', {
      method: 'POST',
      key: adminKey,
      json: { releaseId, stages: [{ percent: 30, minBakeSeconds: 600 }, { percent: 100 }] },
    });
    expect(created.status).toBe(201);
    const id = ((await created.json()) as { id: string }).id;
    rolloutId = id;

    // Same answer from both replicas, for every device, and exactly the 30 % cohort.
    const answers = await inPool(fleet, 8, async (d) => [
      await poll(a.server.url, d),
      await poll(b.server.url, d),
    ]);
    const offeredIds = new Set<string>();
    for (const [i, [fromA, fromB]] of answers.entries()) {
      expect(fromB).toEqual({ ...fromA, pollAfterSeconds: expect.any(Number) });
      if (fromA?.status === 'update') offeredIds.add(fleet[i]?.id ?? '');
    }
    expect(offeredIds).toEqual(new Set(fleet.filter((d) => inRolloutPercent(id, d.id, 30)).map((d) => d.id)));

    // A device of the cohort that has not started installing: offered by B until A pauses.
    const waiting = fleet.find((d) => offeredIds.has(d.id));
    if (waiting === undefined) throw new Error('empty cohort');
    expect((await poll(b.server.url, waiting)).status).toBe('update');
    const loadsBefore = b.engine.cache.loads;
    const paused = await h.request(`/v1/admin/rollouts/${id}/pause`, {
      method: 'POST',
      key: adminKey,
      json: { reason: 'investigating' },
    });
    expect(paused.status).toBe(200);
    const started = performance.now();
    let honouredAfterMs = Number.POSITIVE_INFINITY;
    while (performance.now() - started < 2000) {
      if ((await poll(b.server.url, waiting)).status === 'no-update') {
        honouredAfterMs = performance.now() - started;
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(honouredAfterMs).toBeLessThan(1000);
    if (process.env['ABOTA_PRINT_FIGURES'] !== undefined)
      console.info(`pause honoured by the other replica after ${honouredAfterMs.toFixed(1)} ms`);
    expect(b.engine.cache.loads).toBeGreaterThan(loadsBefore);

    // Resume on B; the cohort commits; both replicas evaluate at once after the bake time.
    const resumed = await adminOf(b).request(`/v1/admin/rollouts/${id}/resume`, {
      method: 'POST',
      key: adminKey,
    });
    expect(resumed.status).toBe(200);
    await inPool(
      fleet.filter((d) => offeredIds.has(d.id)),
      8,
      (d) => report(b.server.url, d, { rolloutId: id, version: '2.0.0', state: 'committed' }),
    );
    await Promise.all([a.engine.idle(), b.engine.idle()]);
    clock.advanceSeconds(600);
    const [fromA, fromB] = await Promise.all([a.engine.evaluate(id), b.engine.evaluate(id)]);
    // Exactly one replica applies the advance. The other either decided 'advance' too and lost
    // the conditional update, or (on a loaded machine) read the rollout after the winner's
    // transition and sees the new stage still baking ('wait'); never a second advance.
    const outcomes = [fromA, fromB].map((r) => `${r?.decision.action}:${r?.applied === true}`).sort();
    expect([
      ['advance:false', 'advance:true'],
      ['advance:true', 'wait:false'],
    ]).toContainEqual(outcomes);
    const advances = await a.database.db
      .select({ action: auditLog.action })
      .from(auditLog)
      .where(eq(auditLog.target, `rollout:${id}`));
    expect(advances.map((r) => r.action)).toEqual([
      'rollout.create',
      'rollout.pause',
      'rollout.resume',
      'rollout.advance',
    ]);
    // Both replicas now offer to the rest of the fleet.
    const outsider = fleet.find((d) => !offeredIds.has(d.id));
    if (outsider === undefined) throw new Error('everyone was in the cohort');
    expect((await poll(a.server.url, outsider)).status).toBe('update');
    expect((await poll(b.server.url, outsider)).status).toBe('update');
    outsiderId = outsider.id;
  }, 180_000);
  it('re-listens after its LISTEN connection is killed and still honours the next pause from the other replica', async () => {
    const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
    await admin.connect();
    try {
      const listeners = async () =>
        (
          await admin.query<{ pid: number }>(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query = 'LISTEN abota_rollouts'",
            [dbName],
          )
        ).rows.map((r) => r.pid);
      const before = await listeners();
      expect(before).toHaveLength(2); // one per replica
      // Kill both: whichever is B's, it must come back.
      for (const pid of before) await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      const deadline = performance.now() + 10_000;
      let after: number[] = [];
      while (performance.now() < deadline) {
        after = (await listeners()).filter((pid) => !before.includes(pid));
        if (after.length === 2) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(after).toHaveLength(2);
    } finally {
      await admin.end();
    }
    const outsider = fleet.find((d) => d.id === outsiderId);
    if (outsider === undefined) throw new Error('previous test did not run');
    expect((await poll(b.server.url, outsider)).status).toBe('update');
    const paused = await adminOf(a).request(`/v1/admin/rollouts/${rolloutId}/pause`, {
      method: 'POST',
      key: adminKey,
    });
    expect(paused.status).toBe(200);
    const started = performance.now();
    let status = 'update';
    while (status !== 'no-update' && performance.now() - started < 2000)
      status = (await poll(b.server.url, outsider)).status;
    expect(status).toBe('no-update');
    expect(performance.now() - started).toBeLessThan(1000);
  }, 60_000);

  it('start an automatic rollback exactly once when both evaluate a failing stage at once (one per rollout, by a unique index too)', async () => {
    const h = adminOf(a) as Harness;
    const keys = await makeProduct('replica-rb');
    await createProduct(h, keys);
    await pushRelease(h, await makeRelease(keys, '1.0.0'));
    const devices = await registerFleet(a.server.url, {
      product: keys.product,
      token: await createProvisioningToken(h, keys.product),
      count: 20,
      version: '1.0.0',
      clock,
    });
    const releaseId = await pushRelease(h, await makeRelease(keys, '3.0.0'));
    const created = await h.request('/v1/admin/rollouts', {
      method: 'POST',
      key: adminKey,
      // Judged only once all 20 have an outcome: the decision comes after the round.
      json: { releaseId, stages: [{ percent: 100, maxFailurePercent: 10, minSample: 20 }], autoRollback: {} },
    });
    expect(created.status).toBe(201);
    const id = ((await created.json()) as { id: string }).id;
    const failing = new Set(devices.filter((_, i) => i % 2 === 0).map((d) => d.id));
    await pollRound(a.server.url, devices, (d) => failing.has(d.id));
    // Both replicas evaluate at once (and replica A's own report-triggered run may race them).
    const results = await Promise.all([a.engine.evaluate(id), b.engine.evaluate(id)]);
    await Promise.all([a.engine.idle(), b.engine.idle()]);
    expect(results.filter((r) => r?.rollbackRolloutId !== undefined).length).toBeLessThanOrEqual(1);
    const rollbacks = await a.database.db
      .select({ id: rollouts.id, selector: rollouts.selector, createdBy: rollouts.createdBy })
      .from(rollouts)
      .where(eq(rollouts.kind, 'rollback'));
    const ours = rollbacks.filter((r) => r.selector.fromRollout === id);
    expect(ours).toHaveLength(1);
    expect(ours[0]?.createdBy).toBe('system:rollout-engine');
    const actions = (
      await a.database.db
        .select({ action: auditLog.action })
        .from(auditLog)
        .where(eq(auditLog.target, `rollout:${id}`))
    ).map((r) => r.action);
    expect(actions).toEqual(['rollout.create', 'rollout.auto-pause', 'rollout.auto-rollback']);
    // The database refuses a second automatic rollback of the same rollout outright.
    await expect(
      a.database.db.insert(rollouts).values({
        releaseId,
        product: keys.product,
        selector: { fromRollout: id },
        kind: 'rollback',
        createdBy: 'system:rollout-engine',
      }),
    ).rejects.toThrow();
    // Both replicas offer the rollback, and only to the devices that committed 3.0.0.
    const committed = devices.filter((d) => !failing.has(d.id));
    for (const d of devices) {
      const [fromA, fromB] = [await poll(a.server.url, d), await poll(b.server.url, d)];
      expect(fromA.status).toBe(failing.has(d.id) ? 'no-update' : 'update');
      expect(fromB.status).toBe(fromA.status);
      if (fromA.status === 'update') expect(fromA.release?.version).toBe('1.0.0');
    }
    expect(committed.length).toBe(10);
  }, 120_000);
});
