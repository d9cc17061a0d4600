// The process wiring: startServer with the embedded default (PGlite + filesystem blobs under a
// data directory) on a real loopback socket — health, readiness, metrics, OpenAPI and docs, the
// bootstrap admin key printed once, graceful close, and data surviving a restart.
import { rm, writeFile } from 'node:fs/promises';
import { makeTempDir } from '@abota/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, loadConfig, type RunningServer, startServer } from '../src/index.js';

describe('abota-server with the embedded default', () => {
  let dir: string;
  let running: RunningServer;
  beforeAll(async () => {
    dir = await makeTempDir('abota-server-');
    running = await startServer({
      config: loadConfig({ ABOTA_DATA_DIR: dir, ABOTA_PORT: '0' }),
      logger: createLogger({ level: 'silent' }),
    });
  });
  afterAll(async () => {
    await running?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves health, readiness, metrics, the OpenAPI document and the docs page', async () => {
    expect(running.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await (await fetch(`${running.url}/healthz`)).json()).toEqual({ status: 'ok' });
    expect(await (await fetch(`${running.url}/readyz`)).json()).toEqual({
      status: 'ready',
      database: 'ok',
      blobStore: 'ok',
    });
    // /metrics names products and routes: an API key of any role on this listener.
    expect((await fetch(`${running.url}/metrics`)).status).toBe(401);
    const metrics = await (
      await fetch(`${running.url}/metrics`, {
        headers: { authorization: `Bearer ${running.generatedAdminKey}` },
      })
    ).text();
    expect(metrics).toContain('abota_http_requests_total{method="GET",route="/healthz",status="200"} 1');
    expect(metrics).toContain('# TYPE abota_http_request_duration_seconds histogram');
    const doc = (await (await fetch(`${running.url}/openapi.json`)).json()) as {
      openapi: string;
      paths: Record<string, unknown>;
    };
    expect(doc.openapi).toBe('3.1.0');
    for (const path of [
      '/v1/device/register',
      '/v1/device/poll',
      '/v1/device/report',
      '/v1/device/blobs/sha256/{hex}',
      '/v1/admin/releases',
      '/v1/admin/rollouts/{id}/pause',
    ]) {
      expect(Object.keys(doc.paths)).toContain(path);
    }
    const docs = await (await fetch(`${running.url}/docs`)).text();
    expect(docs).toContain('/v1/device/poll');
    expect(docs).not.toMatch(/<script[^>]+src=/);
  });

  it('creates a bootstrap admin key on first start only, and keeps data across a restart', async () => {
    const key = running.generatedAdminKey;
    expect(key).toMatch(/^abk_[A-Za-z0-9_-]{43}$/);
    const res = await fetch(`${running.url}/v1/admin/api-keys`, {
      headers: { authorization: `Bearer ${key}` },
    });
    expect(res.status).toBe(200);
    await running.close();
    running = await startServer({
      config: loadConfig({ ABOTA_DATA_DIR: dir, ABOTA_PORT: '0' }),
      logger: createLogger({ level: 'silent' }),
    });
    expect(running.generatedAdminKey).toBeUndefined();
    const again = await fetch(`${running.url}/v1/admin/api-keys`, {
      headers: { authorization: `Bearer ${key}` },
    });
    expect(again.status).toBe(200);
  });

  it('refuses a second server on its data directory in the same process too (ERR_DATA_DIR_LOCKED)', async () => {
    await expect(
      startServer({
        config: loadConfig({ ABOTA_DATA_DIR: dir, ABOTA_PORT: '0' }),
        logger: createLogger({ level: 'silent' }),
      }),
    ).rejects.toMatchObject({
      code: 'ERR_DATA_DIR_LOCKED',
      message: expect.stringContaining(`pid ${process.pid}`),
    });
  });

  it('reports not ready when the blob store is unusable', async () => {
    // A plain file where the blob directory should be: the store cannot create or write it.
    await rm(`${dir}/blobs`, { recursive: true, force: true });
    await writeFile(`${dir}/blobs`, 'not a directory');
    const res = await fetch(`${running.url}/readyz`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/blob store/);
  });
});
