// Operational endpoints: liveness, readiness (database and blob store reachable) and
// Prometheus metrics. Unauthenticated and cheap; they expose no fleet data.
import { sql } from 'drizzle-orm';
import type { AppDeps } from '../context.js';
import { errorBody } from '../errors.js';
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
    .get('/metrics', (c) => {
      c.header('content-type', 'text/plain; version=0.0.4; charset=utf-8');
      return c.body(deps.metrics.render());
    });
}
