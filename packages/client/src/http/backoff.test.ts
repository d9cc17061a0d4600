// Retry-After is untrusted input from the network: read both of its forms, bound it, and never let
// it shorten our own backoff or freeze the device.
import { describe, expect, it } from 'vitest';
import { ClientError } from '../errors.js';
import { MAX_RETRY_AFTER_MS, parseRetryAfter, retryDelayMs } from './backoff.js';

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-12-07T12:00:00Z');
  it('reads delay-seconds and an HTTP-date', () => {
    expect(parseRetryAfter('0', now)).toBe(0);
    expect(parseRetryAfter(' 5 ', now)).toBe(5000);
    expect(parseRetryAfter('Mon, 07 Dec 2026 12:00:30 GMT', now)).toBe(30_000);
  });
  it('clamps a date in the past to 0 and anything beyond an hour to an hour', () => {
    expect(parseRetryAfter('Mon, 07 Dec 2026 11:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('9999999999', now)).toBe(MAX_RETRY_AFTER_MS);
    expect(parseRetryAfter('Fri, 31 Dec 9999 23:59:59 GMT', now)).toBe(MAX_RETRY_AFTER_MS);
  });
  it('ignores what is not one of the two forms', () => {
    for (const bad of [
      undefined,
      '',
      '-1',
      '1.5',
      '1e9',
      '99999999999',
      'soon',
      'Mon, 07 Dec 2026',
      'x'.repeat(10_000),
    ])
      expect(parseRetryAfter(bad, now)).toBeUndefined();
  });
});

describe('retryDelayMs', () => {
  const asked = (ms: number) => new ClientError('ERR_HTTP_UNAVAILABLE', 'busy', { retryAfterMs: ms });
  it('keeps our backoff when the server said nothing, or asked for less', () => {
    expect(retryDelayMs(new Error('x'), 1234, 60_000, () => 0.9)).toBe(1234);
    expect(retryDelayMs(asked(100), 1234, 60_000, () => 0)).toBe(1234);
  });
  it('waits at least what was asked, spread by up to half again, never beyond the cap', () => {
    expect(retryDelayMs(asked(10_000), 10, 60_000, () => 0)).toBe(10_000);
    expect(retryDelayMs(asked(10_000), 10, 60_000, () => 0.999)).toBe(14_995);
    expect(retryDelayMs(asked(3_600_000), 10, 60_000, () => 0.5)).toBe(60_000);
  });
});
