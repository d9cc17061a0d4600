// Configuration: what the app needs (AppConfig, passed to createApp) and what the
// `abota-server` process needs on top (ServerConfig: listen address, storage choice), read from
// environment variables and command-line flags. Secrets (the bootstrap admin key) come from the
// environment only, never from flags (they would show in `ps`).
import { ServerError } from './errors.js';
import { parseRateSpec, type RateLimitConfig, type RateSpec } from './rate-limit.js';
import { SETTINGS } from './usage.js';

export interface AppConfig {
  /** `aud` every device JWT must carry. */
  audience: string;
  /** Base poll interval returned to devices; each answer is jittered by ±pollJitterFraction. */
  pollIntervalSeconds: number;
  pollJitterFraction: number;
  /** Largest accepted blob upload. */
  maxBlobSizeBytes: number;
  /** An upload session with no new part for this long is removed by maintenance (routes/uploads.ts). */
  uploadSessionIdleSeconds: number;
  /** Largest accepted JSON request body (a manifest JWS with several signatures fits easily). */
  maxJsonBodyBytes: number;
  /** `redirect`: 302 to a presigned URL when the blob store can make one; `stream`: always proxy. */
  blobDelivery: 'redirect' | 'stream';
  presignExpiresSeconds: number;
  /** Absolute base for artifact URLs in offers (e.g. https://updates.example.com); relative when unset. */
  publicUrl: string | undefined;
  /** Largest accepted device JWT lifetime (exp - iat) and clock skew tolerance. */
  maxTokenLifetimeSeconds: number;
  clockToleranceSeconds: number;
  /**
   * Poll statements in flight at once per process, at most; polls arriving meanwhile are batched
   * into the next statement (group commit, db/poll-statement.ts). Beyond the first, a statement
   * starts only when 16 polls are waiting. Keep it below the database pool size.
   */
  pollStatementsInFlight: number;
  /**
   * Token buckets on the device routes (per source address and per device) and on the console's
   * sign-in (per source address and in total), rate-limit.ts.
   */
  rateLimits: RateLimitConfig;
  /**
   * Requests in progress at once in this process, at most; beyond it the device and admin APIs
   * answer 503 + Retry-After at once instead of queueing (load shedding). 0 = unbounded.
   */
  maxRequestsInFlight: number;
}

export interface ServerConfig extends AppConfig {
  host: string;
  port: number;
  /** PGlite database and filesystem blobs live here unless DATABASE_URL / ABOTA_S3_BUCKET are set. */
  dataDir: string;
  databaseUrl: string | undefined;
  databasePoolSize: number;
  /**
   * PostgreSQL deadlines (db/database.ts): a connection attempt and a query that get no answer
   * within them fail (503 + Retry-After) and the connection is dropped, so a network that
   * silently drops packets cannot hold requests forever. Defaults 5 s and 30 s.
   */
  databaseConnectTimeoutMs?: number;
  databaseQueryTimeoutMs?: number;
  s3:
    | {
        bucket: string;
        prefix: string | undefined;
        endpoint: string | undefined;
        region: string;
        forcePathStyle: boolean;
      }
    | undefined;
  /** Bootstrap admin API key (abk_...), from ABOTA_ADMIN_KEY. */
  adminKey: string | undefined;
  logLevel: string;
  shutdownTimeoutMs: number;
  /** A second listener serving GET /metrics without credentials (e.g. 127.0.0.1:9464); unset: none. */
  metricsListen?: { host: string; port: number } | undefined;
}

export const DEFAULT_APP_CONFIG: AppConfig = {
  audience: 'abota',
  pollIntervalSeconds: 3600,
  pollJitterFraction: 0.2,
  maxBlobSizeBytes: 5 * 1024 ** 3,
  uploadSessionIdleSeconds: 86_400,
  maxJsonBodyBytes: 1024 * 1024,
  blobDelivery: 'redirect',
  presignExpiresSeconds: 900,
  publicUrl: undefined,
  maxTokenLifetimeSeconds: 300,
  clockToleranceSeconds: 30,
  pollStatementsInFlight: 4,
  rateLimits: {
    registerPerSource: { burst: 20, periodSeconds: 60 },
    devicePerSource: { burst: 1200, periodSeconds: 60 },
    perDevice: { burst: 300, periodSeconds: 60 },
    signInPerSource: { burst: 10, periodSeconds: 60 },
    signInTotal: { burst: 100, periodSeconds: 60 },
  },
  maxRequestsInFlight: 256,
};

