// After a reboot into an installed release: run the health checks and commit the new slot
// (mark good, make it primary, raise the securityVersion floor, report) or reject it; notice
// a bootloader fallback (rolled back); and the operator's mark-good / mark-bad.
import type { AgentLog } from './agent-log.js';
import { type DeviceReporter, rollout } from './agent-reports.js';
import type { BootControl, SlotName } from './bootctl/index.js';
import type { AgentConfig } from './config.js';
import { readDeviceState, writeDeviceState } from './device-state.js';
import { ClientError } from './errors.js';
import { runHealthChecks } from './agent-bake.js';
import { type CommandRunner, describeResult } from './hooks.js';
import type { DeviceReport } from './http/server-api.js';
import { type InstallJournal, readJournal, writeJournal } from './install/journal.js';

export type AfterBootResult =
  | { action: 'none' }
  | { action: 'reboot-pending'; version: string }
  | { action: 'committed'; version: string; slot: SlotName }
  | { action: 'rejected'; version: string; slot: SlotName; reason: string }
  | { action: 'rolled-back'; version: string; slot: SlotName };

export interface TrialSettlerOptions {
  config: AgentConfig;
  bootControl: BootControl;
  clock: () => Date;
  run: CommandRunner;
  bootId: () => Promise<string>;
  reporter: DeviceReporter;
  log: AgentLog;
}

export class TrialSettler {
  private readonly config: AgentConfig;
  private readonly bootControl: BootControl;

  constructor(private readonly o: TrialSettlerOptions) {
    this.config = o.config;
    this.bootControl = o.bootControl;
  }

  private healthy(): Promise<{ ok: true } | { ok: false; reason: string }> {
    return runHealthChecks(this.config.healthChecks, this.o.run);
  }

  /**
   * Run once per boot, before polling: settle an install waiting for its trial boot.
   * Booted into the new slot → health checks → commit or reject (and reboot back when `reboot`).
   * Booted into the old slot after a reboot → the bootloader fell back: rolled back.
   * Without a pending install, a healthy boot confirms the running slot (GRUB/RAUC scheme).
   */
  async afterBoot(o: { reboot?: boolean } = {}): Promise<AfterBootResult> {
    const read = await readJournal(this.config.dataDir);
    const booted = await this.bootControl.getBootedSlot();
    const j = trialOf(read, booted);
    if (j === undefined) {
      const h = await this.healthy();
      if (h.ok) await this.bootControl.markGood(booted);
      else this.o.log({ level: 'warn', message: `running slot ${booted} not confirmed: ${h.reason}` });
      await this.o.reporter.flush();
      return { action: 'none' };
    }
    const sameBoot = j.bootId !== undefined && j.bootId === (await this.o.bootId());
    if (sameBoot || (booted !== j.targetSlot && j.armed === false)) {
      // No reboot since the trial was journalled, or the old slot came back from a trial that
      // was journalled but maybe never armed (a cut before setTryOnce returned): arm it
      // (idempotent) — the reboot that follows must find it armed. A trial that did fail in
      // that window gets one more try; `armed` makes it the last.
      await this.bootControl.setTryOnce(j.targetSlot);
      if (!sameBoot || j.armed !== true)
        await writeJournal(this.config.dataDir, {
          ...j,
          armed: true,
          bootId: await this.o.bootId(),
          updatedAt: this.o.clock().toISOString(),
        });
      return { action: 'reboot-pending', version: j.version };
    }
    if (booted !== j.targetSlot) {
      await this.bootControl.markBad(j.targetSlot);
      const message = `booted slot ${booted} again after trying ${j.version} on slot ${j.targetSlot}: the trial boot did not come up`;
      const report: DeviceReport = {
        ...rollout(j),
        version: j.previousVersion,
        state: 'rolled-back',
        bootedSlot: booted,
        errorCode: 'ERR_ROLLED_BACK',
        message,
      };
      await this.o.reporter.keep(`${j.installId}:rolled-back`, report);
      await this.settle(j, 'rolled-back', { code: 'ERR_ROLLED_BACK', message });
      await this.o.reporter.report(report, `${j.installId}:rolled-back`);
      const h = await this.healthy();
      if (h.ok) await this.bootControl.markGood(booted);
      return { action: 'rolled-back', version: j.version, slot: booted };
    }
    const h = await this.healthy();
    if (h.ok) {
      await this.commit(j);
      return { action: 'committed', version: j.version, slot: booted };
    }
    await this.reject(j, h.reason, o.reboot === true);
    return { action: 'rejected', version: j.version, slot: booted, reason: h.reason };
  }

