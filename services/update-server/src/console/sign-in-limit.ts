// How many console sign-ins are tried, before any key is looked up: per source address (a
// guessing client slows down alone) and in total per process (many addresses together cannot flood
// the key lookup and the audit log). In memory, like the device API's buckets (rate-limit.ts):
// N replicas allow N times the total; loopback peers (a reverse proxy on the same host) count in
// the total only.
import type { TokenBuckets } from '../rate-limit.js';

export interface SignInLimits {
  signIn: TokenBuckets;
  signInTotal: TokenBuckets;
}

/** Why an attempt was not let through: which limit, and the whole seconds until it may be tried. */
export interface SignInRefusal {
  limit: 'sign-in' | 'sign-in-total';
  retryAfterSeconds: number;
}

/**
 * Takes one attempt from the source's bucket, then from the total; undefined when allowed. An
 * attempt refused per source takes nothing from the total, so one noisy address cannot use up
 * everyone's sign-ins by itself.
 */
export function takeSignInAttempt(
  limits: SignInLimits,
  source: string | undefined,
): SignInRefusal | undefined {
  if (source !== undefined) {
    const wait = limits.signIn.take(source);
    if (wait > 0) return { limit: 'sign-in', retryAfterSeconds: wait };
  }
  const wait = limits.signInTotal.take('all');
  return wait > 0 ? { limit: 'sign-in-total', retryAfterSeconds: wait } : undefined;
}

/** What the sign-in page says to a refused attempt. */
export function signInRefusalMessage(r: SignInRefusal): string {
  const from = r.limit === 'sign-in' ? 'from your address' : 'on this server';
  return `Too many sign-in attempts ${from}. Wait ${r.retryAfterSeconds} s, then try again.`;
}
