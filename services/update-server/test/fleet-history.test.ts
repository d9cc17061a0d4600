// The console's version chart (issue #17): fleet_version_days, kept by triggers as devices
// register, poll, commit and are decommissioned, must give the history the recount from every
// device and commit gives (fleet-history.ts). A seeded random sequence over 40 days, compared
// after every step, on PGlite and on the real PostgreSQL.
import { seeded } from '@abota/testkit';
import { randomUUID } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { versionHistory, versionHistoryRecount } from '../src/console/pages/fleet-history.js';
import { deviceEvents, devices, products } from '../src/db/schema.js';
import { DB_BACKENDS, openTestDatabase, type TestDatabase } from './harness.js';

const SEED = Number(process.env['ABOTA_HISTORY_SEED'] ?? 99);
const VERSIONS = [null, '1.0.0', '1.1.0', '2.0.0'];
const DAY_MS = 86_400_000;

describe.each(DB_BACKENDS)('fleet version history on %s', (backend) => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    tdb = await openTestDatabase(backend);
  }, 60_000);
  afterAll(async () => {
    await tdb?.dispose();
  });

  it('kept per day equals the recount from devices and commits after every step', async () => {
    const random = seeded(SEED);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
    const db = tdb.database.db;
    let at = Date.parse('2026-01-01T00:00:00Z');
    const clock = { now: () => new Date(at) };
    for (const id of ['a', 'b']) await db.insert(products).values({ id, trustRoot: {}, trustRootVersion: 1 });
    const ids: string[] = [];
    for (let step = 0; step < 150; step++) {
      at += Math.floor(random() * DAY_MS * 0.6);
      const op = random();
      const id = pick(ids.length > 0 ? ids : ['none']);
      if (op < 0.25 || ids.length === 0) {
        const rows = Array.from({ length: 1 + Math.floor(random() * 3) }, () => ({
          id: randomUUID(),
          product: pick(['a', 'b']),
          hardware: 'hyperv-x64',
          publicKeyJwk: { kty: 'OKP' as const, crv: 'Ed25519' as const, x: 'x' },
          currentVersion: pick(VERSIONS),
          registeredAt: clock.now(),
        }));
        ids.push(...rows.map((r) => r.id));
        await db.insert(devices).values(rows);
      } else if (op < 0.4) {
        // A poll reporting another running version.
        await db
          .update(devices)
          .set({ currentVersion: pick(VERSIONS) })
          .where(eq(devices.id, id));
      } else if (op < 0.85) {
        // A committed report, as the report route writes it: the event, then the device row.
        const version = pick(VERSIONS.slice(1)) as string;
        await db.transaction(async (tx) => {
          await tx
            .insert(deviceEvents)
            .values({ deviceId: id, version, state: 'committed', at: clock.now() });
          await tx.update(devices).set({ currentVersion: version }).where(eq(devices.id, id));
        });
      } else {
        await db
          .update(devices)
          .set({
            decommissionedAt: sql`CASE WHEN decommissioned_at IS NULL THEN ${clock.now().toISOString()}::timestamptz END`,
          })
          .where(eq(devices.id, id));
      }
      for (const product of [undefined, 'a']) {
        const o = { product, days: 30 };
        expect(await versionHistory({ db, clock }, o), `seed ${SEED} step ${step}`).toEqual(
          await versionHistoryRecount({ db, clock }, o),
        );
      }
    }
    const last = await versionHistory({ db, clock }, { days: 30 });
    expect(last.series.length).toBeGreaterThan(2);
  }, 300_000);
});
