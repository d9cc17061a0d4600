// Is this error a backend that cannot be reached right now (PostgreSQL restarting, the S3 endpoint
// down) rather than a defect? Those are answered 503 + Retry-After (app.ts onError), so agents back
// off and retry — their outbox keeps the reports — instead of seeing a 500 for an outage.

/** Node socket errors that mean "the other end is not there (yet)". */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

/**
 * PostgreSQL SQLSTATEs of a server going away or not yet accepting: class 08 (connection
 * exception), 57P01 admin_shutdown (also pg_terminate_backend), 57P02 crash_shutdown,
 * 57P03 cannot_connect_now (starting up), 53300 too_many_connections.
 */
const PG_UNAVAILABLE = /^(08...|57P0[123]|53300)$/;

/** node-postgres' own messages for a lost or never-made connection (these carry no code). */
const PG_MESSAGES =
  /Connection terminated|PostgreSQL query deadline exceeded|timeout exceeded when trying to connect|connection error and is not queryable|Client was closed and is not queryable/;

/** A short reason when `err` (or anything in its cause chain) is a backend outage, else undefined. */
export function backendUnavailable(err: unknown): string | undefined {
  const seen = new Set<unknown>();
  const queue: unknown[] = [err];
  while (queue.length > 0) {
    const e = queue.shift();
    if (e === null || typeof e !== 'object' || seen.has(e)) continue;
    seen.add(e);
    const { code, message, cause } = e as { code?: unknown; message?: unknown; cause?: unknown };
    if (typeof code === 'string' && (SOCKET_CODES.has(code) || PG_UNAVAILABLE.test(code))) return code;
    if (typeof message === 'string' && PG_MESSAGES.test(message)) return message;
    queue.push(cause);
    // net.connect with several addresses rejects with an AggregateError of the attempts.
    if (e instanceof AggregateError) queue.push(...(e.errors as unknown[]));
  }
  return undefined;
}

/** Retry-After for an outage: 1-5 s, spread so a fleet does not come back in one burst. */
export const outageRetryAfterSeconds = (): number => 1 + Math.floor(Math.random() * 5);
