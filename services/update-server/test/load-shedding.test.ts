// Issue #16 "load shedding": each replica admits at most ABOTA_MAX_IN_FLIGHT requests at once
// to the APIs; a burst beyond that is answered 503 + Retry-After at once (spread over 1-5 s)
// instead of queueing behind the database, and the operational routes keep answering.
import { rm } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { makeTempDir } from '@abota/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, loadConfig, startServer } from '../src/index.js';
import { LoadGate, preParse } from '../src/load-gate.js';
import {
  createHarness,
  createProduct,
  createProvisioningToken,
  type Harness,
  makeProduct,
  openTestBlobStore,
  openTestDatabase,
  registerDevice,
  type TestBlobStore,
  type TestDatabase,
  type TestDevice,
} from './harness.js';

describe('load shedding', () => {
  let tdb: TestDatabase;
  let tblobs: TestBlobStore;
  let h: Harness;
  let device: TestDevice;

  beforeAll(async () => {
    tdb = await openTestDatabase('pglite');
    tblobs = await openTestBlobStore('fs');
    h = await createHarness(tdb.database, tblobs.blobs, { maxRequestsInFlight: 4 });
    const keys = await makeProduct('eflow-vm');
    await createProduct(h, keys);
    device = await registerDevice(h, keys.product, await createProvisioningToken(h, keys.product));
  });
  afterAll(async () => {
    await tdb?.dispose();
    await tblobs?.dispose();
  });

  const poll = (token: string) =>
    h.request('/v1/device/poll', { method: 'POST', token, json: { version: '1.0.0', bootedSlot: 'A' } });

  it('admits 4 of a burst of 40 polls, answers the rest 503 with Retry-After, and recovers', async () => {
    const tokens = await Promise.all(Array.from({ length: 40 }, () => device.token()));
    const [answers, health] = await Promise.all([Promise.all(tokens.map(poll)), h.request('/healthz')]);
    expect(health.status).toBe(200);
    const statuses = answers.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(4);
    const shed = answers.filter((r) => r.status === 503);
    expect(shed).toHaveLength(36);
    for (const r of shed) {
      const retryAfter = Number(r.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(5);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('ERR_UNAVAILABLE');
    }
    // Nothing is left counted in flight: the next calls are all admitted.
    for (let i = 0; i < 6; i++) expect((await poll(await device.token())).status).toBe(200);
    const metrics = await (await h.request('/metrics', { key: h.adminKey })).text();
    expect(metrics).toMatch(/^abota_requests_shed_total 36$/m);
  });
});

describe('load shedding in abota-server, before the request is parsed into the app', () => {
  it('with 2 uploads in flight (limit 2): the API is refused 503 + Retry-After, /healthz answers, and all is admitted after', async () => {
    const dir = await makeTempDir('abota-shed-');
    const running = await startServer({
      config: loadConfig({ ABOTA_DATA_DIR: dir, ABOTA_PORT: '0', ABOTA_MAX_IN_FLIGHT: '2' }),
      logger: createLogger({ level: 'silent' }),
    });
    const key = running.generatedAdminKey ?? '';
    const url = new URL(running.url);
    try {
      // Two blob uploads whose bodies have not finished hold the two places.
      const uploads = [1, 2].map((n) => {
        const req = request({
          host: url.hostname,
          port: url.port,
          method: 'PUT',
          path: `/v1/admin/blobs/sha256/${String(n).repeat(64)}`,
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream' },
        });
        const answered = new Promise<number>((resolve, reject) => {
          req.on('response', (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          });
          req.on('error', reject);
        });
        req.write('some bytes, more to come');
        return { req, answered };
      });
      const products = () =>
        fetch(`${running.url}/v1/admin/products`, { headers: { authorization: `Bearer ${key}` } });
      let refused: Response | undefined;
      for (let i = 0; i < 50 && refused === undefined; i++) {
        const res = await products();
        if (res.status === 503) refused = res;
        else await new Promise((r) => setTimeout(r, 50)); // the uploads are still getting in
      }
      expect(refused?.status).toBe(503);
      const retryAfter = Number(refused?.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(5);
      expect(((await (refused as Response).json()) as { error: { code: string } }).error.code).toBe(
        'ERR_UNAVAILABLE',
      );
      expect((await fetch(`${running.url}/healthz`)).status).toBe(200);
      // The uploads end (with a body that is not the named blob: refused 422, but answered) and free their places.
      for (const u of uploads) u.req.end();
      for (const u of uploads) expect(await u.answered).toBe(422);
      for (let i = 0; i < 4; i++) expect((await products()).status).toBe(200);
    } finally {
      await running.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('preParse', () => {
  it('never hands a request to the app while the gate is full, and passes non-API paths through', async () => {
    const gate = new LoadGate(1);
    const seen: string[] = [];
    let shed = 0;
    const server = createServer(
      preParse(
        gate,
        () => shed++,
        (req, res) => {
          seen.push(req.url ?? '');
          res.end('ok');
        },
      ),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      expect((await fetch(`${base}/v1/a`)).status).toBe(200);
      gate.inFlight = 1;
      const refused = await fetch(`${base}/v1/b`, { method: 'POST', body: 'x'.repeat(100_000) });
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toMatch(/^[1-5]$/);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      gate.inFlight = 0;
      expect((await fetch(`${base}/v1/c`)).status).toBe(200);
      expect(seen).toEqual(['/v1/a', '/healthz', '/v1/c']);
      expect(shed).toBe(1);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
