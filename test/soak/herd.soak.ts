// The thundering herd after an outage (issue 16, "at scale"): 10,000 simulated devices run the
// agent's real loop (runLoop: poll delay, jitter, backoff after failures) on a simulated clock —
// no real waiting. They start at random phases of the default poll interval, the server is down
// (every check fails ERR_HTTP_UNAVAILABLE) for 10 minutes, and the test measures the per-second
// arrival rate at the server after it comes back: the fleet must return spread by jitter, not
// as one wave.
import { type AgentConfig, ClientError, type LoopSteps, parseAgentConfig, runLoop } from '@abota/client';
import { describe, expect, it } from 'vitest';
import { printSummary, replay, soakCount, soakRandom } from './soak.js';

const DEVICES = soakCount('ABOTA_SOAK_HERD_DEVICES', 10_000);
const OUTAGE_SECONDS = soakCount('ABOTA_SOAK_HERD_OUTAGE_SECONDS', 600);

/** A simulated clock: sleepers wake in time order; time jumps to the next wake-up. */
class SimClock {
  now = 0;
  private readonly heap: { at: number; seq: number; wake: () => void }[] = [];
  private seq = 0;

  sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
    new Promise((wake, fail) => {
      if (signal?.aborted) return fail(new Error('aborted'));
      this.push({ at: this.now + ms, seq: this.seq++, wake });
    });

  /** Run until simulated time `end` (ms); `settle` lets the woken loops run up to their next sleep. */
  async runUntil(end: number): Promise<void> {
    while (this.heap.length > 0 && this.heap[0]!.at <= end) {
      const at = this.heap[0]!.at;
      this.now = at;
      while (this.heap.length > 0 && this.heap[0]!.at === at) this.pop().wake();
      await new Promise<void>((r) => setImmediate(r));
    }
    this.now = end;
  }

