// `abota-server --help`: the settings the process reads (README "Configuration" has the same
// table), each with its environment variable, its flag where it has one, and its default.

/** One setting: its environment variable, its flag (if any), default and meaning. */
interface Setting {
  env: string;
  flag?: string;
  defaultValue: string;
  description: string;
}

export const SETTINGS: readonly Setting[] = [
  { env: 'ABOTA_HOST', flag: '--host', defaultValue: '127.0.0.1', description: 'listen address' },
  { env: 'ABOTA_PORT', flag: '--port', defaultValue: '8080', description: 'listen port (0 = any free port)' },
  {
    env: 'ABOTA_DATA_DIR',
    flag: '--data-dir',
    defaultValue: './data',
    description: 'PGlite database (db/) and filesystem blobs (blobs/); one server per directory',
  },
  { env: 'DATABASE_URL', defaultValue: 'unset', description: 'PostgreSQL instead of PGlite' },
  { env: 'ABOTA_DB_POOL_SIZE', defaultValue: '10', description: 'PostgreSQL connections per process' },
  {
    env: 'ABOTA_DB_CONNECT_TIMEOUT_SECONDS',
    defaultValue: '5',
    description: 'PostgreSQL connection deadline (then 503 + Retry-After)',
  },
  {
    env: 'ABOTA_DB_QUERY_TIMEOUT_SECONDS',
    defaultValue: '30',
    description: 'PostgreSQL query deadline; the connection is dropped (then 503 + Retry-After)',
  },
  { env: 'ABOTA_S3_BUCKET', defaultValue: 'unset', description: 'S3 blob store instead of the filesystem' },
  { env: 'ABOTA_S3_ENDPOINT', defaultValue: 'AWS', description: 'S3-compatible endpoint URL' },
  { env: 'ABOTA_S3_REGION', defaultValue: 'us-east-1', description: 'S3 region' },
  {
    env: 'ABOTA_S3_FORCE_PATH_STYLE',
    defaultValue: 'false',
    description: 'path-style S3 URLs (MinIO, s3rver)',
  },
  { env: 'ABOTA_S3_PREFIX', defaultValue: 'none', description: 'key prefix inside the bucket' },
  {
    env: 'ABOTA_ADMIN_KEY',
    defaultValue: 'unset',
    description:
      'bootstrap admin key (abk_...); without it one is generated on the first start and printed once',
  },
  {
    env: 'ABOTA_AUDIENCE',
    flag: '--audience',
    defaultValue: 'abota',
    description: '`aud` device JWTs must carry',
  },
  { env: 'ABOTA_POLL_INTERVAL_SECONDS', defaultValue: '3600', description: 'poll interval given to devices' },
  { env: 'ABOTA_POLL_JITTER', defaultValue: '0.2', description: '± fraction of jitter on that interval' },
  {
    env: 'ABOTA_POLL_STATEMENTS_IN_FLIGHT',
    defaultValue: '4',
    description: 'poll statements in flight per process, at most',
  },
  {
    env: 'ABOTA_BLOB_DELIVERY',
    flag: '--blob-delivery',
    defaultValue: 'redirect',
    description: 'redirect (302 to a presigned URL when the store can) or stream',
  },
  { env: 'ABOTA_PRESIGN_EXPIRES_SECONDS', defaultValue: '900', description: 'lifetime of presigned URLs' },
  {
    env: 'ABOTA_PUBLIC_URL',
    flag: '--public-url',
    defaultValue: 'unset',
    description: 'absolute base for artifact URLs in offers',
  },
  { env: 'ABOTA_MAX_BLOB_BYTES', defaultValue: '5 GiB', description: 'largest blob upload' },
  {
    env: 'ABOTA_UPLOAD_IDLE_SECONDS',
    defaultValue: '86400',
    description: 'idle upload sessions are removed after this long',
  },
  { env: 'ABOTA_MAX_JSON_BYTES', defaultValue: '1 MiB', description: 'largest JSON request body' },
  {
    env: 'ABOTA_RATE_REGISTER',
    defaultValue: '20/60',
    description: 'registrations per source address: <requests>/<seconds>, 0 = off',
  },
  {
    env: 'ABOTA_RATE_DEVICE_SOURCE',
    defaultValue: '1200/60',
    description: 'device API requests per source address (loopback exempt), 0 = off',
  },
  {
    env: 'ABOTA_RATE_DEVICE',
    defaultValue: '300/60',
    description: 'device API requests per device, 0 = off',
  },
  {
    env: 'ABOTA_RATE_SIGN_IN',
    defaultValue: '10/60',
    description: 'console sign-in attempts per source address (loopback exempt), 0 = off',
  },
  {
    env: 'ABOTA_RATE_SIGN_IN_TOTAL',
    defaultValue: '100/60',
    description: 'console sign-in attempts from all sources together, per process, 0 = off',
  },
  {
    env: 'ABOTA_MAX_IN_FLIGHT',
    defaultValue: '256',
    description: 'requests in progress per process; beyond it 503 + Retry-After (0 = unbounded)',
  },
  {
    env: 'ABOTA_METRICS_LISTEN',
    flag: '--metrics-listen',
    defaultValue: 'unset',
    description:
      'host:port of a second listener serving GET /metrics without credentials (on the main one it needs an API key)',
  },
  { env: 'ABOTA_LOG_LEVEL', flag: '--log-level', defaultValue: 'info', description: 'pino log level' },
  { env: 'ABOTA_SHUTDOWN_TIMEOUT_MS', defaultValue: '10000', description: 'drain deadline on SIGTERM' },
];

function columns(rows: readonly (readonly [string, string])[]): string {
  const width = Math.max(...rows.map(([term]) => term.length));
  return rows.map(([term, text]) => `  ${term.padEnd(width)}  ${text}`).join('\n');
}

/** The text `abota-server --help` prints. */
export function serverUsage(): string {
  const flagged = SETTINGS.filter((s) => s.flag !== undefined);
  return [
    'Usage: abota-server [options]',
    '',
    'abota update server: device and admin HTTP APIs over PGlite (./data) or PostgreSQL.',
    'Flags win over environment variables. Exit status: 0 stopped cleanly, 1 failed to start',
    'or run, 2 usage error.',
    '',
    'Options:',
    columns([
      ...flagged.map((s): [string, string] => [
        `${s.flag} <value>`,
        `same as ${s.env} (default ${s.defaultValue})`,
      ]),
      ['-h, --help', 'print this help and exit'],
    ]),
    '',
    'Environment variables:',
    columns(SETTINGS.map((s): [string, string] => [s.env, `${s.description} (default ${s.defaultValue})`])),
    '',
  ].join('\n');
}
