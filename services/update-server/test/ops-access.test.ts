// Issue #16 defect 8: /metrics (it names products) was open to anyone who reaches the server,
// and any API key, viewer included, could download any blob through the device route. Now
// /metrics needs an API key on the main listener or is served on its own listener
// (ABOTA_METRICS_LISTEN, e.g. 127.0.0.1:9464); blob contents need a publisher or admin key.
import { createHash, randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { makeTempDir } from '@abota/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, loadConfig, type RunningServer, startServer } from '../src/index.js';

describe('metrics listener and blob access by role', () => {
  let dir: string;
  let running: RunningServer;
  let adminKey: string;
  beforeAll(async () => {
    dir = await makeTempDir('abota-server-ops-');
    running = await startServer({
      config: loadConfig({ ABOTA_DATA_DIR: dir, ABOTA_PORT: '0' }, ['--metrics-listen', '127.0.0.1:0']),
      logger: createLogger({ level: 'silent' }),
    });
    adminKey = running.generatedAdminKey ?? '';
  });
  afterAll(async () => {
    await running?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves /metrics without credentials only on the metrics listener', async () => {
    expect(running.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(running.metricsUrl).not.toBe(running.url);
    await fetch(`${running.url}/healthz`);
    const open = await fetch(`${running.metricsUrl}/metrics`);
    expect(open.status).toBe(200);
    expect(await open.text()).toContain(
      'abota_http_requests_total{method="GET",route="/healthz",status="200"}',
    );
    // Nothing else is served there.
    expect((await fetch(`${running.metricsUrl}/v1/admin/products`)).status).toBe(404);
    expect((await fetch(`${running.metricsUrl}/healthz`)).status).toBe(404);
    // The main listener still answers /metrics, to an API key only.
    const refused = await fetch(`${running.url}/metrics`);
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('ERR_UNAUTHENTICATED');
  });

  it('lets publisher and admin keys download blob contents, not viewer or operator keys', async () => {
    const blob = new Uint8Array(randomBytes(1024));
    const hex = createHash('sha256').update(blob).digest('hex');
    const admin = (path: string, init: RequestInit = {}) =>
      fetch(`${running.url}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${adminKey}`, ...(init.headers ?? {}) },
      });
    expect(
      (
        await admin(`/v1/admin/blobs/sha256/${hex}`, {
          method: 'PUT',
          headers: { 'content-type': 'application/octet-stream' },
          body: blob,
        })
      ).status,
    ).toBe(201);
    const keyOf = async (role: string) => {
      const res = await admin('/v1/admin/api-keys', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: role, role }),
      });
      return ((await res.json()) as { key: string }).key;
    };
    const download = async (key: string) =>
      fetch(`${running.url}/v1/device/blobs/sha256/${hex}`, { headers: { authorization: `Bearer ${key}` } });
    for (const role of ['viewer', 'operator']) {
      const res = await download(await keyOf(role));
      expect(res.status, role).toBe(403);
      expect(((await res.json()) as { error: { message: string } }).error.message).toContain(role);
    }
    for (const key of [await keyOf('publisher'), adminKey]) {
      const res = await download(key);
      expect(res.status).toBe(200);
      expect(new Uint8Array(await res.arrayBuffer())).toEqual(blob);
    }
    // Presence and size stay readable by any role.
    const viewer = await keyOf('viewer');
    const head = await fetch(`${running.url}/v1/admin/blobs/sha256/${hex}`, {
      method: 'HEAD',
      headers: { authorization: `Bearer ${viewer}` },
    });
    expect(head.status).toBe(200);
  });
});
