import { describe, expect, it } from 'vitest';
import { TokenBuckets } from '../rate-limit.js';
import { signInRefusalMessage, takeSignInAttempt } from './sign-in-limit.js';

describe('console sign-in limits', () => {
  const limits = (now: () => number) => ({
    signIn: new TokenBuckets({ burst: 2, periodSeconds: 60 }, { now }),
    signInTotal: new TokenBuckets({ burst: 3, periodSeconds: 30 }, { now }),
  });

  it('refuses a source past its burst with the wait, without using up the total', () => {
    let now = 0;
    const l = limits(() => now);
    expect(takeSignInAttempt(l, '192.0.2.1')).toBeUndefined();
    expect(takeSignInAttempt(l, '192.0.2.1')).toBeUndefined();
    expect(takeSignInAttempt(l, '192.0.2.1')).toEqual({ limit: 'sign-in', retryAfterSeconds: 30 });
    expect(takeSignInAttempt(l, '192.0.2.1')).toEqual({ limit: 'sign-in', retryAfterSeconds: 30 });
    // The refused attempts took nothing from the total: one more source still gets in.
    expect(takeSignInAttempt(l, '192.0.2.2')).toBeUndefined();
    expect(takeSignInAttempt(l, '192.0.2.3')).toEqual({ limit: 'sign-in-total', retryAfterSeconds: 10 });
    now += 30_000;
    expect(takeSignInAttempt(l, '192.0.2.1')).toBeUndefined();
  });

  it('counts attempts without a source address (loopback, in-process) in the total only', () => {
    const l = limits(() => 0);
    for (let i = 0; i < 3; i++) expect(takeSignInAttempt(l, undefined)).toBeUndefined();
    expect(takeSignInAttempt(l, undefined)).toEqual({ limit: 'sign-in-total', retryAfterSeconds: 10 });
  });

  it('says which limit and how long to wait', () => {
    expect(signInRefusalMessage({ limit: 'sign-in', retryAfterSeconds: 30 })).toBe(
      'Too many sign-in attempts from your address. Wait 30 s, then try again.',
    );
    expect(signInRefusalMessage({ limit: 'sign-in-total', retryAfterSeconds: 5 })).toContain(
      'on this server',
    );
  });
});