type Env = Readonly<Record<string, string | undefined>>;

/** Flag → the environment variable it stands for (src/usage.ts has the full table). */
const FLAGS: Record<string, string> = Object.fromEntries(
  SETTINGS.flatMap((s) => (s.flag === undefined ? [] : [[s.flag, s.env]])),
);

function invalid(name: string, expected: string, found: string): ServerError {
  return new ServerError('ERR_VALIDATION', `configuration ${name}: expected ${expected}, found "${found}"`);
}

function integer(values: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = values[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw invalid(name, `an integer in [${min}, ${max}]`, raw);
  return n;
}

function fraction(values: Env, name: string, fallback: number): number {
  const raw = values[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0 || n >= 1) throw invalid(name, 'a number in [0, 1)', raw);
  return n;
}

function flag(values: Env, name: string): boolean {
  const raw = values[name];
  if (raw === undefined || raw === '') return false;
  if (['1', 'true', 'yes'].includes(raw.toLowerCase())) return true;
  if (['0', 'false', 'no'].includes(raw.toLowerCase())) return false;
  throw invalid(name, 'true or false', raw);
}

function rate(values: Env, name: string, fallback: RateSpec): RateSpec {
  const raw = values[name];
  if (raw === undefined || raw === '') return fallback;
  const spec = parseRateSpec(raw);
  if (spec === undefined) throw invalid(name, '"<requests>/<seconds>" such as "20/60", or 0 (off)', raw);
  return spec;
}

function hostPort(values: Env, name: string): { host: string; port: number } | undefined {
  const raw = values[name];
  if (raw === undefined || raw === '') return undefined;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(raw);
  const port = Number(m?.[3]);
  if (m === null || port > 65535) throw invalid(name, '"<host>:<port>" such as 127.0.0.1:9464', raw);
  return { host: m[1] ?? m[2] ?? '', port };
}

function text(values: Env, name: string): string | undefined {
  const raw = values[name];
  return raw === undefined || raw === '' ? undefined : raw;
}

/** Parses `--flag value` / `--flag=value` into the env names they stand for; names every bad flag at once. */
function flagsToEnv(argv: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  const problems: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const [name, inline] = arg.includes('=')
      ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)]
      : [arg, undefined];
    const envName = FLAGS[name];
    if (envName === undefined) {
      problems.push(`unknown option "${name}"`);
      continue;
    }
    const value = inline ?? argv[i + 1];
    if (value === undefined || (inline === undefined && value.startsWith('--'))) {
      problems.push(`option ${name} needs a value`);
      continue;
    }
    if (inline === undefined) i++;
    out[envName] = value;
  }
  if (problems.length > 0) {
    throw new ServerError(
      'ERR_VALIDATION',
      `${problems.join('; ')} (known: ${Object.keys(FLAGS).join(', ')}, --help)`,
    );
  }
  return out;
}

