// Issue #16 "outage": while PostgreSQL or the S3 endpoint cannot be reached the server answers
// 503 + Retry-After (ERR_UNAVAILABLE), not 500, and answers normally again once it is back. The
// database is reached through a loopback relay that is cut (the shared PostgreSQL keeps running).
import { S3Client } from '@aws-sdk/client-s3';
import { FsBlobStore, S3BlobStore } from '@abota/blobstore';
import { makeTempDir, TcpOutageProxy } from '@abota/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Database, type DatabaseOptions, openDatabase } from '../src/db/database.js';
import { backendUnavailable } from '../src/unavailable.js';
import { createHarness, openTestDatabase, type TestDatabase } from './harness.js';

async function expectOutage(res: Response): Promise<void> {
  expect(res.status).toBe(503);
  const retryAfter = Number(res.headers.get('retry-after'));
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(5);
  const text = await res.text(); // empty for HEAD
  if (text !== '')
    expect((JSON.parse(text) as { error: { code: string } }).error.code).toBe('ERR_UNAVAILABLE');
}

describe('backend outage', () => {
  let tdb: TestDatabase;
  let proxy: TcpOutageProxy;
  let proxied: Database;

  beforeAll(async () => {
    tdb = await openTestDatabase('postgres');
    const url = new URL(tdb.url ?? '');
    proxy = await TcpOutageProxy.start({ host: url.hostname, port: Number(url.port || 5432) });
    url.host = `127.0.0.1:${proxy.port}`;
    proxied = await openDatabase({ kind: 'postgres', url: url.toString(), poolSize: 2 });
  });
  /** The test database through a relay of its own (to silence), opened with short deadlines. */
  async function throughSilentProxy(
    options: Omit<Extract<DatabaseOptions, { kind: 'postgres' }>, 'kind' | 'url'>,
  ): Promise<{ silentProxy: TcpOutageProxy; db: Database }> {
    const silentProxy = await TcpOutageProxy.start(proxy.target);
    const url = new URL(tdb.url ?? '');
    url.host = `127.0.0.1:${silentProxy.port}`;
    return { silentProxy, db: await openDatabase({ kind: 'postgres', url: url.toString(), ...options }) };
  }
  afterAll(async () => {
    await proxy?.restore();
    await proxied?.close();
    await proxy?.close();
    await tdb?.dispose();
  });

  it('answers 503 + Retry-After while PostgreSQL is unreachable, and 200 once it is back', async () => {
    const h = await createHarness(proxied, new FsBlobStore(await makeTempDir('abota-outage-')));
    const list = () => h.request('/v1/admin/products', { key: h.adminKey });
    expect((await list()).status).toBe(200);
    await proxy.cut();
    for (let i = 0; i < 3; i++) await expectOutage(await list());
    expect(h.logs.some((l) => l.includes('backend unavailable'))).toBe(true);
    await proxy.restore();
    expect((await list()).status).toBe(200);
  });

  it('answers 503 + Retry-After within its deadlines when the network to PostgreSQL drops packets silently, and recovers', async () => {
    // Short deadlines for the test (defaults: connect 5 s, query 30 s).
    const { silentProxy, db } = await throughSilentProxy({
      poolSize: 2,
      connectTimeoutMs: 1000,
      queryTimeoutMs: 1500,
    });
    try {
      const h = await createHarness(db, new FsBlobStore(await makeTempDir('abota-silent-')));
      const list = () => h.request('/v1/admin/products', { key: h.adminKey });
      expect((await list()).status).toBe(200);
      silentProxy.silence();
      // Open connections go silent (query deadline) and new ones get no answer (connect deadline):
      // each request is answered 503 + Retry-After in seconds, none hangs.
      const started = performance.now();
      const answers = await Promise.all([list(), list(), list(), list()]);
      for (const res of answers) await expectOutage(res);
      expect(performance.now() - started).toBeLessThan(10_000);
      silentProxy.heal();
      let status = 0;
      for (let i = 0; i < 20 && status !== 200; i++) {
        status = (await list()).status;
        if (status !== 200) await new Promise((r) => setTimeout(r, 250));
      }
      expect(status).toBe(200);
    } finally {
      silentProxy.heal();
      await db.close();
      await silentProxy.close();
    }
  });

  it('finds a LISTEN connection whose network went silent by its heartbeat, reconnects, and hears notifications again', async () => {
    const { silentProxy, db } = await throughSilentProxy({
      poolSize: 1,
      connectTimeoutMs: 500,
      listenHeartbeatMs: 300,
    });
    const heard: (string | undefined)[] = [];
    const waitFor = async (what: string, ok: () => boolean): Promise<void> => {
      for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setTimeout(r, 100));
      if (!ok()) throw new Error(`timed out waiting for ${what}; heard ${JSON.stringify(heard)}`);
    };
    const stop = await db.listen('abota_outage_test', (payload) => heard.push(payload));
    try {
      const notify = (payload: string) =>
        tdb.database.db.execute(`select pg_notify('abota_outage_test', '${payload}')`);
      await notify('before');
      await waitFor('the first notification', () => heard.includes('before'));
      silentProxy.silence();
      // Without the heartbeat nothing would tell: no error, no data, the socket stays open.
      await waitFor('the lost-connection signal', () => heard.includes(undefined));
      const lost = heard.length;
      silentProxy.heal();
      // Reconnected: a second `undefined` (listeners reload), then notifications arrive again.
      await waitFor('the reconnect signal', () => heard.slice(lost).includes(undefined));
      await notify('after');
      await waitFor('a notification after reconnecting', () => heard.includes('after'));
    } finally {
      silentProxy.heal();
      await stop();
      await db.close();
      await silentProxy.close();
    }
  });

  it('answers 503 + Retry-After while the S3 endpoint is unreachable', async () => {
    const down = await TcpOutageProxy.start({ host: '127.0.0.1', port: 9 });
    await down.cut();
    const client = new S3Client({
      endpoint: `http://127.0.0.1:${down.port}`,
      region: 'us-east-1',
      forcePathStyle: true,
      maxAttempts: 1,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
    const h = await createHarness(proxied, new S3BlobStore({ client, bucket: 'abota', prefix: 'blobs/' }));
    const hex = 'ab'.repeat(32);
    await expectOutage(await h.request(`/v1/admin/blobs/sha256/${hex}`, { method: 'HEAD', key: h.adminKey }));
    client.destroy();
  });

  it('tells outages (socket and PostgreSQL connection codes, wrapped) from defects', () => {
    const pg = Object.assign(new Error('terminating connection due to administrator command'), {
      code: '57P01',
    });
    expect(backendUnavailable(new Error('Failed query', { cause: pg }))).toBe('57P01');
    expect(
      backendUnavailable(new AggregateError([Object.assign(new Error('x'), { code: 'ECONNREFUSED' })])),
    ).toBe('ECONNREFUSED');
    expect(backendUnavailable(new Error('Connection terminated unexpectedly'))).toBeDefined();
    expect(backendUnavailable(Object.assign(new Error('duplicate key'), { code: '23505' }))).toBeUndefined();
    expect(backendUnavailable(new TypeError('x is undefined'))).toBeUndefined();
  });
});