  private async commit(j: InstallJournal): Promise<void> {
    await this.bootControl.markGood(j.targetSlot);
    await this.bootControl.setPrimary(j.targetSlot);
    const state = await readDeviceState(this.config);
    await writeDeviceState(this.config, {
      ...state,
      slots: {
        ...state.slots,
        [j.targetSlot]: {
          version: j.version,
          securityVersion: j.securityVersion,
          // What a delta to the next release is checked against (journals from before: unknown).
          ...(j.rootHashes !== undefined ? { rootHashes: j.rootHashes } : {}),
        },
      },
      // Anti-rollback: once this release runs, nothing below its securityVersion is accepted.
      securityVersionFloor: Math.max(state.securityVersionFloor, j.securityVersion),
    });
    // The report is saved before the journal says committed: a cut between the two must not lose it.
    const report: DeviceReport = {
      ...rollout(j),
      version: j.version,
      state: 'committed',
      bootedSlot: j.targetSlot,
      progress: 100,
    };
    await this.o.reporter.keep(`${j.installId}:committed`, report);
    await this.settle(j, 'committed');
    await this.o.reporter.report(report, `${j.installId}:committed`);
    this.o.log({ level: 'info', message: `committed ${j.version} on slot ${j.targetSlot}` });
  }

  private async reject(j: InstallJournal, reason: string, reboot: boolean): Promise<void> {
    await this.bootControl.markBad(j.targetSlot);
    const report: DeviceReport = {
      ...rollout(j),
      version: j.version,
      state: 'failed',
      errorCode: 'ERR_HEALTH_CHECK_FAILED',
      message: reason,
    };
    await this.o.reporter.keep(`${j.installId}:failed`, report);
    await this.settle(j, 'failed', { code: 'ERR_HEALTH_CHECK_FAILED', message: reason });
    await this.o.reporter.report(report, `${j.installId}:failed`);
    this.o.log({ level: 'error', message: `rejected ${j.version} on slot ${j.targetSlot}: ${reason}` });
    if (reboot) {
      const r = await this.o.run(this.config.rebootCommand, 120_000);
      if (r.exitCode !== 0)
        throw new ClientError(
          'ERR_REBOOT_FAILED',
          `reboot command ${describeResult(this.config.rebootCommand, r)}`,
        );
    }
  }

  private async settle(
    j: InstallJournal,
    phase: 'committed' | 'failed' | 'rolled-back',
    error?: { code: string; message: string },
  ): Promise<void> {
    await writeJournal(this.config.dataDir, {
      ...j,
      phase,
      updatedAt: this.o.clock().toISOString(),
      ...(error ? { error } : {}),
    });
  }

  /** Operator confirmation: commit the pending trial now (skipping the health checks), or confirm the running slot. */
  async markGood(): Promise<AfterBootResult> {
    const booted = await this.bootControl.getBootedSlot();
    const j = trialOf(await readJournal(this.config.dataDir), booted);
    if (j !== undefined && booted === j.targetSlot) {
      await this.commit(j);
      return { action: 'committed', version: j.version, slot: booted };
    }
    await this.bootControl.markGood(booted);
    return { action: 'none' };
  }

  /** Operator rejection of the trial boot of the pending install (booted in the new slot). */
  async markBad(o: { reboot?: boolean } = {}): Promise<AfterBootResult> {
    const read = await readJournal(this.config.dataDir);
    const booted = await this.bootControl.getBootedSlot();
    const j = trialOf(read, booted);
    if (j === undefined || booted !== j.targetSlot) {
      throw new ClientError(
        'ERR_INSTALL_NOTHING_PENDING',
        `no trial boot to reject: slot ${booted} is running${read ? ` and the last install is ${read.phase}` : ''}; ` +
          'the running confirmed slot is never marked bad by hand',
      );
    }
    const reason = 'marked bad by the operator';
    await this.reject(j, reason, o.reboot === true);
    return { action: 'rejected', version: j.version, slot: booted, reason };
  }
}

/**
 * The install whose trial boot is to be settled now, if any. `boot-pending` is journalled
 * before the trial is armed, so it covers every cut around setTryOnce. A journal still at
 * `written` whose target is the running slot was left by an agent that armed the trial before
 * journalling it (before this order was fixed): the target was marked bad when its writing
 * began, so booting it means the trial was armed — it is settled like `boot-pending`.
 */
function trialOf(j: InstallJournal | undefined, booted: SlotName): InstallJournal | undefined {
  if (j === undefined) return undefined;
  if (j.phase === 'boot-pending') return j;
  if (j.phase === 'written' && j.targetSlot === booted && j.bootedSlot !== booted) {
    const { bootId: _unknown, ...rest } = j;
    return { ...rest, phase: 'boot-pending' };
  }
  return undefined;
}
