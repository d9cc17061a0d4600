// The server's pino logger. Secrets never reach a log line: request logs carry method, route
// pattern, status and duration only (no headers, no bodies), and redaction covers the field
// names a secret could hide under should anyone log an object that holds one.
import pino, { type DestinationStream, type Logger } from 'pino';

export const REDACTED_PATHS = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'token',
  'apiKey',
  'key',
  'password',
  'adminKey',
  '*.authorization',
  '*.token',
  '*.apiKey',
  '*.key',
  '*.password',
  '*.adminKey',
];

export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  const opts = { level: options.level ?? 'info', redact: { paths: REDACTED_PATHS, censor: '[redacted]' } };
  return options.destination === undefined ? pino(opts) : pino(opts, options.destination);
}

export type { Logger };
