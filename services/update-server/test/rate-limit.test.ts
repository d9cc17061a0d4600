// Issue #16 defect 4: registration and every device route are rate-limited per source address
// and per device (429 + Retry-After). The source address is the connection's peer, which
// @hono/node-server hands the app in c.env.incoming; these requests carry one the same way.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRateSpec, TokenBuckets } from '../src/rate-limit.js';
import {
  createHarness,
  createProduct,
  createProvisioningToken,
  deviceKeyPair,
  type Harness,
  makeProduct,
  openTestBlobStore,
  openTestDatabase,
  type ProductKeys,
  registerDevice,
  type TestBlobStore,
  type TestDatabase,
} from './harness.js';

describe('token buckets', () => {
  it('allows a burst, then one request per refill interval, and says how long to wait', () => {
    let now = 0;
    const buckets = new TokenBuckets({ burst: 3, periodSeconds: 30 }, { now: () => now });
    expect([buckets.take('a'), buckets.take('a'), buckets.take('a')]).toEqual([0, 0, 0]);
    expect(buckets.take('a')).toBe(10); // one token per 10 s
    expect(buckets.take('b')).toBe(0); // keys are independent
    now += 9_000;
    expect(buckets.take('a')).toBe(1);
    now += 1_000;
    expect(buckets.take('a')).toBe(0);
  });

  it('keeps at most maxKeys buckets (the least recently used is dropped)', () => {
    const buckets = new TokenBuckets({ burst: 1, periodSeconds: 60 }, { maxKeys: 2, now: () => 0 });
    expect(buckets.take('a')).toBe(0);
    expect(buckets.take('b')).toBe(0);
    expect(buckets.take('c')).toBe(0); // drops a
    expect(buckets.take('a')).toBe(0);
    expect(buckets.take('c')).toBeGreaterThan(0);
  });

  it('parses "<requests>/<seconds>" and 0', () => {
    expect(parseRateSpec('20/60')).toEqual({ burst: 20, periodSeconds: 60 });
    expect(parseRateSpec('0')).toEqual({ burst: 0, periodSeconds: 60 });
    expect(parseRateSpec('20/0')).toBeUndefined();
    expect(parseRateSpec('fast')).toBeUndefined();
  });
});

describe('rate limits on the device API', () => {
  let tdb: TestDatabase;
  let tblobs: TestBlobStore;
  let h: Harness;
  let keys: ProductKeys;

  beforeAll(async () => {
    tdb = await openTestDatabase('pglite');
    tblobs = await openTestBlobStore('fs');
    h = await createHarness(tdb.database, tblobs.blobs, {
      rateLimits: {
        registerPerSource: { burst: 3, periodSeconds: 60 },
        devicePerSource: { burst: 8, periodSeconds: 60 },
        perDevice: { burst: 4, periodSeconds: 60 },
        signInPerSource: { burst: 0, periodSeconds: 60 },
        signInTotal: { burst: 0, periodSeconds: 60 },
      },
    });
    keys = await makeProduct('eflow-vm');
    await createProduct(h, keys);
  });
  afterAll(async () => {
    await tdb?.dispose();
    await tblobs?.dispose();
  });

  const from = (remoteAddress: string) => ({ incoming: { socket: { remoteAddress } } });
  const register = async (token: string, address: string) => {
    const { publicJwk } = await deviceKeyPair();
    return h.app.request(
      '/v1/device/register',
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          token,
          publicKeyJwk: publicJwk,
          product: keys.product,
          hardware: 'hyperv-x64',
        }),
      },
      from(address),
    );
  };
  const poll = async (token: string, address: string) =>
    h.app.request(
      '/v1/device/poll',
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ version: '1.0.0', bootedSlot: 'A' }),
      },
      from(address),
    );

  it('answers 429 with Retry-After after 3 registrations from one address; others and loopback go on', async () => {
    const token = await createProvisioningToken(h, keys.product, { maxUses: 100 });
    for (let i = 0; i < 3; i++) expect((await register(token, '203.0.113.7')).status).toBe(201);
    const refused = await register(token, '203.0.113.7');
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('ERR_RATE_LIMITED');
    expect((await register(token, '198.51.100.9')).status).toBe(201);
    // A reverse proxy on the same host: every device looks like 127.0.0.1, so no per-address limit.
    for (let i = 0; i < 4; i++) expect((await register(token, '127.0.0.1')).status).toBe(201);
    const metrics = await (await h.request('/metrics', { key: h.adminKey })).text();
    expect(metrics).toMatch(/abota_rate_limited_total\{limit="register"\} 1/);
  });

  it('limits one device (whatever its address) and one address (whatever its devices)', async () => {
    const token = await createProvisioningToken(h, keys.product);
    const a = await registerDevice(h, keys.product, token);
    const b = await registerDevice(h, keys.product, token);
    // Device a from four addresses: its own bucket of 4 runs out.
    for (let i = 0; i < 4; i++) expect((await poll(await a.token(), `192.0.2.${i + 1}`)).status).toBe(200);
    const limited = await poll(await a.token(), '192.0.2.99');
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBe(15);
    // Device b from 192.0.2.1 still gets through; then that address's bucket of 8 runs out
    // (1 poll of a + 3 of b + 4 of c), whichever device asks.
    const c = await registerDevice(h, keys.product, token);
    for (let i = 0; i < 3; i++) expect((await poll(await b.token(), '192.0.2.1')).status).toBe(200);
    for (let i = 0; i < 4; i++) expect((await poll(await c.token(), '192.0.2.1')).status).toBe(200);
    const shared = await poll(await b.token(), '192.0.2.1');
    expect(shared.status).toBe(429);
    expect(((await shared.json()) as { error: { message: string } }).error.message).toMatch(/address/);
  });
});
