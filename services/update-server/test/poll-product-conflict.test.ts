// A poll that reports another product than the device's is refused (409 ERR_CONFLICT) and
// changes nothing about the device: not its version, booted slot, install state, hardware or
// last-seen time (found by the OpenAPI fuzz, test/fuzz/openapi-fuzz.test.ts: the batched poll
// statement recorded the report before the route compared products). On PGlite and PostgreSQL,
// since the poll statement is raw SQL run by each driver.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../src/index.js';
import {
  createHarness,
  createProduct,
  createProvisioningToken,
  DB_BACKENDS,
  type Harness,
  makeProduct,
  openTestBlobStore,
  openTestDatabase,
  registerDevice,
  type TestBlobStore,
  type TestDatabase,
} from './harness.js';

describe.each(DB_BACKENDS)('poll with a product mismatch on %s', (backend) => {
  let tdb: TestDatabase;
  let tblobs: TestBlobStore;
  let h: Harness;

  beforeAll(async () => {
    tdb = await openTestDatabase(backend);
    tblobs = await openTestBlobStore('fs');
    h = await createHarness(tdb.database, tblobs.blobs);
  });
  afterAll(async () => {
    await tdb?.dispose();
    await tblobs?.dispose();
  });

  it('is refused with ERR_CONFLICT and leaves the device row as it was', async () => {
    const keys = await makeProduct('eflow-vm');
    await createProduct(h, keys);
    const device = await registerDevice(h, keys.product, await createProvisioningToken(h, keys.product));
    const poll = async (body: Record<string, unknown>) =>
      h.request('/v1/device/poll', { method: 'POST', token: await device.token(), json: body });
    expect((await poll({ version: '1.0.0', bootedSlot: 'A', product: keys.product })).status).toBe(200);
    const row = async () =>
      (await tdb.database.db.select().from(schema.devices).where(eq(schema.devices.id, device.id)))[0];
    const before = await row();
    h.clock.advanceSeconds(60);

    const res = await poll({
      version: '6.6.6',
      bootedSlot: 'B',
      installState: 'installing',
      hardware: 'other-board',
      product: 'other-product',
    });
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('ERR_CONFLICT');
    expect(await row()).toEqual(before);

    // A matching product still records the report.
    expect((await poll({ version: '1.0.1', bootedSlot: 'B', product: keys.product })).status).toBe(200);
    expect(await row()).toMatchObject({ currentVersion: '1.0.1', bootedSlot: 'B' });
  });
});
