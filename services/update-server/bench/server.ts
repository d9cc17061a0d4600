// The server under load, in its own process (as in production, and so the load generator does
// not share its event loop): createApp over PostgreSQL plus a trivial Hono route as the ceiling.
// Prints {"port": N} on stdout once listening. Env: DATABASE_URL, BENCH_POOL_SIZE, BENCH_BLOB_DIR.
import { FsBlobStore } from '@abota/blobstore';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { createApp, createLogger, openDatabase } from '../src/index.js';

const url = process.env['DATABASE_URL'];
if (url === undefined) throw new Error('DATABASE_URL is required');
const database = await openDatabase({
  kind: 'postgres',
  url,
  poolSize: Number(process.env['BENCH_POOL_SIZE'] ?? 16),
});
const app = createApp({
  db: database.db,
  blobs: new FsBlobStore(process.env['BENCH_BLOB_DIR'] ?? '/tmp/abota-bench-blobs'),
  logger: createLogger({ level: 'warn' }),
  config: {
    pollIntervalSeconds: 3600,
    pollStatementsInFlight: Number(process.env['BENCH_POLL_STATEMENTS_IN_FLIGHT'] ?? 2),
  },
});
// The ceiling: the same Hono + node-server stack doing no work.
const trivial = new Hono();
trivial.get('/bench/trivial', (c) => c.json({ status: 'no-update', pollAfterSeconds: 3600 }));
app.route('/', trivial);

const server = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 });
server.once('listening', () => {
  const address = server.address();
  process.stdout.write(
    `${JSON.stringify({ port: typeof address === 'object' && address !== null ? address.port : 0 })}\n`,
  );
});
process.on('SIGTERM', () => {
  server.close(() => {
    database.close().then(() => process.exit(0));
  });
  if ('closeAllConnections' in server) server.closeAllConnections();
});
