// The daemon loop: settle the last boot, resume an interrupted offline install, then poll
// forever at the server's pace (clamped to the config, with jitter), backing off from failures.
import type { AfterBootResult } from './agent-after-boot.js';
import type { AgentLog } from './agent-log.js';
import type { AgentConfig } from './config.js';
import type { ClientError } from './errors.js';
import { retryDelayMs } from './http/backoff.js';
import { type InstallJournal, isInProgress, readJournal } from './install/journal.js';

export type CheckResult =
  | { status: 'no-update'; pollAfterSeconds?: number }
  | { status: 'reboot-pending'; version: string }
  | { status: 'trial-pending'; version: string }
  | { status: 'installed'; version: string; rebooted: boolean; pollAfterSeconds?: number };

/** The steps of the loop (the Agent's). */
export interface LoopSteps {
  afterBoot(o: { reboot?: boolean }): Promise<AfterBootResult>;
  reboot(j: InstallJournal): Promise<void>;
  installFromDirectory(dir: string, o: { reboot?: boolean; signal?: AbortSignal }): Promise<unknown>;
  checkOnce(o: { reboot?: boolean; signal?: AbortSignal }): Promise<CheckResult>;
  /** The health bake window after a commit (agent-bake.ts): when its next check is due, and run it. */
  bakeDueInMs?(): Promise<number | undefined>;
  bakeTick?(): Promise<void>;
}

export interface LoopOptions {
  config: AgentConfig;
  steps: LoopSteps;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  random: () => number;
  log: AgentLog;
  /** Told the loop is alive (watchdog.ts): each poll and each slice of the sleep between polls. */
  watchdog?: { beat(): void; readonly beatEveryMs: number };
}

/** Poll delay: the server's hint (else the default), clamped to the config bounds, ± jitter. */
export function pollDelayMs(
  p: AgentConfig['poll'],
  hintSeconds: number | undefined,
  random: () => number,
): number {
  const base = Math.min(p.maxSeconds, Math.max(p.minSeconds, hintSeconds ?? p.defaultSeconds));
  const factor = 1 + p.jitterFraction * (2 * random() - 1);
  return Math.round(base * factor * 1000);
}

export async function runLoop(o: LoopOptions, signal: AbortSignal): Promise<void> {
  const { config, steps, log } = o;
  try {
    const r = await steps.afterBoot({ reboot: true });
    if (r.action !== 'none')
      log({ level: 'info', message: `after boot: ${r.action} ${'version' in r ? r.version : ''}` });
    if (r.action === 'reboot-pending') {
      const j = await readJournal(config.dataDir);
      if (j !== undefined) await steps.reboot(j);
    }
  } catch (e) {
    log({
      level: 'error',
      message: `after-boot step failed: ${(e as Error).message}`,
      code: (e as ClientError).code,
    });
  }
  const pending = await readJournal(config.dataDir).catch(() => undefined);
  if (isInProgress(pending) && pending!.source.kind === 'directory') {
    try {
      await steps.installFromDirectory(pending!.source.path, { reboot: true, signal });
    } catch (e) {
      log({
        level: 'error',
        message: `resuming offline install failed: ${(e as Error).message}`,
        code: (e as ClientError).code,
      });
    }
  }
  let failures = 0;
  while (!signal.aborted) {
    o.watchdog?.beat();
    let delayMs: number;
    try {
      const r = await steps.checkOnce({ reboot: true, signal });
      failures = 0;
      delayMs = pollDelayMs(config.poll, 'pollAfterSeconds' in r ? r.pollAfterSeconds : undefined, o.random);
    } catch (e) {
      if (signal.aborted) break;
      failures++;
      log({ level: 'error', message: (e as Error).message, code: (e as ClientError).code });
      // Back off from a failing server up to the normal poll interval, with jitter — or, when it
      // said how long (Retry-After on a 429/503), at least that, up to the longest poll interval.
      const p = config.poll;
      delayMs = retryDelayMs(
        e,
        pollDelayMs(p, Math.min(p.defaultSeconds, p.minSeconds * 2 ** Math.min(failures - 1, 16)), o.random),
        p.maxSeconds * 1000,
        o.random,
      );
    }
    try {
      await sleepBaking(o, delayMs, signal);
    } catch {
      break;
    }
  }
}

/**
 * Sleep until the next poll, waking for the bake window's health checks on their own schedule
 * (every health.intervalSeconds, whatever the poll interval).
 */
async function sleepBaking(o: LoopOptions, ms: number, signal: AbortSignal): Promise<void> {
  const { steps, log } = o;
  let left = ms;
  let baking = true;
  for (;;) {
    const due = baking ? await steps.bakeDueInMs?.().catch((): undefined => undefined) : undefined;
    if (due === 0) {
      try {
        await steps.bakeTick?.();
      } catch (e) {
        // Not again before the next poll: a check that cannot run must not spin the loop.
        baking = false;
        log({
          level: 'error',
          message: `health bake check failed: ${(e as Error).message}`,
          code: (e as ClientError).code,
        });
      }
      continue;
    }
    if (left <= 0) return;
    const slice = due === undefined ? left : Math.min(left, due);
    await sleepBeating(o, slice, signal);
    left -= slice;
  }
}

/** Sleep `ms`, in slices short enough for the watchdog to hear from the loop in between. */
async function sleepBeating(o: LoopOptions, ms: number, signal: AbortSignal): Promise<void> {
  if (o.watchdog === undefined) return o.sleep(ms, signal);
  for (let left = ms; left > 0; left -= o.watchdog.beatEveryMs) {
    o.watchdog.beat();
    await o.sleep(Math.min(left, o.watchdog.beatEveryMs), signal);
  }
}
