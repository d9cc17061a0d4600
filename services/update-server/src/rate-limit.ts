// Per-key token buckets for the device routes (issue #16: one source registered ten fake devices
// unhindered). A bucket holds up to `burst` tokens and refills at burst/periodSeconds per second;
// a request takes one token or is answered 429 with Retry-After = the seconds until one is back.
//
// State is per process: N replicas behind a load balancer allow up to N times the limit in
// total (README "Rate limits"). Hand-written rather than a package: the npm limiters for hono
// are fixed-window counters with pluggable stores; what is needed here is ~40 lines of token
// bucket with a bounded key set.
import type { Context } from 'hono';
import { ServerError } from './errors.js';
import type { Metrics } from './metrics.js';

/** `burst` requests at once, refilled at `burst` per `periodSeconds`; burst 0 = no limit. */
export interface RateSpec {
  burst: number;
  periodSeconds: number;
}

export interface RateLimitConfig {
  /** POST /v1/device/register, per source address. */
  registerPerSource: RateSpec;
  /** Every device route (register, poll, report, blob download), per source address. */
  devicePerSource: RateSpec;
  /** Every authenticated device route, per device id (counted once its JWT verified). */
  perDevice: RateSpec;
  /** Console sign-in attempts (POST /console/sign-in), per source address. */
  signInPerSource: RateSpec;
  /** Console sign-in attempts of this process from all sources together. */
  signInTotal: RateSpec;
}

export const RATE_LIMITS_OFF: RateLimitConfig = {
  registerPerSource: { burst: 0, periodSeconds: 60 },
  devicePerSource: { burst: 0, periodSeconds: 60 },
  perDevice: { burst: 0, periodSeconds: 60 },
  signInPerSource: { burst: 0, periodSeconds: 60 },
  signInTotal: { burst: 0, periodSeconds: 60 },
};

/** Parses "<burst>/<seconds>" (e.g. "20/60": 20 per minute, bursts of 20); "0" turns it off. */
export function parseRateSpec(text: string): RateSpec | undefined {
  if (text === '0' || text === 'off') return { burst: 0, periodSeconds: 60 };
  const m = /^(\d{1,7})\/(\d{1,6})$/.exec(text);
  if (m === null) return undefined;
  const burst = Number(m[1]);
  const periodSeconds = Number(m[2]);
  if (periodSeconds < 1) return undefined;
  return { burst, periodSeconds };
}

interface Bucket {
  tokens: number;
  at: number;
}

export class TokenBuckets {
  readonly #spec: RateSpec;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();

  /** `now` in milliseconds (monotonic); at most `maxKeys` buckets, the least recently used dropped. */
  constructor(spec: RateSpec, options: { maxKeys?: number; now?: () => number } = {}) {
    this.#spec = spec;
    this.#maxKeys = options.maxKeys ?? 100_000;
    this.#now = options.now ?? (() => performance.now());
  }

  get enabled(): boolean {
    return this.#spec.burst > 0;
  }

  /** Takes a token for `key`: 0 when allowed, else the whole seconds until one is available (≥ 1). */
  take(key: string): number {
    const { burst, periodSeconds } = this.#spec;
    if (burst <= 0) return 0;
    const perMs = burst / (periodSeconds * 1000);
    const now = this.#now();
    const bucket = this.#buckets.get(key);
    let tokens = burst;
    if (bucket !== undefined) {
      tokens = Math.min(burst, bucket.tokens + (now - bucket.at) * perMs);
      this.#buckets.delete(key); // re-inserted below: Map order is then least recently used first
    } else if (this.#buckets.size >= this.#maxKeys) {
      // A dropped bucket restarts full: bounded memory errs on the side of letting a request in.
      const oldest = this.#buckets.keys().next();
      if (oldest.done !== true) this.#buckets.delete(oldest.value);
    }
    if (tokens >= 1) {
      this.#buckets.set(key, { tokens: tokens - 1, at: now });
      return 0;
    }
    this.#buckets.set(key, { tokens, at: now });
    return Math.max(1, Math.ceil((1 - tokens) / perMs / 1000));
  }
}

export function rateLimited(what: string, retryAfterSeconds: number): ServerError {
  return new ServerError(
    'ERR_RATE_LIMITED',
    `too many requests ${what}; retry after ${retryAfterSeconds} s`,
    { retryAfterSeconds },
  );
}

/** The connection's peer address as is (loopback too); undefined for in-process requests. */
export function peerAddress(c: Context): string | undefined {
  const env = c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined;
  return env?.incoming?.socket?.remoteAddress;
}

/**
 * The peer address of the connection (@hono/node-server puts the IncomingMessage in c.env).
 * Undefined for loopback peers and in-process requests: a reverse proxy on the same host makes
 * every device look like 127.0.0.1, so limiting by that address would throttle the whole fleet
 * (the proxy should limit per client instead; README "Rate limits").
 */
export function sourceAddress(c: Context): string | undefined {
  const address = peerAddress(c);
  if (address === undefined) return undefined;
  if (address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.')) return undefined;
  return address;
}

/** The per-device bucket, taken once the device's JWT verified (a forged one cannot drain it). */
export function limitDevice(
  // What it needs of AppDeps (context.ts), named here: context.ts → config.ts → this module.
  deps: { limits: { device: TokenBuckets }; metrics: Pick<Metrics, 'rateLimited'> },
  deviceId: string,
): void {
  const wait = deps.limits.device.take(deviceId);
  if (wait > 0) {
    deps.metrics.rateLimited.inc({ limit: 'device' });
    throw rateLimited('from this device', wait);
  }
}