/** Reads the server configuration; flags win over the environment. Throws ERR_VALIDATION with the offending name. */
export function loadConfig(env: Env = process.env, argv: readonly string[] = []): ServerConfig {
  const values: Env = { ...env, ...flagsToEnv(argv) };
  const delivery = text(values, 'ABOTA_BLOB_DELIVERY') ?? DEFAULT_APP_CONFIG.blobDelivery;
  if (delivery !== 'redirect' && delivery !== 'stream')
    throw invalid('ABOTA_BLOB_DELIVERY', 'redirect or stream', delivery);
  const publicUrl = text(values, 'ABOTA_PUBLIC_URL');
  if (publicUrl !== undefined && !/^https?:\/\/[^/]+/.test(publicUrl)) {
    throw invalid('ABOTA_PUBLIC_URL', 'an absolute http(s) URL', publicUrl);
  }
  const bucket = text(values, 'ABOTA_S3_BUCKET');
  const adminKey = text(values, 'ABOTA_ADMIN_KEY');
  if (adminKey !== undefined && !/^abk_[A-Za-z0-9_-]{32,}$/.test(adminKey)) {
    // The value itself is never echoed: it is a secret.
    throw new ServerError(
      'ERR_VALIDATION',
      'configuration ABOTA_ADMIN_KEY: expected "abk_" followed by at least 32 base64url characters',
    );
  }
  return {
    audience: text(values, 'ABOTA_AUDIENCE') ?? DEFAULT_APP_CONFIG.audience,
    pollIntervalSeconds: integer(
      values,
      'ABOTA_POLL_INTERVAL_SECONDS',
      DEFAULT_APP_CONFIG.pollIntervalSeconds,
      10,
      7 * 86400,
    ),
    pollJitterFraction: fraction(values, 'ABOTA_POLL_JITTER', DEFAULT_APP_CONFIG.pollJitterFraction),
    maxBlobSizeBytes: integer(
      values,
      'ABOTA_MAX_BLOB_BYTES',
      DEFAULT_APP_CONFIG.maxBlobSizeBytes,
      1,
      Number.MAX_SAFE_INTEGER,
    ),
    uploadSessionIdleSeconds: integer(
      values,
      'ABOTA_UPLOAD_IDLE_SECONDS',
      DEFAULT_APP_CONFIG.uploadSessionIdleSeconds,
      60,
      30 * 86400,
    ),
    maxJsonBodyBytes: integer(
      values,
      'ABOTA_MAX_JSON_BYTES',
      DEFAULT_APP_CONFIG.maxJsonBodyBytes,
      1024,
      64 * 1024 * 1024,
    ),
    blobDelivery: delivery,
    presignExpiresSeconds: integer(
      values,
      'ABOTA_PRESIGN_EXPIRES_SECONDS',
      DEFAULT_APP_CONFIG.presignExpiresSeconds,
      60,
      7 * 86400,
    ),
    publicUrl: publicUrl?.replace(/\/+$/, ''),
    maxTokenLifetimeSeconds: DEFAULT_APP_CONFIG.maxTokenLifetimeSeconds,
    clockToleranceSeconds: DEFAULT_APP_CONFIG.clockToleranceSeconds,
    pollStatementsInFlight: integer(
      values,
      'ABOTA_POLL_STATEMENTS_IN_FLIGHT',
      DEFAULT_APP_CONFIG.pollStatementsInFlight,
      1,
      64,
    ),
    rateLimits: {
      registerPerSource: rate(values, 'ABOTA_RATE_REGISTER', DEFAULT_APP_CONFIG.rateLimits.registerPerSource),
      devicePerSource: rate(
        values,
        'ABOTA_RATE_DEVICE_SOURCE',
        DEFAULT_APP_CONFIG.rateLimits.devicePerSource,
      ),
      perDevice: rate(values, 'ABOTA_RATE_DEVICE', DEFAULT_APP_CONFIG.rateLimits.perDevice),
      signInPerSource: rate(values, 'ABOTA_RATE_SIGN_IN', DEFAULT_APP_CONFIG.rateLimits.signInPerSource),
      signInTotal: rate(values, 'ABOTA_RATE_SIGN_IN_TOTAL', DEFAULT_APP_CONFIG.rateLimits.signInTotal),
    },
    maxRequestsInFlight: integer(
      values,
      'ABOTA_MAX_IN_FLIGHT',
      DEFAULT_APP_CONFIG.maxRequestsInFlight,
      0,
      1_000_000,
    ),
    metricsListen: hostPort(values, 'ABOTA_METRICS_LISTEN'),
    host: text(values, 'ABOTA_HOST') ?? '127.0.0.1',
    port: integer(values, 'ABOTA_PORT', 8080, 0, 65535),
    dataDir: text(values, 'ABOTA_DATA_DIR') ?? './data',
    databaseUrl: text(values, 'DATABASE_URL'),
    databasePoolSize: integer(values, 'ABOTA_DB_POOL_SIZE', 10, 1, 1000),
    databaseConnectTimeoutMs: integer(values, 'ABOTA_DB_CONNECT_TIMEOUT_SECONDS', 5, 1, 3600) * 1000,
    databaseQueryTimeoutMs: integer(values, 'ABOTA_DB_QUERY_TIMEOUT_SECONDS', 30, 1, 86_400) * 1000,
    s3:
      bucket === undefined
        ? undefined
        : {
            bucket,
            prefix: text(values, 'ABOTA_S3_PREFIX'),
            endpoint: text(values, 'ABOTA_S3_ENDPOINT'),
            region: text(values, 'ABOTA_S3_REGION') ?? 'us-east-1',
            forcePathStyle: flag(values, 'ABOTA_S3_FORCE_PATH_STYLE'),
          },
    adminKey,
    logLevel: text(values, 'ABOTA_LOG_LEVEL') ?? 'info',
    shutdownTimeoutMs: integer(values, 'ABOTA_SHUTDOWN_TIMEOUT_MS', 10_000, 0, 600_000),
  };
}
