// Health after commit (the bake window): after committing a release the agent keeps re-running
// its health checks every `health.intervalSeconds` for the window the offer gave (the rollout
// stage's `bakeMinutes`; else config `health.bakeMinutes`) and reports `healthy` with how long it
// has stayed healthy since the commit, or `unhealthy` — the server counts that device as failed
// for the stage and advances the stage only once its devices stayed healthy for the window. A
// device booting more than `health.maxBootsInBake` times inside the window is crash-looping
// (unhealthy), and one whose bootloader went back to the old slot after the commit reports
// `rolled-back`. The window's state lives in health-bake.json, so it survives reboots; reports
// go through the outbox (agent-reports.ts) and reach the server once it is reachable.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as v from 'valibot';
import type { AgentLog } from './agent-log.js';
import type { DeviceReporter } from './agent-reports.js';
import { readJsonFile, writeFileAtomic } from './atomic-file.js';
import type { SlotName } from './bootctl/index.js';
import type { AgentConfig } from './config.js';
import { type CommandRunner, describeResult } from './hooks.js';
import type { InstallJournal } from './install/journal.js';

export const HEALTH_BAKE_FILE = 'health-bake.json';

const bakeSchema = v.object({
  /** The last offer's window, by rollout: applied when that rollout's release is committed. */
  offer: v.optional(v.object({ rolloutId: v.string(), bakeSeconds: v.number() })),
  active: v.optional(
    v.object({
      rolloutId: v.optional(v.string()),
      installId: v.string(),
      version: v.string(),
      previousVersion: v.string(),
      slot: v.picklist(['A', 'B']),
      committedAt: v.string(),
      bakeSeconds: v.number(),
      bootId: v.string(),
      boots: v.number(),
      nextCheckAt: v.string(),
    }),
  ),
});
type BakeState = v.InferOutput<typeof bakeSchema>;
export type ActiveBake = NonNullable<BakeState['active']>;

/** Runs the configured health checks in order; the first failure says why. */
export async function runHealthChecks(
  checks: AgentConfig['healthChecks'],
  run: CommandRunner,
): Promise<{ ok: true } | { ok: false; reason: string }> {
  for (const check of checks) {
    const r = await run(check.command, check.timeoutSeconds * 1000);
    if (r.exitCode !== 0 || r.timedOut)
      return { ok: false, reason: `health check ${describeResult(check.command, r)}` };
  }
  return { ok: true };
}

export interface HealthBakerOptions {
  config: AgentConfig;
  clock: () => Date;
  run: CommandRunner;
  bootId: () => Promise<string>;
  reporter: DeviceReporter;
  log: AgentLog;
}

export class HealthBaker {
  private readonly path: string;

  constructor(private readonly o: HealthBakerOptions) {
    this.path = join(o.config.dataDir, HEALTH_BAKE_FILE);
  }

  private async read(): Promise<BakeState> {
    const r = v.safeParse(bakeSchema, await readJsonFile(this.path).catch(() => undefined));
    return r.success ? r.output : {};
  }

  private async write(s: BakeState): Promise<void> {
    if (s.offer === undefined && s.active === undefined) await rm(this.path, { force: true });
    else await writeFileAtomic(this.path, `${JSON.stringify(s, null, 2)}\n`);
  }

  /** The window in progress, if any (`abota-agent status`, tests). */
  async active(): Promise<ActiveBake | undefined> {
    return (await this.read()).active;
  }

  /** An offer from a rollout: remember its window for when its release is committed. */
  async noteOffer(rolloutId: string | undefined, bakeSeconds: number | undefined): Promise<void> {
    const s = await this.read();
    const offer =
      rolloutId !== undefined && bakeSeconds !== undefined ? { rolloutId, bakeSeconds } : undefined;
    if (JSON.stringify(offer) === JSON.stringify(s.offer)) return;
    const { offer: _old, ...rest } = s;
    await this.write({ ...rest, ...(offer ? { offer } : {}) });
  }

  /** A release was just committed: start its window (none when neither offer nor config gives one). */
  async committed(j: InstallJournal): Promise<void> {
    const s = await this.read();
    const fromOffer =
      s.offer !== undefined && s.offer.rolloutId === j.rolloutId ? s.offer.bakeSeconds : undefined;
    const bakeSeconds = fromOffer ?? this.o.config.health.bakeMinutes * 60;
    if (bakeSeconds <= 0) {
      await this.write({});
      return;
    }
    const now = this.o.clock();
    await this.write({
      active: {
        ...(j.rolloutId !== undefined ? { rolloutId: j.rolloutId } : {}),
        installId: j.installId,
        version: j.version,
        previousVersion: j.previousVersion,
        slot: j.targetSlot,
        committedAt: now.toISOString(),
        bakeSeconds,
        bootId: await this.o.bootId(),
        boots: 1,
        nextCheckAt: this.nextCheck(now, now, bakeSeconds).toISOString(),
      },
    });
    this.o.log({
      level: 'info',
      message: `health bake of ${j.version}: ${bakeSeconds}s, checks every ${this.o.config.health.intervalSeconds}s`,
    });
  }

