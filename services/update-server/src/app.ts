// createApp: the whole HTTP surface as a Hono app over injected parts (database, blob store, clock,
// config, logger) — no socket, no globals, so tests and other packages run it in-process and any
// number of replicas can share one PostgreSQL and one bucket (docs/architecture.md "Update
// server").
import { BlobStoreError, type BlobStore } from '@abota/blobstore';
import { isManifestError } from '@abota/manifest';
import type { MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import { routePath } from 'hono/route';
import { DEFAULT_APP_CONFIG, type AppConfig } from './config.js';
import { consoleRoutes } from './console/app.js';
import { type AppDeps, type AppEnv, type Clock, systemClock } from './context.js';
import type { Db } from './db/database.js';
import { PollBatcher } from './db/poll-statement.js';
import { errorBody, ServerError } from './errors.js';
import type { Logger } from './logger.js';
import { LoadGate, shedRetryAfterSeconds } from './load-gate.js';
import { Metrics } from './metrics.js';
import { RolloutEngine } from './rollout/engine.js';
import { adminRoutes } from './routes/admin.js';
import { blobRoutes, blobUploadRoutes } from './routes/blobs.js';
import { rateLimited, sourceAddress, TokenBuckets } from './rate-limit.js';
import { deviceRoutes } from './routes/device.js';
import { DOCUMENT_CONFIG, docsRoutes } from './routes/docs.js';
import { opsRoutes } from './routes/ops.js';
import { createRouter } from './routes/router.js';
import { uploadPartRoutes, uploadRoutes } from './routes/uploads.js';
import { backendUnavailable, outageRetryAfterSeconds } from './unavailable.js';

export interface CreateAppOptions {
  db: Db;
  blobs: BlobStore;
  logger: Logger;
  clock?: Clock;
  config?: Partial<AppConfig>;
  /** Database reachability for /readyz (Database.ping); defaults to a `select 1` through drizzle. */
  pingDatabase?: () => Promise<void>;
  metrics?: Metrics;
  /**
   * The rollout runtime; one is made from db, clock and logger when absent. Pass one to start
   * its timer and cross-replica LISTEN (startServer does), or to drive evaluations in tests.
   */
  rollouts?: RolloutEngine;
  /** The in-flight count shedding reads (load-gate.ts); startServer shares it with its pre-parse check. */
  loadGate?: LoadGate;
}

/** The whole HTTP surface; `typeof` it (and of each sub-app) is what hono/client `hc` is typed by. */
export type App = ReturnType<typeof createApp>;

const BLOB_ERROR_STATUS: Record<string, { status: number; code: string }> = {
  ERR_BLOB_DIGEST_MISMATCH: { status: 422, code: 'ERR_BLOB_DIGEST_MISMATCH' },
  ERR_BLOB_SIZE_MISMATCH: { status: 400, code: 'ERR_BLOB_SIZE_MISMATCH' },
  ERR_BLOB_TOO_LARGE: { status: 413, code: 'ERR_BODY_TOO_LARGE' },
  ERR_BLOB_NOT_FOUND: { status: 404, code: 'ERR_NOT_FOUND' },
  ERR_BLOB_KEY_INVALID: { status: 400, code: 'ERR_VALIDATION' },
  ERR_BLOB_ARGUMENT_INVALID: { status: 400, code: 'ERR_VALIDATION' },
  ERR_BLOB_RANGE_NOT_SATISFIABLE: { status: 416, code: 'ERR_RANGE_NOT_SATISFIABLE' },
  ERR_BLOB_STORE_UNAVAILABLE: { status: 503, code: 'ERR_UNAVAILABLE' },
  ERR_BLOB_UPLOAD_NOT_FOUND: { status: 404, code: 'ERR_UPLOAD_NOT_FOUND' },
  ERR_BLOB_UPLOAD_INCOMPLETE: { status: 409, code: 'ERR_UPLOAD_INCOMPLETE' },
};

const HTTP_STATUS_CODES: Record<number, string> = {
  400: 'ERR_VALIDATION',
  401: 'ERR_UNAUTHENTICATED',
  403: 'ERR_FORBIDDEN',
  404: 'ERR_NOT_FOUND',
  413: 'ERR_BODY_TOO_LARGE',
  415: 'ERR_UNSUPPORTED_MEDIA_TYPE',
};

export function createApp(options: CreateAppOptions) {
  const config: AppConfig = { ...DEFAULT_APP_CONFIG, ...options.config };
  const metrics = options.metrics ?? new Metrics();
  const deps: AppDeps = {
    db: options.db,
    blobs: options.blobs,
    clock: options.clock ?? systemClock,
    config,
    logger: options.logger,
    metrics,
    deviceKeys: new Map(),
    polls: new PollBatcher(options.db, {
      maxInFlight: config.pollStatementsInFlight,
      onStatement: (polls) => {
        metrics.pollStatements.inc();
        metrics.pollStatementPolls.inc({}, polls);
      },
    }),
    rollouts:
      options.rollouts ??
      new RolloutEngine({ db: options.db, clock: options.clock ?? systemClock, logger: options.logger }),
    limits: {
      register: new TokenBuckets(config.rateLimits.registerPerSource),
      source: new TokenBuckets(config.rateLimits.devicePerSource),
      device: new TokenBuckets(config.rateLimits.perDevice),
      signIn: new TokenBuckets(config.rateLimits.signInPerSource),
      signInTotal: new TokenBuckets(config.rateLimits.signInTotal),
    },
  };
  const { logger } = deps;

  const app = createRouter();

  // Access log + metrics. Only method, route pattern, status and duration: never headers,
  // query strings or bodies, which is where tokens and keys travel.
  app.use('*', async (c, next) => {
    const started = performance.now();
    await next();
    const seconds = (performance.now() - started) / 1000;
    const matched = routePath(c, -1);
    const route = matched === '*' || matched === '/*' ? 'unmatched' : matched;
    metrics.requests.inc({ method: c.req.method, route, status: String(c.res.status) });
    metrics.latency.observe({ route }, seconds);
    logger.debug(
      { method: c.req.method, route, status: c.res.status, ms: Math.round(seconds * 10000) / 10 },
      'request',
    );
  });

  // Load shedding: past maxRequestsInFlight requests in progress, answer 503 at once — cheap, and
  // what is admitted keeps its latency — rather than queueing everything behind a saturated
  // database. The operational routes stay out of it (a probe must not fail because of load).
  const gate = options.loadGate ?? new LoadGate(config.maxRequestsInFlight);
  app.use('/v1/*', async (_c, next) => {
    if (gate.full) {
      metrics.shed.inc();
      throw new ServerError('ERR_UNAVAILABLE', gate.busyMessage(), {
        retryAfterSeconds: shedRetryAfterSeconds(),
      });
    }
    gate.inFlight++;
    try {
      await next();
    } finally {
      gate.inFlight--;
    }
  });

  // Device routes, per source address, before any signature is checked (rate-limit.ts).
  app.use('/v1/device/*', async (c, next) => {
    const source = sourceAddress(c);
    if (source !== undefined) {
      if (c.req.method === 'POST' && c.req.path === '/v1/device/register') {
        const wait = deps.limits.register.take(source);
        if (wait > 0) {
          metrics.rateLimited.inc({ limit: 'register' });
          throw rateLimited('registering from this address', wait);
        }
      }
      const wait = deps.limits.source.take(source);
      if (wait > 0) {
        metrics.rateLimited.inc({ limit: 'source' });
        throw rateLimited('from this address', wait);
      }
    }
    await next();
  });

  // Every sub-app but the two that stream bytes into the blob store (the PUT of a blob, the PUT
  // of an upload part, each with its own cap: routes/blobs.ts, routes/uploads.ts) takes JSON
  // bodies, and those are bounded.
  const ops = opsRoutes(deps, options.pingDatabase);
  const device = deviceRoutes(deps);
  const blobs = blobRoutes(deps);
  const uploads = uploadRoutes(deps);
  const admin = adminRoutes(deps);
  // The web console (/console, src/console): its actions call the admin API in-process.
  const webConsole = consoleRoutes(deps, (path, init, env) => app.request(path, init, env));
  const jsonLimit = jsonBodyLimit(config.maxJsonBodyBytes);
  for (const sub of [ops, device, blobs, uploads, admin, webConsole]) {
    for (const r of sub.routes) app.on(r.method, r.path, jsonLimit);
  }

  app.onError((err, c) => {
    if (err instanceof ServerError) {
      if (err.retryAfterSeconds !== undefined) c.header('retry-after', String(err.retryAfterSeconds));
      return c.json(errorBody(err.code, err.message), err.status as 400);
    }
    if (isManifestError(err)) {
      // Refused content: the manifest package's code says exactly which check failed.
      return c.json(errorBody(err.code, err.message), 422);
    }
    if (err instanceof BlobStoreError) {
      const mapped = BLOB_ERROR_STATUS[err.code];
      if (mapped !== undefined && mapped.status < 500)
        return c.json(errorBody(mapped.code, err.message), mapped.status as 400);
    }
    // A backend outage (PostgreSQL restarting, the S3 endpoint down): 503 + Retry-After, so
    // agents back off and retry (their outbox keeps reports), not a 500 for a defect.
    const reason =
      err instanceof BlobStoreError && err.code === 'ERR_BLOB_STORE_UNAVAILABLE'
        ? err.code
        : backendUnavailable(err);
    if (reason !== undefined) {
      logger.warn({ reason, message: err.message, route: routePath(c, -1) }, 'backend unavailable');
      c.header('retry-after', String(outageRetryAfterSeconds()));
      return c.json(
        errorBody(
          'ERR_UNAVAILABLE',
          'a backend (database or blob store) is unreachable; retry after the Retry-After seconds',
        ),
        503,
      );
    }
    if (err instanceof HTTPException && err.status < 500) {
      const code = HTTP_STATUS_CODES[err.status] ?? 'ERR_VALIDATION';
      const message =
        err.status === 400 && /JSON/i.test(err.message) ? 'request body is not valid JSON' : err.message;
      return c.json(errorBody(code, message), err.status);
    }
    // Unexpected: the client learns nothing about internals; the log keeps name and message.
    logger.error(
      { err: { name: err.name, message: err.message }, route: routePath(c, -1) },
      'unhandled error',
    );
    return c.json(errorBody('ERR_INTERNAL', 'internal server error; the server log has the details'), 500);
  });

  app.notFound((c) => c.json(errorBody('ERR_NOT_FOUND', `no route for ${c.req.method} ${c.req.path}`), 404));

  app.route('/', webConsole);
  const routes = app
    .route('/', ops)
    .route('/', device)
    .route('/', blobs)
    .route('/', blobUploadRoutes(deps))
    .route('/', uploads)
    .route('/', uploadPartRoutes(deps))
    .route('/', admin);
  // The document covers every mounted sub-app, so it is read from the app itself, on request.
  return routes.route(
    '/',
    docsRoutes(() => app.getOpenAPI31Document(DOCUMENT_CONFIG)),
  );
}

/**
 * The JSON body limit, decided from the headers when they suffice, never touching c.req.raw.body:
 * that makes @hono/node-server build a full web Request and stream (≈ 0.1–0.3 ms of event loop
 * per request). GET/HEAD carry no body; a declared Content-Length bounds it (the HTTP parser
 * reads no more). Chunked bodies are counted as they stream by hono's bodyLimit.
 */
function jsonBodyLimit(maxBytes: number): MiddlewareHandler<AppEnv> {
  const tooLarge = () => new ServerError('ERR_BODY_TOO_LARGE', `request body exceeds ${maxBytes} bytes`);
  const counted = bodyLimit({
    maxSize: maxBytes,
    onError: () => {
      throw tooLarge();
    },
  });
  return async (c, next) => {
    if (c.req.method === 'GET' || c.req.method === 'HEAD') return next();
    const declared = c.req.header('content-length');
    if (declared !== undefined && c.req.header('transfer-encoding') === undefined) {
      if (Number.parseInt(declared, 10) > maxBytes) throw tooLarge();
      return next();
    }
    return counted(c, next);
  };
}
