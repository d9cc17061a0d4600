// Progress at fleet scale (issue #17): the rollout progress counted in SQL (progress-sql.ts)
// must give exactly the numbers of the in-memory measure it replaced (every device of the product
// read into the process). A seeded random fleet — hardware, tags, groups, semver and non-semver
// versions, decommissioned devices, members in every state with and without downloads, a rollback
// selecting from an earlier rollout with trial-armed devices — is counted both ways under many
// random selectors and stage lists, on PGlite and on the real PostgreSQL.
import { seeded } from '@abota/testkit';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { devices, products, rolloutDevices, rollouts } from '../src/db/schema.js';
import { DEVICE_STATES, type StageSpec } from '../src/rollout/model.js';
import type { ProgressRollout } from '../src/rollout/progress.js';
import { loadProgressSql as loadProgress } from '../src/rollout/progress-sql.js';
import { loadProgressInMemory } from '../src/rollout/store.js';
import { DB_BACKENDS, insertBareRelease, openTestDatabase, type TestDatabase } from './harness.js';

const SEED = Number(process.env['ABOTA_PROGRESS_SEED'] ?? 1717);
const FLEET = 1500;
const HARDWARE = ['hyperv-x64', 'kvm-x64', 'rpi4'];
const VERSIONS = [null, '0.9.0', '1.0.0', '1.0.0-rc.1', '1.1.0', '1.2.0', '2.0.0', 'nightly'];
const TAGS = ['edge', 'lab', 'group:north', 'group:south', 'canary'];
const STATES = [...DEVICE_STATES, 'unhealthy'];

describe.each(DB_BACKENDS)('rollout progress counted in SQL on %s', (backend) => {
  let tdb: TestDatabase;
  const product = 'eflow-vm';
  const r1 = randomUUID();
  const r2 = randomUUID();
  const fleetIds: string[] = [];

  beforeAll(async () => {
    const random = seeded(SEED);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
    tdb = await openTestDatabase(backend);
    const db = tdb.database.db;
    await db.insert(products).values({ id: product, trustRoot: {}, trustRootVersion: 1 });
    await db.insert(products).values({ id: 'other', trustRoot: {}, trustRootVersion: 1 });
    const releaseId = await insertBareRelease(db, product);
    await db.insert(rollouts).values([
      { id: r1, releaseId, product, selector: {} },
      { id: r2, releaseId, product, selector: { fromRollout: r1 }, kind: 'rollback' },
    ]);
    const rows = Array.from({ length: FLEET }, (_, i) => {
      const id = randomUUID();
      fleetIds.push(id);
      return {
        id,
        // A few devices of another product: never counted.
        product: i % 97 === 0 ? 'other' : product,
        hardware: pick(HARDWARE),
        publicKeyJwk: { kty: 'OKP' as const, crv: 'Ed25519' as const, x: 'x' },
        tags: TAGS.filter(() => random() < 0.3),
        currentVersion: pick(VERSIONS),
        decommissionedAt: random() < 0.05 ? new Date() : null,
      };
    });
    for (let i = 0; i < rows.length; i += 500) await db.insert(devices).values(rows.slice(i, i + 500));
    const members = [];
    for (const id of fleetIds) {
      if (random() < 0.4)
        members.push({
          rolloutId: r1,
          deviceId: id,
          state: pick(STATES),
          blobsFetchedAt: random() < 0.7 ? new Date() : null,
        });
      if (random() < 0.15)
        members.push({
          rolloutId: r2,
          deviceId: id,
          state: pick(STATES),
          blobsFetchedAt: random() < 0.7 ? new Date() : null,
        });
    }
    for (let i = 0; i < members.length; i += 500)
      await db.insert(rolloutDevices).values(members.slice(i, i + 500));
  }, 120_000);
  afterAll(async () => {
    await tdb?.dispose();
  });

  it('gives the same per-stage cohorts as the in-memory measure for random selectors and stages', async () => {
    const random = seeded(SEED + 1);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
    const some = <T>(xs: readonly T[]): T[] => xs.filter(() => random() < 0.4);
    const db = tdb.database.db;
    let nonEmpty = 0;
    for (let trial = 0; trial < 40; trial++) {
      const rollback = random() < 0.3;
      const percents = [...new Set([pick([0.5, 1, 5]), pick([10, 25]), pick([50, 100])])];
      const stages: StageSpec[] = percents.map((percent) => ({
        percent,
        ...(random() < 0.5 ? { minDevices: Math.floor(random() * 60) } : {}),
      }));
      const selector = {
        ...(random() < 0.3 ? { hardware: some(HARDWARE) } : {}),
        ...(random() < 0.3 ? { tags: some(['edge', 'lab', 'canary']) } : {}),
        ...(random() < 0.3 ? { groups: some(['north', 'south', 'west']) } : {}),
        ...(random() < 0.1 ? { deviceIds: some(fleetIds.slice(0, 40)) } : {}),
        ...(random() < 0.3
          ? { currentVersion: pick(['>=1.0.0 <2.0.0', '=1.0.0', '!=nightly', '>=1.0.0-rc.1', 'bad']) }
          : {}),
        ...(random() < 0.05 ? { product: 'other' } : {}),
        ...(rollback ? { fromRollout: r1 } : {}),
      };
      const rollout: ProgressRollout = {
        rolloutId: rollback ? r2 : r1,
        product,
        selector,
        stages,
        releaseVersion: pick(['1.0.0', '2.0.0', '1.1.0', 'nightly']),
        releaseCompatible: some(HARDWARE),
        allowDowngrade: rollback || random() < 0.3,
      };
      const [sqlCount, inMemory] = await Promise.all([
        loadProgress(db, rollout),
        loadProgressInMemory(db, rollout),
      ]);
      // The in-memory measure knows no health bake: there every committed device is baked.
      expect(sqlCount, `seed ${SEED} trial ${trial} ${JSON.stringify(rollout)}`).toEqual(
        inMemory.map((s) => ({ ...s, baked: s.committed })),
      );
      if (sqlCount.some((s) => s.notOffered > 0)) nonEmpty++;
    }
    // The trials exercised candidates, not only members.
    expect(nonEmpty).toBeGreaterThan(10);
  }, 120_000);
});
