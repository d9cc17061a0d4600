// Progress at fleet scale (issue #17): the counters a running rollout is evaluated from
// (src/rollout/counters.ts, kept by triggers in drizzle/0009) must give exactly the numbers of a
// full recount from the fleet (progress-sql.ts) after any sequence of what happens to a fleet:
// registrations (late joiners, and outsiders of a frozen population), retags, version changes,
// decommissions, offers, reports in every state with and without downloads, health reports, a
// rollback selecting from the rollout. A seeded random sequence, compared after every step, on
// PGlite and on the real PostgreSQL.
import { seeded } from '@abota/testkit';
import { randomUUID } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceEvents, devices, products, releases, rolloutDevices, rollouts } from '../src/db/schema.js';
import { loadProgressCounted } from '../src/rollout/counters.js';
import { markRegistered, markRetagged } from '../src/rollout/late-joiners.js';
import { DEVICE_STATES, type StageSpec } from '../src/rollout/model.js';
import { type BakeOptions, loadProgressSql } from '../src/rollout/progress-sql.js';
import type { CachedRollout } from '../src/rollout/store.js';
import { DB_BACKENDS, insertBareRelease, openTestDatabase, type TestDatabase } from './harness.js';

const SEED = Number(process.env['ABOTA_COUNTERS_SEED'] ?? 4242);
const PRODUCT = 'eflow-vm';
const HARDWARE = ['hyperv-x64', 'kvm-x64'];
const VERSIONS = [null, '1.0.0', '1.1.0', '2.0.0', 'nightly'];
const TAGS = ['edge', 'group:north', 'group:south'];
const STATES = [...DEVICE_STATES, 'unhealthy'];
const STAGES: StageSpec[] = [{ percent: 5, minDevices: 7 }, { percent: 40 }, { percent: 100 }];

