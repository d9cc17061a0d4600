// Issue #16 defect 5: NUL bytes, malformed cursors and absurdly deep JSON must be refused with a
// specific 400 — never reach PostgreSQL (which rejects U+0000 in text and jsonb: a 500) or
// overflow the stack. Every case here answered 500 before the fix.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createHarness,
  createProduct,
  createProvisioningToken,
  DB_BACKENDS,
  deviceKeyPair,
  type Harness,
  makeProduct,
  makeRelease,
  openTestBlobStore,
  openTestDatabase,
  type ProductKeys,
  pushRelease,
  registerDevice,
  type TestBlobStore,
  type TestDatabase,
  type TestDevice,
} from './harness.js';

type ErrorBody = { error: { code: string; message: string } };
const NUL = '\u0000';

describe.each(DB_BACKENDS)('malformed input on %s', (backend) => {
  let tdb: TestDatabase;
  let tblobs: TestBlobStore;
  let h: Harness;
  let keys: ProductKeys;
  let device: TestDevice;
  let releaseId: string;

  beforeAll(async () => {
    tdb = await openTestDatabase(backend);
    tblobs = await openTestBlobStore('fs');
    h = await createHarness(tdb.database, tblobs.blobs);
    keys = await makeProduct('eflow-vm');
    await createProduct(h, keys);
    device = await registerDevice(h, keys.product, await createProvisioningToken(h, keys.product));
    releaseId = await pushRelease(h, await makeRelease(keys, '1.0.0'));
  });
  afterAll(async () => {
    await tdb?.dispose();
    await tblobs?.dispose();
  });

  const expect400 = async (res: Response, field: string) => {
    const body = (await res.json()) as ErrorBody;
    expect({ status: res.status, code: body.error.code }).toEqual({ status: 400, code: 'ERR_VALIDATION' });
    expect(body.error.message).toContain(field);
    return body;
  };

  it('refuses a NUL in a report message', async () => {
    const res = await h.request('/v1/device/report', {
      method: 'POST',
      token: await device.token(),
      json: { version: '1.0.0', state: 'downloading', message: `bad${NUL}byte` },
    });
    const body = await expect400(res, 'message');
    expect(body.error.message).toMatch(/NUL/);
  });

  it('refuses a NUL in a poll version', async () => {
    const res = await h.request('/v1/device/poll', {
      method: 'POST',
      token: await device.token(),
      json: { version: `1.0${NUL}`, bootedSlot: 'A' },
    });
    await expect400(res, 'version');
  });

  it('refuses a NUL in register attributes (key or value)', async () => {
    const token = await createProvisioningToken(h, keys.product);
    for (const attributes of [{ site: `a${NUL}b` }, { [`k${NUL}`]: 'v' }]) {
      const { publicJwk } = await deviceKeyPair();
      const res = await h.request('/v1/device/register', {
        method: 'POST',
        json: { token, publicKeyJwk: publicJwk, product: keys.product, hardware: 'hyperv-x64', attributes },
      });
      await expect400(res, 'attributes');
    }
  });

  it('refuses a NUL in device-list filters', async () => {
    for (const filter of ['version', 'installState']) {
      const res = await h.request(`/v1/admin/devices?${filter}=x%00y`, { key: h.adminKey });
      await expect400(res, filter);
    }
  });

  it('refuses a NUL in a rollout name and a yank reason', async () => {
    const rollout = await h.request('/v1/admin/rollouts', {
      method: 'POST',
      key: h.adminKey,
      json: { releaseId, name: `canary${NUL}`, start: false },
    });
    await expect400(rollout, 'name');
    const yank = await h.request(`/v1/admin/releases/${releaseId}/yank`, {
      method: 'POST',
      key: h.adminKey,
      json: { reason: `broken${NUL}` },
    });
    await expect400(yank, 'reason');
  });

  it('refuses a cursor that decodes to 36 dashes (or any non-UUID)', async () => {
    const cursor = Buffer.from('-'.repeat(36)).toString('base64url');
    for (const path of ['/v1/admin/devices', '/v1/admin/releases', '/v1/admin/rollouts']) {
      const res = await h.request(`${path}?cursor=${cursor}`, { key: h.adminKey });
      await expect400(res, 'cursor');
    }
  });

  it('refuses a 200k-deep trustRoot without overflowing the stack', async () => {
    const depth = 200_000;
    const deep = `${'['.repeat(depth)}${']'.repeat(depth)}`;
    for (const [method, path, body, status, code] of [
      ['POST', '/v1/admin/products', `{"id":"deep","trustRoot":${deep}}`, 400, 'ERR_VALIDATION'],
      [
        'PUT',
        `/v1/admin/products/${keys.product}/trust-root`,
        `{"trustRoot":${deep}}`,
        400,
        'ERR_VALIDATION',
      ],
      // As root.json text: the JWS parser refuses it (no "payload") before walking it.
      [
        'POST',
        '/v1/admin/products',
        `{"id":"deep","trustRoot":${JSON.stringify(deep)}}`,
        422,
        'ERR_JWS_MALFORMED',
      ],
    ] as const) {
      const res = await h.request(path, {
        method,
        key: h.adminKey,
        headers: { 'content-type': 'application/json' },
        body,
      });
      const err = (await res.json()) as ErrorBody;
      expect({ status: res.status, code: err.error.code }, `${method} ${path}`).toEqual({ status, code });
    }
  });
});