  private nextCheck(now: Date, committedAt: Date, bakeSeconds: number): Date {
    const end = committedAt.getTime() + bakeSeconds * 1000;
    return new Date(Math.min(now.getTime() + this.o.config.health.intervalSeconds * 1000, end));
  }

  /**
   * Once per agent start, with the booted slot: a boot inside the window is counted (too many:
   * a crash loop), and a boot into the other slot means the bootloader went back after the commit.
   */
  async afterBoot(booted: SlotName): Promise<void> {
    const { active: a } = await this.read();
    if (a === undefined) return;
    if (booted !== a.slot) {
      await this.finish(a, {
        version: a.previousVersion,
        state: 'rolled-back',
        bootedSlot: booted,
        errorCode: 'ERR_ROLLED_BACK_AFTER_COMMIT',
        message: `booted slot ${booted} during the health bake of ${a.version} committed on slot ${a.slot}`,
      });
      return;
    }
    const bootId = await this.o.bootId();
    if (bootId === a.bootId) return;
    const boots = a.boots + 1;
    if (boots > this.o.config.health.maxBootsInBake) {
      await this.finish(a, {
        version: a.version,
        state: 'unhealthy',
        errorCode: 'ERR_CRASH_LOOP',
        message: `${boots} boots within ${Math.round((this.o.clock().getTime() - Date.parse(a.committedAt)) / 1000)}s of committing ${a.version} (at most ${this.o.config.health.maxBootsInBake} in the ${a.bakeSeconds}s bake window)`,
      });
      return;
    }
    await this.write({ ...(await this.read()), active: { ...a, bootId, boots } });
  }

  /** Milliseconds until the next scheduled check (0: due now), undefined outside a window. */
  async dueInMs(): Promise<number | undefined> {
    const { active: a } = await this.read();
    if (a === undefined) return undefined;
    return Math.max(0, Date.parse(a.nextCheckAt) - this.o.clock().getTime());
  }

  /** Runs the health checks if due and reports; ends the window once it has passed healthy. */
  async tick(): Promise<void> {
    const { active: a } = await this.read();
    if (a === undefined) return;
    const now = this.o.clock();
    if (now.getTime() < Date.parse(a.nextCheckAt)) return;
    const h = await runHealthChecks(this.o.config.healthChecks, this.o.run);
    if (!h.ok) {
      await this.finish(a, {
        version: a.version,
        state: 'unhealthy',
        errorCode: 'ERR_HEALTH_CHECK_FAILED',
        message: h.reason.slice(0, 1000),
      });
      return;
    }
    const healthySeconds = Math.max(0, Math.floor((now.getTime() - Date.parse(a.committedAt)) / 1000));
    const done = healthySeconds >= a.bakeSeconds;
    // The latest healthy report replaces an undelivered older one in the outbox (same key).
    await this.o.reporter.report(
      {
        ...(a.rolloutId !== undefined ? { rolloutId: a.rolloutId } : {}),
        version: a.version,
        state: 'healthy',
        healthySeconds,
      },
      `${a.installId}:healthy`,
    );
    if (done) {
      this.o.log({
        level: 'info',
        message: `health bake of ${a.version} passed: healthy for ${healthySeconds}s`,
      });
      await this.write({});
      return;
    }
    await this.write({
      ...(await this.read()),
      active: {
        ...a,
        nextCheckAt: this.nextCheck(now, new Date(a.committedAt), a.bakeSeconds).toISOString(),
      },
    });
  }

  private async finish(
    a: ActiveBake,
    report: {
      version: string;
      state: 'unhealthy' | 'rolled-back';
      errorCode: string;
      message: string;
      bootedSlot?: SlotName;
    },
  ): Promise<void> {
    const key = `${a.installId}:${report.state}`;
    await this.o.reporter.keep(key, {
      ...(a.rolloutId !== undefined ? { rolloutId: a.rolloutId } : {}),
      ...report,
    });
    await this.write({});
    await this.o.reporter.report(
      { ...(a.rolloutId !== undefined ? { rolloutId: a.rolloutId } : {}), ...report },
      key,
    );
    this.o.log({
      level: 'error',
      message: `health bake of ${a.version}: ${report.state}: ${report.message}`,
      code: report.errorCode,
    });
  }
}
