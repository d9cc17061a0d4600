// Operational endpoints: liveness and readiness (database and blob store reachable),
// unauthenticated and cheap, exposing no fleet data; and Prometheus metrics, which name products
// and routes: on this listener they need an API key of any role (Prometheus sends it with
// `authorization: { credentials: abk_... }`), or they are served without one on a separate
// listener, ABOTA_METRICS_LISTEN (metricsApp below, started by server.ts).
import { Hono } from 'hono';
import { sql } from 'drizzle-orm';
import { requireRole, ROLE_GROUPS } from '../auth/api-keys.js';
import type { AppDeps } from '../context.js';
import { errorBody } from '../errors.js';
import type { Metrics } from '../metrics.js';
import { createRouter } from './router.js';

export function opsRoutes(deps: AppDeps, pingDatabase: (() => Promise<void>) | undefined) {
  const ping =
    pingDatabase ??
    (async () => {
      await deps.db.execute(sql`select 1`);
    });

  return createRouter()
    .get('/healthz', (c) => c.json({ status: 'ok' }))
    .get('/readyz', async (c) => {
      const [database, blobStore] = await Promise.allSettled([ping(), deps.blobs.check()]);
      if (database.status === 'fulfilled' && blobStore.status === 'fulfilled') {
        return c.json({ status: 'ready', database: 'ok', blobStore: 'ok' });
      }
      const failing = [
        database.status === 'rejected' ? 'database' : undefined,
        blobStore.status === 'rejected' ? 'blob store' : undefined,
      ]
        .filter((x) => x !== undefined)
        .join(' and ');
      deps.logger.warn({ database: database.status, blobStore: blobStore.status }, 'not ready');
      return c.json(errorBody('ERR_UNAVAILABLE', `not ready: ${failing} unreachable`), 503);
    })
    .get('/metrics', requireRole(deps, ROLE_GROUPS.read), (c) => {
      c.header('content-type', 'text/plain; version=0.0.4; charset=utf-8');
      return c.body(deps.metrics.render());
    });
}

/** The metrics listener's whole app: GET /metrics, no credentials (bind it where only Prometheus reaches). */
export function metricsApp(metrics: Metrics): Hono {
  return new Hono()
    .get('/metrics', (c) => {
      c.header('content-type', 'text/plain; version=0.0.4; charset=utf-8');
      return c.body(metrics.render());
    })
    .notFound((c) => c.json(errorBody('ERR_NOT_FOUND', 'this listener serves GET /metrics only'), 404));
}
