// The server under load, in its own process (as in production, and so the load generator does
// not share its event loop): createApp over PostgreSQL plus a trivial Hono route as the ceiling,
// and the poll without its database work (body read, device JWT parsed and its Ed25519 signature
// verified with the cached key, claims checked, no-update answered): the floor any poll pays.
// Prints {"port": N} on stdout once listening. Env: DATABASE_URL, BENCH_POOL_SIZE, BENCH_BLOB_DIR.
import { FsBlobStore } from '@abota/blobstore';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { devicePublicKey, verifyDeviceToken } from '../src/auth/device-jwt.js';
import { bearerToken } from '../src/auth/secrets.js';
import { RATE_LIMITS_OFF } from '../src/rate-limit.js';
import {
  createApp,
  createLogger,
  DEFAULT_APP_CONFIG,
  Metrics,
  openDatabase,
  schema,
  systemClock,
} from '../src/index.js';

const url = process.env['DATABASE_URL'];
if (url === undefined) throw new Error('DATABASE_URL is required');
const database = await openDatabase({
  kind: 'postgres',
  url,
  poolSize: Number(process.env['BENCH_POOL_SIZE'] ?? 16),
});
const metrics = new Metrics();
const app = createApp({
  metrics,
  db: database.db,
  blobs: new FsBlobStore(process.env['BENCH_BLOB_DIR'] ?? '/tmp/abota-bench-blobs'),
  logger: createLogger({ level: 'warn' }),
  config: {
    pollIntervalSeconds: 3600,
    // The load generator replays a sample of devices far faster than any device polls.
    rateLimits: RATE_LIMITS_OFF,
    // The load-shedding limit (bench/shedding.ts varies it), as the server's ABOTA_MAX_IN_FLIGHT.
    maxRequestsInFlight: Number(process.env['ABOTA_MAX_IN_FLIGHT'] ?? DEFAULT_APP_CONFIG.maxRequestsInFlight),
    pollStatementsInFlight: Number(
      process.env['BENCH_POLL_STATEMENTS_IN_FLIGHT'] ?? DEFAULT_APP_CONFIG.pollStatementsInFlight,
    ),
  },
});
// The ceiling: the same Hono + node-server stack doing no work.
const trivial = new Hono();
trivial.get('/bench/trivial', (c) => c.json({ status: 'no-update', pollAfterSeconds: 3600 }));
// Every device key imported up front, as a warm replica has them cached: the floor is measured
// without first-contact key reads.
const keys = new Map<string, ReturnType<typeof devicePublicKey>>();
for (const row of await database.db
  .select({ id: schema.devices.id, jwk: schema.devices.publicKeyJwk })
  .from(schema.devices)) {
  keys.set(row.id, devicePublicKey(row.jwk.x));
}
// The production verifier with this preloaded cache (an unknown device would be read from the
// database, as on a first contact).
const verifyDeps = { db: database.db, clock: systemClock, config: DEFAULT_APP_CONFIG, deviceKeys: keys };
trivial.post('/bench/verify-only', async (c) => {
  const body = (await c.req.json()) as { version?: unknown };
  if (typeof body.version !== 'string') return c.json({ error: 'version' }, 400);
  await verifyDeviceToken(verifyDeps, bearerToken(c.req.header('authorization')) ?? '');
  return c.json({ status: 'no-update', pollAfterSeconds: 3600 });
});
// /metrics needs an API key on the app's listener; the bench reads the same counters here.
trivial.get('/bench/metrics', (c) => c.text(metrics.render()));
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
