// A lone UTF-16 surrogate in a request string (JSON "\ud83d": JSON.parse accepts it) must be
// refused with 400 ERR_VALIDATION: stored in jsonb (the audit log, device attributes) PostgreSQL
// rejects the escape and the request failed with a 500 (found by the OpenAPI fuzz,
// test/fuzz/openapi-fuzz.test.ts, ABOTA_FUZZ_SEED=6: a yank reason). A surrogate pair (an emoji)
// is well-formed and still accepted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createHarness,
  createProduct,
  DB_BACKENDS,
  type Harness,
  makeProduct,
  makeRelease,
  openTestBlobStore,
  openTestDatabase,
  pushRelease,
  startRollout,
  type TestBlobStore,
  type TestDatabase,
} from './harness.js';

type ErrorBody = { error: { code: string; message: string } };
const LONE = '\ud83d';

describe.each(DB_BACKENDS)('lone surrogates on %s', (backend) => {
  let tdb: TestDatabase;
  let tblobs: TestBlobStore;
  let h: Harness;
  let releaseId: string;
  let rolloutId: string;

  beforeAll(async () => {
    tdb = await openTestDatabase(backend);
    tblobs = await openTestBlobStore('fs');
    h = await createHarness(tdb.database, tblobs.blobs);
    const keys = await makeProduct('eflow-vm');
    await createProduct(h, keys);
    releaseId = await pushRelease(h, await makeRelease(keys, '1.0.0'));
    rolloutId = await startRollout(h, releaseId);
  });
  afterAll(async () => {
    await tdb?.dispose();
    await tblobs?.dispose();
  });

  const refused = async (path: string, json: unknown) => {
    const res = await h.request(path, { method: 'POST', key: h.adminKey, json });
    const body = (await res.json()) as ErrorBody;
    expect({ status: res.status, code: body.error.code }).toEqual({ status: 400, code: 'ERR_VALIDATION' });
    expect(body.error.message).toMatch(/surrogate/);
  };

  it('refuses one in a yank reason, an API key name and a rollout pause or abort reason', async () => {
    await refused(`/v1/admin/releases/${releaseId}/yank`, { reason: `bad${LONE}` });
    await refused('/v1/admin/api-keys', { name: `k${LONE}`, role: 'viewer' });
    await refused(`/v1/admin/rollouts/${rolloutId}/pause`, { reason: LONE });
    await refused(`/v1/admin/rollouts/${rolloutId}/abort`, { reason: `${LONE}x` });
  });

  it('accepts a surrogate pair', async () => {
    const res = await h.request('/v1/admin/api-keys', {
      method: 'POST',
      key: h.adminKey,
      json: { name: 'key \u{1f4a5}', role: 'viewer' },
    });
    expect(res.status).toBe(201);
  });
});
