// The daemon loop's wait after a failed poll: its own growing backoff, or — when the server said
// how long (Retry-After on a 503 from load shedding or an outage, a 429 from a rate limit) — at
// least that, spread, and never beyond the longest poll interval.
import { describe, expect, it } from 'vitest';
import { type LoopSteps, runLoop } from './agent-loop.js';
import { parseAgentConfig } from './config.js';
import type { ClientError } from './errors.js';
import { MAX_RETRY_AFTER_MS } from './http/backoff.js';
import { statusError } from './http/download.js';

const rawConfig = {
  deviceKeyPath: 'device-key.json',
  trustRootPath: 'root.json',
  product: 'eflow-vm',
  hardware: 'hyperv-x64',
  slots: {
    A: { rootfs: { path: '/dev/a', hashPath: '/dev/ha' } },
    B: { rootfs: { path: '/dev/b', hashPath: '/dev/hb' } },
  },
  bootControl: { backend: 'grub' },
  dataDir: '/nonexistent/abota-loop-test', // no install journal: straight to polling
};
const config = parseAgentConfig(rawConfig);

/** Run the real loop over `answers` (one per poll) and return the waits it chose. */
async function waitsAfter(
  answers: (() => never | { status: 'no-update' })[],
  random = () => 0.5,
  cfg = config,
) {
  const controller = new AbortController();
  const waits: number[] = [];
  let n = 0;
  const steps: LoopSteps = {
    afterBoot: async () => ({ action: 'none' }),
    reboot: async () => {},
    installFromDirectory: async () => undefined,
    checkOnce: async () => {
      const answer = answers[n++];
      if (answer === undefined) {
        controller.abort();
        return { status: 'no-update' };
      }
      return answer();
    },
  };
  await runLoop(
    { config: cfg, steps, sleep: async (ms) => void waits.push(ms), random, log: () => {} },
    controller.signal,
  );
  return waits;
}

const fail = (e: ClientError) => () => {
  throw e;
};

describe('runLoop after a failed poll', () => {
  it('backs off on its own when the server gives no Retry-After', async () => {
    const waits = await waitsAfter([
      fail(statusError(503, 'poll', null)),
      fail(statusError(503, 'poll', null)),
    ]);
    const p = config.poll;
    expect(waits.slice(0, 2)).toEqual([
      p.minSeconds * 1000,
      Math.min(p.defaultSeconds, p.minSeconds * 2) * 1000,
    ]);
  });

  it('waits at least the Retry-After of a 503 or a 429, spread by up to half again', async () => {
    const asked = Math.min(config.poll.maxSeconds / 2, 600);
    const waits = await waitsAfter(
      [fail(statusError(503, 'poll', String(asked))), fail(statusError(429, 'poll', String(asked)))],
      () => 0.999,
    );
    for (const w of waits.slice(0, 2)) {
      expect(w).toBeGreaterThanOrEqual(asked * 1000);
      expect(w).toBeLessThanOrEqual(asked * 1500);
    }
  });

  it('honours at most an hour of Retry-After (spread), and never beyond the longest poll interval', async () => {
    const [w] = await waitsAfter([fail(statusError(503, 'poll', '31536000'))], () => 0.999);
    expect(w).toBe(Math.min(config.poll.maxSeconds * 1000, Math.round(MAX_RETRY_AFTER_MS * 1.4995)));
    const short = parseAgentConfig({ ...rawConfig, poll: { defaultSeconds: 600, maxSeconds: 900 } });
    const [capped] = await waitsAfter([fail(statusError(429, 'poll', '3600'))], () => 0.5, short);
    expect(capped).toBe(900_000);
  });

  it('ignores Retry-After on other statuses (a 500 is our own backoff)', async () => {
    const e = statusError(500, 'poll', '600');
    expect(e.retryAfterMs).toBeUndefined();
    expect((await waitsAfter([fail(e)]))[0]).toBe(config.poll.minSeconds * 1000);
  });
});
