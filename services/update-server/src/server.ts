// Wires a ServerConfig into a running process: opens the database (PGlite in the data directory
// by default, PostgreSQL with DATABASE_URL), the blob store (filesystem by default, S3 with
// ABOTA_S3_BUCKET), makes sure an admin key exists, listens, prunes expired JWT ids, and shuts
// down in order (stop accepting, drain, close the database) on close().
import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { type BlobStore, FsBlobStore, S3BlobStore } from '@abota/blobstore';
import { createServer, type RequestListener, type ServerOptions } from 'node:http';
import { serve } from '@hono/node-server';
import { type App, createApp } from './app.js';
import { bootstrapAdminKey } from './auth/api-keys.js';
import type { ServerConfig } from './config.js';
import { type Clock, systemClock } from './context.js';
import { type DataDirLock, lockDataDir } from './data-dir-lock.js';
import { type Database, openDatabase } from './db/database.js';
import type { Logger } from './logger.js';
import { gcUploadSessions, pruneUsedJwtIds } from './maintenance.js';
import { LoadGate, preParse } from './load-gate.js';
import { Metrics } from './metrics.js';
import { metricsApp } from './routes/ops.js';
import { RolloutEngine } from './rollout/engine.js';

export interface RunningServer {
  app: App;
  database: Database;
  blobs: BlobStore;
  /** The bound address, e.g. http://127.0.0.1:8080 */
  url: string;
  /** The metrics listener's address when ABOTA_METRICS_LISTEN is set. */
  metricsUrl: string | undefined;
  /** Rollout runtime: evaluates stages on a timer, listens for other replicas' changes. */
  rollouts: RolloutEngine;
  /** A generated bootstrap admin key (only on the very first start without ABOTA_ADMIN_KEY). */
  generatedAdminKey: string | undefined;
  close(): Promise<void>;
}

const PRUNE_INTERVAL_MS = 60_000;
/** Idle upload sessions are looked for this often (a listing of the store's uploads/). */
const UPLOAD_GC_INTERVAL_MS = 10 * 60_000;
/** How often every replica evaluates running rollouts (transitions are race-safe, store.ts). */
const ROLLOUT_EVALUATION_INTERVAL_MS = 5_000;

