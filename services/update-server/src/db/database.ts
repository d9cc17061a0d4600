// Opens the database the server runs on — embedded PGlite (a directory, or memory) or a real
// PostgreSQL through node-postgres — and applies the committed drizzle migrations to it.
// Both drivers are thin adapters over the same drizzle query builder, so the app sees one type.
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import pg from 'pg';
import * as schema from './schema.js';

export type Schema = typeof schema;
/** The drizzle database every module of the server works with, whatever the driver. */
export type Db = PgDatabase<PgQueryResultHKT, Schema>;

export interface Database {
  db: Db;
  kind: 'pglite' | 'postgres';
  /** Cheap round trip used by /readyz. */
  ping(): Promise<void>;
  /**
   * LISTEN on a channel (cache invalidation across replicas). `onMessage(undefined)` means
   * notifications may have been missed (the listening connection was re-established).
   * Resolves once listening; the returned function stops it.
   */
  listen(channel: string, onMessage: (payload: string | undefined) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/** The committed migration set (services/update-server/drizzle), next to src/ and dist/. */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../drizzle', import.meta.url));

export type DatabaseOptions =
  | { kind: 'pglite'; dataDir?: string /* undefined = in memory */ }
  | {
      kind: 'postgres';
      url: string;
      poolSize?: number;
      /** A connection attempt with no answer within this fails (default 5 s). */
      connectTimeoutMs?: number;
      /** A query with no answer within this fails and its connection is dropped (default 30 s). */
      queryTimeoutMs?: number;
      /**
       * The LISTEN connection sends `select 1` this often and drops itself when no answer comes
       * within the connect deadline (default 15 s): a network that went silent would otherwise
       * hold it open, notifications lost, until TCP gives up (minutes to hours).
       */
      listenHeartbeatMs?: number;
    };

/** The error a query past its deadline fails with (unavailable.ts answers it 503 + Retry-After). */
export const QUERY_DEADLINE_MESSAGE = 'PostgreSQL query deadline exceeded: connection dropped';

/**
 * A pg.Client whose queries have a deadline. node-postgres' own query_timeout rejects the query
 * but keeps the connection, so a pool could hand a connection whose peer went silent to the next
 * request; here the deadline destroys the socket instead: every query on it fails at once, and
 * the pool discards the client (not queryable) and opens a fresh one for the next request.
 */
function deadlineClient(timeoutMs: number): typeof pg.Client {
  return class DeadlineClient extends pg.Client {
    // biome-ignore lint/suspicious/noExplicitAny: pg.Client.query's overloads (promise, callback, submittable)
    override query(...args: any[]): any {
      const timer = setTimeout(() => {
        const stream = (this as unknown as { connection: { stream: { destroy(e: Error): void } } }).connection
          .stream;
        stream.destroy(new Error(QUERY_DEADLINE_MESSAGE));
      }, timeoutMs);
      timer.unref();
      const last = args.length - 1;
      if (typeof args[last] === 'function') {
        const callback = args[last] as (...r: unknown[]) => void;
        args[last] = (...r: unknown[]) => {
          clearTimeout(timer);
          callback(...r);
        };
        return (super.query as (...a: unknown[]) => unknown)(...args);
      }
      const result = (super.query as (...a: unknown[]) => unknown)(...args);
      if (result instanceof Promise) return result.finally(() => clearTimeout(timer));
      // A submittable (cursor, stream): it ends on its own events; the deadline still guards it.
      return result;
    }
  } as unknown as typeof pg.Client;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.kind === 'pglite') {
    const client = options.dataDir === undefined ? new PGlite() : new PGlite(options.dataDir);
    await client.waitReady;
    const db = drizzlePglite(client, { schema });
    try {
      await migratePglite(db, { migrationsFolder: MIGRATIONS_FOLDER });
    } catch (error) {
      await client.close();
      throw error;
    }
    return {
      db: db as unknown as Db,
      kind: 'pglite',
      ping: async () => {
        await client.query('select 1');
      },
      listen: (channel, onMessage) => client.listen(channel, (payload) => onMessage(payload)),
      close: () => client.close(),
    };
  }
  const connectionTimeoutMillis = options.connectTimeoutMs ?? 5000;
  // Migrations run on their own connection without a query deadline (an ALTER on a big table
  // may take long); the pool that serves requests has one.
  const migrator = new pg.Client({ connectionString: options.url, connectionTimeoutMillis });
  await migrator.connect();
  try {
    await migratePg(drizzlePg(migrator, { schema }), { migrationsFolder: MIGRATIONS_FOLDER });
  } finally {
    await migrator.end().catch(() => {});
  }
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis,
    keepAlive: true,
    Client: deadlineClient(options.queryTimeoutMs ?? 30_000),
  });
  // An idle client losing its connection must not crash the process; the next query reconnects.
  pool.on('error', () => {});
  const db = drizzlePg(pool, { schema });
  return {
    db: db as unknown as Db,
    kind: 'postgres',
    ping: async () => {
      await pool.query('select 1');
    },
    listen: (channel, onMessage) =>
      listenPg(options.url, channel, onMessage, {
        connectTimeoutMs: connectionTimeoutMillis,
        heartbeatMs: options.listenHeartbeatMs ?? 15_000,
      }),
    close: () => pool.end(),
  };
}

/**
 * A dedicated connection for LISTEN (a pooled one would be handed to other queries). When it
 * drops, it reconnects after a second and reports `undefined` so listeners reload everything.
 * A heartbeat with a deadline finds a connection whose network went silent (no error, no data).
 */
async function listenPg(
  url: string,
  channel: string,
  onMessage: (payload: string | undefined) => void,
  timing: { connectTimeoutMs: number; heartbeatMs: number },
): Promise<() => Promise<void>> {
  if (!/^[a-z_][a-z0-9_]*$/.test(channel))
    throw new Error(`LISTEN channel "${channel}" is not a plain identifier`);
  let client: pg.Client | undefined;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;
  const Client = deadlineClient(timing.connectTimeoutMs);
  const heartbeat = setInterval(() => {
    // A query past the deadline destroys the socket: the 'error' handler below reconnects.
    client?.query('select 1').catch(() => {});
  }, timing.heartbeatMs);
  heartbeat.unref();
  const connect = async (): Promise<void> => {
    const c = new Client({ connectionString: url, connectionTimeoutMillis: timing.connectTimeoutMs });
    c.on('notification', (n) => {
      if (n.channel === channel) onMessage(n.payload);
    });
    c.on('error', () => {
      if (stopped || client !== c) return;
      client = undefined;
      c.end().catch(() => {});
      onMessage(undefined);
      reconnectLater();
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${channel}`);
    } catch (error) {
      c.end().catch(() => {});
      throw error;
    }
    if (stopped) await c.end();
    else client = c;
  };
  const reconnectLater = (): void => {
    if (stopped) return;
    retry = setTimeout(() => {
      connect().then(() => onMessage(undefined), reconnectLater);
    }, 1000);
    retry.unref();
  };
  try {
    await connect();
  } catch (error) {
    clearInterval(heartbeat);
    throw error;
  }
  return async () => {
    stopped = true;
    clearInterval(heartbeat);
    if (retry !== undefined) clearTimeout(retry);
    await client?.end();
  };
}