  private push(e: { at: number; seq: number; wake: () => void }): void {
    const h = this.heap;
    h.push(e);
    for (let i = h.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (!before(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  private pop(): { at: number; seq: number; wake: () => void } {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}
const before = (a: { at: number; seq: number }, b: { at: number; seq: number }) =>
  a.at < b.at || (a.at === b.at && a.seq < b.seq);

export interface HerdResult {
  /** Per-second arrivals (successful and refused checks) from the end of the outage on. */
  arrivalsAfter: number[];
  /** Devices that had failed at least once when the outage ended (they come back by backoff). */
  failedDevices: number;
  steadyPerSecond: number;
}

/** The fleet through one outage; the loop code is the agent's own. */
export async function simulateHerd(o: {
  devices: number;
  outageSeconds: number;
  config: AgentConfig;
  random: () => number;
  /** 'together': every device switched on at the same instant (a lock-step fleet). */
  phases?: 'random' | 'together';
}): Promise<HerdResult> {
  const clock = new SimClock();
  const intervalMs = o.config.poll.defaultSeconds * 1000;
  const outageStart = intervalMs; // every device has polled once, at its own phase
  const outageEnd = outageStart + o.outageSeconds * 1000;
  const end = outageEnd + 2 * intervalMs;
  const arrivals = new Array<number>(Math.ceil((end - outageEnd) / 1000) + 1).fill(0);
  const failed = new Set<number>();
  const controller = new AbortController();
  let started = 0;
  let allStarted: () => void = () => {};
  const ready = new Promise<void>((r) => {
    allStarted = r;
  });
  const loops: Promise<void>[] = [];
  for (let d = 0; d < o.devices; d++) {
    const phaseMs = o.phases === 'together' ? 0 : Math.floor(o.random() * intervalMs);
    let first = true;
    const steps: LoopSteps = {
      afterBoot: async () => ({ action: 'none' }),
      reboot: async () => {},
      installFromDirectory: async () => undefined,
      checkOnce: async () => {
        if (first) {
          first = false;
          if (++started === o.devices) allStarted();
          await clock.sleep(phaseMs); // the device was switched on at a random phase
        }
        const t = clock.now;
        if (t >= outageEnd) arrivals[Math.floor((t - outageEnd) / 1000)]! += 1;
        if (t >= outageStart && t < outageEnd) {
          failed.add(d);
          throw new ClientError('ERR_HTTP_UNAVAILABLE', 'server answered 503');
        }
        return { status: 'no-update', pollAfterSeconds: o.config.poll.defaultSeconds };
      },
    };
    loops.push(
      runLoop(
        { config: o.config, steps, sleep: clock.sleep, random: o.random, log: () => {} },
        controller.signal,
      ),
    );
  }
  await ready; // each loop read its (absent) journal and reached its first check
  await clock.runUntil(end);
  controller.abort();
  return {
    arrivalsAfter: arrivals.slice(0, Math.floor((end - outageEnd) / 1000)),
    failedDevices: failed.size,
    steadyPerSecond: o.devices / o.config.poll.defaultSeconds,
  };
}

/** A device config with every poll setting left at its default (plus `poll` overrides). */
function herdConfig(poll?: Record<string, number>): AgentConfig {
  return parseAgentConfig({
    deviceKeyPath: 'device-key.json',
    trustRootPath: 'root.json',
    product: 'eflow-vm',
    hardware: 'hyperv-x64',
    slots: {
      A: { rootfs: { path: '/dev/a', hashPath: '/dev/ha' } },
      B: { rootfs: { path: '/dev/b', hashPath: '/dev/hb' } },
    },
    bootControl: { backend: 'grub' },
    dataDir: '/nonexistent/abota-herd', // no install journal: straight to polling
    ...(poll === undefined ? {} : { poll }),
  });
}

/** The arrival figures after the outage and the bounds of "spread, not a wave" they break. */
function judge(r: HerdResult, config: AgentConfig): { lines: string[]; broken: string[] } {
  const a = r.arrivalsAfter;
  const peak = Math.max(...a);
  const peakSecond = a.indexOf(peak);
  const window = (s: number) => a.slice(0, s).reduce((x, y) => x + y, 0);
  let peak10 = 0;
  for (let i = 0; i + 10 <= a.length; i++) peak10 = Math.max(peak10, window(i + 10) - window(i));
  const lines = [
    `${DEVICES} devices, poll ${config.poll.defaultSeconds} s ± ${config.poll.jitterFraction * 100} %, outage ${OUTAGE_SECONDS} s; ${r.failedDevices} devices failed during it`,
    `steady rate ${r.steadyPerSecond.toFixed(2)}/s; after the outage: peak second ${peak} arrivals at +${peakSecond} s (${(peak / r.steadyPerSecond).toFixed(1)}× steady), peak 10 s ${peak10} (${(peak10 / 10 / r.steadyPerSecond).toFixed(1)}× steady)`,
    `first 10 s: ${window(10)}, first 60 s: ${window(60)}, first 600 s: ${window(600)} arrivals`,
  ];
  // Spread, not a wave: the devices that failed come back over their backoff steps (60 s,
  // 120 s, ... each ± 20 %), so the first minute runs a few times the steady rate (3.6–4.6×
  // over 10 s windows on seeds 1–5) while a wave would bring them all (~12 % of the fleet)
  // within seconds — more than 40× steady over 10 s.
  const broken: string[] = [];
  if (peak10 / 10 > 6 * r.steadyPerSecond) broken.push('peak 10 s window above 6× steady');
  if (window(10) >= 0.02 * DEVICES) broken.push('2 % of the fleet or more in the first 10 s');
  if (window(60) >= 0.5 * r.failedDevices + 60 * r.steadyPerSecond)
    broken.push('half the failed devices or more in the first minute');
  return { lines, broken };
}

describe('herd: the fleet after a 10-minute outage', () => {
  it('comes back spread by jitter, not as one wave', async () => {
    const startedMs = performance.now();
    const config = herdConfig();
    const r = await simulateHerd({
      devices: DEVICES,
      outageSeconds: OUTAGE_SECONDS,
      config,
      random: soakRandom(16),
    });
    const { lines, broken } = judge(r, config);
    printSummary('herd', startedMs, lines);
    expect(r.failedDevices, replay(lines)).toBeGreaterThan(0);
    expect(broken, replay(lines)).toEqual([]);
  });

  it('the same bounds catch a wave: a lock-step fleet (switched on together, no jitter) breaks them', async () => {
    const startedMs = performance.now();
    const config = herdConfig({ jitterFraction: 0 });
    const r = await simulateHerd({
      devices: DEVICES,
      outageSeconds: OUTAGE_SECONDS,
      config,
      random: soakRandom(17),
      phases: 'together',
    });
    const { lines, broken } = judge(r, config);
    printSummary('herd (lock-step)', startedMs, lines);
    expect(r.failedDevices, replay(lines)).toBe(DEVICES);
    expect(broken, replay(lines)).toContain('peak 10 s window above 6× steady');
  });
});
