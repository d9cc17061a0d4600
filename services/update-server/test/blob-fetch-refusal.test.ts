// A device's blob download that is refused (416: a range outside the blob) records nothing: the
// offer is marked downloaded (rollout_devices.blobs_fetched_at, which makes a later failure count
// against the rollout) only when bytes are served. Found by the OpenAPI fuzz
// (test/fuzz/openapi-fuzz.test.ts, ABOTA_FUZZ_SEED=1 ABOTA_FUZZ_RUNS=100: `range: bytes=-0`).
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../src/index.js';
import {
  createHarness,
  createProduct,
  createProvisioningToken,
  type Harness,
  makeProduct,
  makeRelease,
  openTestBlobStore,
  openTestDatabase,
  pushRelease,
  registerDevice,
  startRollout,
  type TestBlobStore,
  type TestDatabase,
} from './harness.js';

describe('device blob download refused by range', () => {
  let tdb: TestDatabase;
  let tblobs: TestBlobStore;
  let h: Harness;

  beforeAll(async () => {
    tdb = await openTestDatabase('pglite');
    tblobs = await openTestBlobStore('fs');
    h = await createHarness(tdb.database, tblobs.blobs);
  });
  afterAll(async () => {
    await tdb?.dispose();
    await tblobs?.dispose();
  });

  it('leaves the offer not downloaded on a 416 and marks it on the 206', async () => {
    const keys = await makeProduct('eflow-vm');
    await createProduct(h, keys);
    const release = await makeRelease(keys, '2.0.0');
    await startRollout(h, await pushRelease(h, release));
    const device = await registerDevice(h, keys.product, await createProvisioningToken(h, keys.product));
    const poll = await h.request('/v1/device/poll', {
      method: 'POST',
      token: await device.token(),
      json: { version: '1.0.0', bootedSlot: 'A' },
    });
    expect(((await poll.json()) as { status: string }).status).toBe('update');
    const fetchedAt = async () =>
      (
        await tdb.database.db
          .select({ at: schema.rolloutDevices.blobsFetchedAt })
          .from(schema.rolloutDevices)
          .where(eq(schema.rolloutDevices.deviceId, device.id))
      )[0]?.at;
    const url = `/v1/device/blobs/sha256/${release.artifactDigest.slice('sha256:'.length)}`;

    for (const range of ['bytes=-0', 'bytes=999999-']) {
      const refused = await h.request(url, { token: await device.token(), headers: { range } });
      expect(refused.status).toBe(416);
      expect(await fetchedAt()).toBeNull();
    }

    const served = await h.request(url, { token: await device.token(), headers: { range: 'bytes=0-9' } });
    expect(served.status).toBe(206);
    expect((await served.arrayBuffer()).byteLength).toBe(10);
    expect(await fetchedAt()).toBeInstanceOf(Date);
  });
});
