// Group commit of polls (src/db/poll-statement.ts) on PGlite and the real PostgreSQL: polls
// submitted together share one statement, and each gets exactly the answer a statement of its
// own would have given — fresh, replayed, decommissioned, unknown, its own rollout progress, its
// own reported values recorded — and a failed statement commits nothing for any poll in it.
import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PollBatcher, type PollStatementInput, type PollStatementResult } from '../src/db/poll-statement.js';
import { schema } from '../src/index.js';
import {
  createHarness,
  createProduct,
  createProvisioningToken,
  DB_BACKENDS,
  type Harness,
  makeProduct,
  makeRelease,
  pushRelease,
  registerDevice,
  startRollout,
  type TestDatabase,
  type TestBlobStore,
  openTestBlobStore,
  openTestDatabase,
} from './harness.js';

describe.each(DB_BACKENDS)('poll batching on %s', (backend) => {
  let tdb: TestDatabase;
  let tblobs: TestBlobStore;
  let h: Harness;
  let deviceIds: string[];
  let decommissioned: string;
  let rolloutId: string;
  let otherRolloutId: string;

  beforeAll(async () => {
    tdb = await openTestDatabase(backend);
    tblobs = await openTestBlobStore('fs');
    h = await createHarness(tdb.database, tblobs.blobs);
    const keys = await makeProduct('batch-product');
    await createProduct(h, keys);
    const token = await createProvisioningToken(h, keys.product);
    deviceIds = [];
    for (let i = 0; i < 8; i++) deviceIds.push((await registerDevice(h, keys.product, token)).id);
    decommissioned = (await registerDevice(h, keys.product, token)).id;
    await h.request(`/v1/admin/devices/${decommissioned}/decommission`, { method: 'POST', key: h.adminKey });
    await h.request(`/v1/admin/devices/${deviceIds[0]}/tags`, {
      method: 'PUT',
      key: h.adminKey,
      json: { tags: ['canary', 'eu'] },
    });
    rolloutId = await startRollout(h, await pushRelease(h, await makeRelease(keys, '2.0.0')));
    otherRolloutId = await startRollout(h, await pushRelease(h, await makeRelease(keys, '3.0.0')));
    // Device 0 has progress in both rollouts, device 1 in the second only.
    await tdb.database.db.insert(schema.rolloutDevices).values([
      { rolloutId, deviceId: deviceIds[0] as string, state: 'installing', updatedAt: new Date() },
      {
        rolloutId: otherRolloutId,
        deviceId: deviceIds[0] as string,
        state: 'offered',
        updatedAt: new Date(),
      },
      { rolloutId: otherRolloutId, deviceId: deviceIds[1] as string, state: 'failed', updatedAt: new Date() },
    ]);
  });
  afterAll(async () => {
    await tdb?.dispose();
    await tblobs?.dispose();
  });

  const input = (deviceId: string, o: Partial<PollStatementInput> = {}): PollStatementInput => ({
    deviceId,
    jtiKey: `${deviceId}:${randomUUID()}`,
    jtiExpiresAt: new Date(Date.now() + 300_000),
    version: '1.0.0',
    bootedSlot: 'A',
    installState: null,
    hardware: null,
    product: null,
    now: new Date(),
    rolloutIds: [rolloutId, otherRolloutId],
    ...o,
  });
  const kind = (r: PollStatementResult) => r.kind;

  it('answers every poll of a batch as if alone, one statement for the batch', async () => {
    const sizes: number[] = [];
    const batcher = new PollBatcher(tdb.database.db, { maxInFlight: 1, onStatement: (n) => sizes.push(n) });
    const d = deviceIds as [string, string, string, string, string, string, string, string];
    const replayedKey = `${d[2]}:${randomUUID()}`;
    const polls = [
      input(d[7]), // sent at once, alone: the others queue behind it
      input(d[0], { version: '1.1.0', bootedSlot: 'B', installState: 'idle', hardware: 'hw-new' }),
      input(d[1], { rolloutIds: [rolloutId] }), // asks for one rollout only
      input(d[2], { jtiKey: replayedKey }),
      input(d[2], { jtiKey: replayedKey }), // the same token again: a replay
      input(d[3], { version: '1.2.0' }),
      input(d[3], { version: '1.3.0' }), // a second fresh token of the same device
      input(decommissioned),
      input(randomUUID()),
      input(d[4]),
    ];
    const results = await Promise.all(polls.map((p) => batcher.run(p)));
    expect(results.map(kind)).toEqual([
      'ok',
      'ok',
      'ok',
      'ok',
      'replayed',
      'ok',
      'ok',
      'decommissioned',
      'unknown-device',
      'ok',
    ]);
    // Alone, then the eight others minus the two second polls of d2 and d3, then those two.
    expect(sizes).toEqual([1, 7, 2]);

    const first = results[1];
    if (first?.kind !== 'ok') throw new Error('expected ok');
    expect(first.product).toBe('batch-product');
    expect(first.hardware).toBe('hw-new');
    expect([...first.tags].sort()).toEqual(['canary', 'eu']);
    expect(first.progress).toEqual(
      new Map([
        [rolloutId, 'installing'],
        [otherRolloutId, 'offered'],
      ]),
    );
    // Device 1 has progress only in the rollout it did not ask about.
    const second = results[2];
    if (second?.kind !== 'ok') throw new Error('expected ok');
    expect(second.progress.size).toBe(0);
    const plain = results[9];
    if (plain?.kind !== 'ok') throw new Error('expected ok');
    expect(plain.hardware).toBe('hyperv-x64');
    expect(plain.tags).toEqual([]);
    expect(plain.progress.size).toBe(0);

    const row = async (id: string) =>
      (await tdb.database.db.select().from(schema.devices).where(eq(schema.devices.id, id)))[0];
    expect(await row(d[0])).toMatchObject({
      currentVersion: '1.1.0',
      bootedSlot: 'B',
      installState: 'idle',
      hardware: 'hw-new',
    });
    expect((await row(d[3]))?.currentVersion).toBe('1.3.0'); // in submission order
    expect((await row(decommissioned))?.currentVersion).toBeNull();
    const jtis = await tdb.database.db
      .select()
      .from(schema.usedJwtIds)
      .where(eq(schema.usedJwtIds.jti, replayedKey));
    expect(jtis).toHaveLength(1);
    // A replay of a token consumed in an earlier statement is refused as well.
    expect(kind(await batcher.run(input(d[2], { jtiKey: replayedKey })))).toBe('replayed');
  });

  it('starts a second statement only when enough polls wait behind the first', async () => {
    const sizes: number[] = [];
    const batcher = new PollBatcher(tdb.database.db, {
      maxInFlight: 2,
      busyBatchMin: 3,
      onStatement: (n) => sizes.push(n),
    });
    const d = deviceIds as [string, string, string, string, string, string, string, string];
    // One alone; one waiting (below the minimum: it waits for the first statement); with a
    // third waiting, a second statement starts for both.
    const first = batcher.run(input(d[0]));
    const second = batcher.run(input(d[1]));
    expect(sizes).toEqual([1]);
    const third = batcher.run(input(d[2]));
    const fourth = batcher.run(input(d[3]));
    expect(sizes).toEqual([1, 3]);
    expect((await Promise.all([first, second, third, fourth])).map(kind)).toEqual(['ok', 'ok', 'ok', 'ok']);
  });

  it('rejects every poll of a failed statement and commits none of it; later polls go through', async () => {
    const sizes: number[] = [];
    const batcher = new PollBatcher(tdb.database.db, { maxInFlight: 1, onStatement: (n) => sizes.push(n) });
    const d = deviceIds as [string, string, string, string, string, string];
    const good = input(d[5], { version: '9.9.9' });
    const runs = [
      batcher.run(input(d[4])),
      batcher.run(good),
      // Not a UUID: PostgreSQL refuses the cast, so the whole statement fails.
      batcher.run(input('not-a-uuid')),
    ];
    const settled = await Promise.allSettled(runs);
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'rejected']);
    expect(sizes).toEqual([1, 2]);
    const [row] = await tdb.database.db.select().from(schema.devices).where(eq(schema.devices.id, d[5]));
    expect(row?.currentVersion).not.toBe('9.9.9');
    // Nothing of the failed statement was committed: the same token is still fresh.
    expect(kind(await batcher.run(good))).toBe('ok');
  });
});