async function listening(server: ReturnType<typeof serve>): Promise<string> {
  await new Promise<void>((ok, fail) => {
    server.once('listening', ok);
    server.once('error', fail);
  });
  const address = server.address() as AddressInfo;
  return `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
}

export async function startServer(options: {
  config: ServerConfig;
  logger: Logger;
  env?: Readonly<Record<string, string | undefined>>;
  clock?: Clock;
  /** Shed in node's request listener, before parsing (default); false leaves it to the app (bench/shed-cost.ts compares). */
  preParseShedding?: boolean;
}): Promise<RunningServer> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const dataDir = resolve(config.dataDir);
  // The embedded parts (PGlite, filesystem blobs) are single-writer: lock their directory first.
  const embedded = config.databaseUrl === undefined || config.s3 === undefined;
  let lock: DataDirLock | undefined;
  if (embedded) {
    await mkdir(dataDir, { recursive: true });
    lock = await lockDataDir(dataDir);
  }
  let database: Database;
  try {
    database =
      config.databaseUrl !== undefined
        ? await openDatabase({
            kind: 'postgres',
            url: config.databaseUrl,
            poolSize: config.databasePoolSize,
            ...(config.databaseConnectTimeoutMs === undefined
              ? {}
              : { connectTimeoutMs: config.databaseConnectTimeoutMs }),
            ...(config.databaseQueryTimeoutMs === undefined
              ? {}
              : { queryTimeoutMs: config.databaseQueryTimeoutMs }),
          })
        : await (async () => {
            await mkdir(join(dataDir, 'db'), { recursive: true });
            return openDatabase({ kind: 'pglite', dataDir: join(dataDir, 'db') });
          })();
  } catch (error) {
    await lock?.release();
    throw error;
  }
  const rollouts = new RolloutEngine({ db: database.db, clock, logger, listen: database.listen });
  try {
    let blobs: BlobStore;
    if (config.s3 !== undefined) {
      blobs = S3BlobStore.fromEnv(
        { ...(options.env ?? process.env) },
        { maxBlobSizeBytes: config.maxBlobSizeBytes },
      );
    } else {
      await mkdir(join(dataDir, 'blobs'), { recursive: true });
      blobs = new FsBlobStore(join(dataDir, 'blobs'), { maxBlobSizeBytes: config.maxBlobSizeBytes });
    }
    const generatedAdminKey = await bootstrapAdminKey({ db: database.db }, config.adminKey);
    await rollouts.start({ intervalMs: ROLLOUT_EVALUATION_INTERVAL_MS });
    const metrics = new Metrics();
    const loadGate = new LoadGate(config.maxRequestsInFlight);
    const app = createApp({
      loadGate,
      db: database.db,
      blobs,
      clock,
      config,
      logger,
      rollouts,
      metrics,
      pingDatabase: () => database.ping(),
    });
    const server = serve({
      fetch: app.fetch,
      hostname: config.host,
      port: config.port,
      // Shed before node's request becomes a fetch Request (load-gate.ts).
      createServer: ((serverOptions: ServerOptions, listener: RequestListener) =>
        createServer(
          serverOptions,
          options.preParseShedding === false
            ? listener
            : preParse(loadGate, () => metrics.shed.inc(), listener),
        )) as typeof createServer,
    });
    const url = await listening(server);
    let metricsServer: typeof server | undefined;
    let metricsUrl: string | undefined;
    if (config.metricsListen !== undefined) {
      metricsServer = serve({
        fetch: metricsApp(metrics).fetch,
        hostname: config.metricsListen.host,
        port: config.metricsListen.port,
      });
      try {
        metricsUrl = await listening(metricsServer);
      } catch (error) {
        server.close();
        throw error;
      }
    }
    const pruner = setInterval(() => {
      pruneUsedJwtIds(database.db, clock.now()).catch((error: unknown) => {
        logger.warn(
          { err: { message: error instanceof Error ? error.message : String(error) } },
          'pruning used JWT ids failed',
        );
      });
    }, PRUNE_INTERVAL_MS);
    pruner.unref();
    const uploadGc = setInterval(() => {
      gcUploadSessions(blobs, clock.now(), config.uploadSessionIdleSeconds)
        .then((removed) => {
          if (removed > 0) logger.info({ removed }, 'removed idle upload sessions');
        })
        .catch((error: unknown) => {
          logger.warn(
            { err: { message: error instanceof Error ? error.message : String(error) } },
            'removing idle upload sessions failed',
          );
        });
    }, UPLOAD_GC_INTERVAL_MS);
    uploadGc.unref();
    logger.info(
      {
        url,
        metricsUrl,
        database: database.kind,
        blobStore: config.s3 !== undefined ? 's3' : 'fs',
        dataDir: config.databaseUrl === undefined || config.s3 === undefined ? dataDir : undefined,
      },
      'abota-server listening',
    );
    let closing: Promise<void> | undefined;
    return {
      app,
      database,
      blobs,
      url,
      metricsUrl,
      rollouts,
      generatedAdminKey,
      close: () => {
        closing ??= (async () => {
          clearInterval(pruner);
          clearInterval(uploadGc);
          await rollouts.stop();
          if (metricsServer !== undefined) {
            const m = metricsServer;
            await new Promise<void>((ok) => m.close(() => ok()));
          }
          await new Promise<void>((ok) => {
            const timer = setTimeout(() => {
              // Drain deadline passed: cut keep-alive and in-flight connections.
              if ('closeAllConnections' in server) server.closeAllConnections();
            }, config.shutdownTimeoutMs);
            timer.unref();
            server.close(() => {
              clearTimeout(timer);
              ok();
            });
            if ('closeIdleConnections' in server) server.closeIdleConnections();
          });
          await database.close();
          await lock?.release();
        })();
        return closing;
      },
    };
  } catch (error) {
    await rollouts.stop().catch(() => {});
    await database.close();
    await lock?.release();
    throw error;
  }
}
