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
      const delayMs = backoffDelayMs(attempt, o, o.random);
      onRetry?.(e, attempt + 1, delayMs);
      await wait(delayMs, signal);
    }
  }
}
