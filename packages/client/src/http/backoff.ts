// Retries with exponential backoff and full jitter (AWS architecture blog "Exponential Backoff
// and Jitter"): attempt n waits a uniform random time in [0, min(max, base * 2^n)], so a fleet
// that lost its server at the same moment does not come back in lock-step.
import { setTimeout as delay } from 'node:timers/promises';
import { ClientError } from '../errors.js';

export interface BackoffOptions {
  baseDelayMs: number;
  maxDelayMs: number;
  /** Attempts in total (first try included). */
  maxAttempts: number;
  random?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Told before each retry's delay: the error, the failed try (1-based) and the delay. */
  onRetry?: (e: unknown, failedTry: number, delayMs: number) => void;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseDelayMs: 500, maxDelayMs: 60_000, maxAttempts: 8 };

/** The longest Retry-After we honour: a server (or a proxy) asking for more is not obeyed beyond it. */
export const MAX_RETRY_AFTER_MS = 3_600_000;

/**
 * Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, in milliseconds from `nowMs`,
 * bounded to [0, MAX_RETRY_AFTER_MS]; undefined when absent or unreadable (then our own backoff
 * applies). Untrusted input: a huge or malformed value never freezes the device.
 */
export function parseRetryAfter(value: string | undefined, nowMs = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  let ms: number;
  if (/^\d{1,10}$/.test(text)) ms = Number(text) * 1000;
  else if (text.length <= 64 && /^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(text)) {
    const at = Date.parse(text);
    if (Number.isNaN(at)) return undefined;
    ms = at - nowMs;
  } else return undefined;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms));
}

/**
 * The wait before retrying after `e`: our backoff delay, or — when the server said how long with
 * Retry-After — at least that, spread over up to half again so the devices it turned away
 * together do not return together; never more than `capMs`.
 */
export function retryDelayMs(e: unknown, backoffMs: number, capMs: number, random = Math.random): number {
  const asked = e instanceof ClientError ? e.retryAfterMs : undefined;
  if (asked === undefined) return backoffMs;
  return Math.min(capMs, Math.max(backoffMs, Math.round(asked * (1 + 0.5 * random()))));
}

/** The longest a single retry inside one operation waits for a Retry-After (the loop may wait longer). */
export const MAX_IN_OPERATION_RETRY_AFTER_MS = 600_000;

export function backoffDelayMs(
  attempt: number,
  o: Pick<BackoffOptions, 'baseDelayMs' | 'maxDelayMs'>,
  random = Math.random,
): number {
  const cap = Math.min(o.maxDelayMs, o.baseDelayMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}

/** Wait `ms`; an abort rejects with ERR_ABORTED at once (Node's abortable timer underneath). */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await delay(ms, undefined, signal === undefined ? undefined : { signal });
  } catch (error) {
    if (signal?.aborted) throw abortError(signal);
    throw error;
  }
}

export function abortError(signal?: AbortSignal): ClientError {
  const reason = signal?.reason as unknown;
  return new ClientError(
    'ERR_ABORTED',
    `operation aborted${reason instanceof Error ? `: ${reason.message}` : ''}`,
    reason === undefined ? undefined : { cause: reason },
  );
}

/**
 * True for failures worth retrying: network errors, timeouts, 5xx, 408, 429 — not an unknown
 * host name (ERR_HTTP_NAME_NOT_FOUND), a bad certificate (ERR_HTTP_TLS) or another 4xx.
 */
export function isTransient(e: unknown): boolean {
  if (e instanceof ClientError)
    return (
      e.code === 'ERR_HTTP_NETWORK' ||
      e.code === 'ERR_HTTP_UNAVAILABLE' ||
      e.code === 'ERR_HTTP_TIMEOUT' ||
      e.code === 'ERR_HTTP_TOO_SLOW'
    );
  return false;
}

/**
 * Run `fn(attempt)` until it succeeds, a non-transient error is thrown, or attempts run out.
 * The last transient error is rethrown as is (its code says what kept failing).
 */
export async function withRetry<T>(
  fn: (attempt: number) => Promise<T>,
  o: BackoffOptions = DEFAULT_BACKOFF,
  signal?: AbortSignal,
  onRetry: ((e: unknown, failedTry: number, delayMs: number) => void) | undefined = o.onRetry,
): Promise<T> {
  const wait = o.sleep ?? sleep;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      if (!isTransient(e) || attempt + 1 >= o.maxAttempts || signal?.aborted) throw e;
      const delayMs = retryDelayMs(
        e,
        backoffDelayMs(attempt, o, o.random),
        MAX_IN_OPERATION_RETRY_AFTER_MS,
        o.random,
      );
      onRetry?.(e, attempt + 1, delayMs);
      await wait(delayMs, signal);
    }
  }
}