describe.each(DB_BACKENDS)('rollout counters on %s', (backend) => {
  let tdb: TestDatabase;
  afterAll(async () => {
    await tdb?.dispose();
  });
  beforeAll(async () => {
    tdb = await openTestDatabase(backend);
  }, 60_000);

  it('equal a full recount from the fleet after every step of a random sequence of reports', async () => {
    const random = seeded(SEED);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
    const db = tdb.database.db;
    let clock = Date.parse('2026-03-01T00:00:00Z');
    const now = () => new Date(clock);
    await db.insert(products).values({ id: PRODUCT, trustRoot: {}, trustRootVersion: 1 });
    const releaseId = await insertBareRelease(db, PRODUCT);
    const base = {
      product: PRODUCT,
      releaseId,
      releaseVersion: '2.0.0',
      releaseCompatible: ['hyperv-x64'],
      stages: STAGES,
    };
    // A normal rollout (late joiners), a frozen one, and a rollback selecting from the first.
    const normal = {
      ...base,
      rolloutId: randomUUID(),
      selector: { groups: ['north', 'south'] },
      allowDowngrade: false,
    };
    const frozen = {
      ...base,
      rolloutId: randomUUID(),
      selector: { tags: ['edge'], currentVersion: '>=1.0.0 <2.0.0' },
      allowDowngrade: false,
      lateJoiners: false,
    };
    const rollback = {
      ...base,
      rolloutId: randomUUID(),
      selector: { fromRollout: normal.rolloutId },
      releaseVersion: '1.0.0',
      releaseCompatible: ['hyperv-x64', 'kvm-x64'],
      allowDowngrade: true,
    };
    const all = [normal, frozen, rollback];
    const ids: string[] = [];
    const register = async (n: number) => {
      const rows = Array.from({ length: n }, () => {
        const id = randomUUID();
        ids.push(id);
        return {
          id,
          product: PRODUCT,
          hardware: pick(HARDWARE),
          publicKeyJwk: { kty: 'OKP' as const, crv: 'Ed25519' as const, x: 'x' },
          tags: TAGS.filter(() => random() < 0.5),
          currentVersion: pick(VERSIONS),
          registeredAt: now(),
        };
      });
      await db.transaction(async (tx) => {
        await tx.insert(devices).values(rows);
        for (const r of rows) await markRegistered(tx, PRODUCT, r.id, now());
      });
    };
    await register(300);
    await db.insert(rollouts).values([
      { id: normal.rolloutId, releaseId, product: PRODUCT, selector: normal.selector, stages: STAGES },
      {
        id: frozen.rolloutId,
        releaseId,
        product: PRODUCT,
        selector: frozen.selector,
        stages: STAGES,
        lateJoiners: false,
      },
      {
        id: rollback.rolloutId,
        releaseId,
        product: PRODUCT,
        selector: rollback.selector,
        stages: STAGES,
        kind: 'rollback',
        allowDowngrade: true,
      },
    ]);

    const compare = async (step: number, what: string) => {
      const bake: BakeOptions = { bakeSeconds: pick([0, 0, 600]), now: now() };
      for (const r of all) {
        // Small chunks for one rollout: seeding and syncing cross chunk edges.
        const counted = await loadProgressCounted(db, r, bake, r === normal ? 7 : undefined);
        const recount = await loadProgressSql(db, r, bake);
        expect(counted, `seed ${SEED} step ${step} (${what}) rollout ${all.indexOf(r)}`).toEqual(recount);
      }
    };
    await compare(0, 'start');

    const member = async (rolloutId: string) => {
      const rows = await db
        .select({ deviceId: rolloutDevices.deviceId, state: rolloutDevices.state })
        .from(rolloutDevices)
        .where(eq(rolloutDevices.rolloutId, rolloutId));
      return rows.length === 0 ? undefined : pick(rows);
    };
    let nonEmpty = 0;
    for (let step = 1; step <= 120; step++) {
      clock += Math.floor(random() * 300_000);
      const op = random();
      const id = pick(ids);
      let what: string;
      if (op < 0.08) {
        what = 'register';
        await register(1 + Math.floor(random() * 4));
      } else if (op < 0.16) {
        what = 'retag';
        await db.transaction(async (tx) => {
          const [before] = await tx.select().from(devices).where(eq(devices.id, id)).for('update');
          if (before === undefined) return;
          await markRetagged(tx, before, now());
          await tx
            .update(devices)
            .set({ tags: TAGS.filter(() => random() < 0.5) })
            .where(eq(devices.id, id));
        });
      } else if (op < 0.24) {
        what = 'poll with a new version';
        await db
          .update(devices)
          .set({ currentVersion: pick(VERSIONS) })
          .where(eq(devices.id, id));
      } else if (op < 0.28) {
        what = 'decommission or recommission';
        await db
          .update(devices)
          .set({ decommissionedAt: sql`CASE WHEN decommissioned_at IS NULL THEN now() END` })
          .where(eq(devices.id, id));
      } else if (op < 0.5) {
        what = 'offers';
        const r = pick(all);
        const batch = [...new Set(Array.from({ length: 1 + Math.floor(random() * 20) }, () => pick(ids)))];
        await db
          .insert(rolloutDevices)
          .values(
            batch.map((deviceId) => ({
              rolloutId: r.rolloutId,
              deviceId,
              state: 'offered',
              updatedAt: now(),
            })),
          )
          .onConflictDoNothing();
      } else if (op < 0.6) {
        what = 'blob download';
        const r = pick(all);
        const m = await member(r.rolloutId);
        if (m !== undefined)
          await db
            .update(rolloutDevices)
            .set({ blobsFetchedAt: now() })
            .where(and(eq(rolloutDevices.rolloutId, r.rolloutId), eq(rolloutDevices.deviceId, m.deviceId)));
      } else if (op < 0.9) {
        what = 'report';
        const r = pick(all);
        const m = await member(r.rolloutId);
        if (m !== undefined) {
          const state = pick(STATES);
          await db.transaction(async (tx) => {
            await tx
              .insert(deviceEvents)
              .values({
                deviceId: m.deviceId,
                rolloutId: r.rolloutId,
                version: r.releaseVersion,
                state,
                at: now(),
              })
              .onConflictDoNothing();
            await tx
              .update(rolloutDevices)
              .set({ state, updatedAt: now(), ...(state === 'committed' ? { committedAt: now() } : {}) })
              .where(and(eq(rolloutDevices.rolloutId, r.rolloutId), eq(rolloutDevices.deviceId, m.deviceId)));
            if (state === 'committed')
              await tx
                .update(devices)
                .set({ currentVersion: r.releaseVersion })
                .where(eq(devices.id, m.deviceId));
          });
        }
      } else {
        what = 'health report';
        const r = pick(all);
        const m = await member(r.rolloutId);
        if (m !== undefined)
          await db
            .update(rolloutDevices)
            .set({ healthySeconds: Math.floor(random() * 1200), updatedAt: now() })
            .where(and(eq(rolloutDevices.rolloutId, r.rolloutId), eq(rolloutDevices.deviceId, m.deviceId)));
      }
      await compare(step, what);
      const p = await loadProgressCounted(db, normal);
      if (p.some((s) => s.notOffered > 0) && p.some((s) => s.targeted > s.notOffered)) nonEmpty++;
    }
    // The sequence exercised candidates and members together.
    expect(nonEmpty).toBeGreaterThan(60);
  }, 300_000);

  it('fills the candidates afresh when a stopped rollout runs again', async () => {
    const db = tdb.database.db;
    const [r] = await db.select().from(rollouts).limit(1);
    if (r === undefined) throw new Error('no rollout');
    const [rel] = await db.select().from(releases).where(eq(releases.id, r.releaseId));
    const candidate = {
      rolloutId: r.id,
      product: r.product,
      selector: r.selector,
      stages: r.stages,
      releaseVersion: rel?.version ?? '',
      releaseCompatible: rel?.compatible ?? [],
      allowDowngrade: r.allowDowngrade,
      lateJoiners: r.lateJoiners,
    } satisfies Partial<CachedRollout>;
    await db.update(rollouts).set({ state: 'completed' }).where(eq(rollouts.id, r.id));
    // Changes while it is stopped are not tracked…
    await db.update(devices).set({ tags: ['group:north'], currentVersion: '1.0.0', hardware: 'hyperv-x64' });
    await db.update(rollouts).set({ state: 'active' }).where(eq(rollouts.id, r.id));
    // …so it is seeded again from the fleet.
    expect(await loadProgressCounted(db, candidate)).toEqual(await loadProgressSql(db, candidate));
  }, 60_000);
});
