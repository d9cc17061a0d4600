// The device agent: polls the update server (outbound only), installs offers and offline release
// directories through the Installer, reboots through the configured hook, and after the reboot
// runs the health checks and commits (mark good, report) or rejects the new slot. Clock, fetch,
// boot identity, command runner and boot control are injectable so tests wire real parts.
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type DeviceFacts, type TrustRoot, verifyRootChain, verifyTrustRoot } from '@abota/manifest';
import { readJsonFile, writeFileAtomic } from './atomic-file.js';
import { createBootControl } from './boot-control-config.js';
import type { BootControl, SlotName } from './bootctl/index.js';
import type { AgentConfig } from './config.js';
import {
  bootedRootHashes,
  type DeviceState,
  readDeviceState,
  runningVersion,
  securityFloor,
  writeDeviceState,
} from './device-state.js';
import { isDeviceSideError } from './error-class.js';
import { ClientError } from './errors.js';
import { type CommandRunner, describeResult, runCommand } from './hooks.js';
import { type BackoffOptions, DEFAULT_BACKOFF, sleep as defaultSleep } from './http/backoff.js';
import { DeviceKey } from './http/device-auth.js';
import { type DeviceReport, type ReportState, UpdateServerClient } from './http/server-api.js';
import { TokenBucket } from './http/token-bucket.js';
import { type InstallNotice, Installer } from './install/installer.js';
import { type InstallJournal, isInProgress, readJournal, writeJournal } from './install/journal.js';
import {
  claimedVersion,
  clearLastRefusal,
  type LastRefusal,
  readLastRefusal,
  writeLastRefusal,
} from './last-refusal.js';
import { DirectoryReleaseSource, type ReleaseSource, ServerReleaseSource } from './install/release-source.js';
import { ReportOutbox } from './report-outbox.js';
import { assertServerTransport } from './server-url.js';

export interface AgentLogEvent {
  level: 'info' | 'warn' | 'error';
  message: string;
  code?: string;
}

export interface AgentOptions {
  config: AgentConfig;
  /** Default: the backend the config names. */
  bootControl?: BootControl;
  clock?: () => Date;
  /** Overrides config.server.url (tests, the simulator). */
  serverUrl?: string;
  fetch?: typeof fetch;
  random?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Identity of the current boot; default: read from config.bootIdPath. */
  bootId?: () => Promise<string>;
  runCommand?: CommandRunner;
  checkpointBytes?: number;
  /** Minimum time between two "downloading" progress reports. */
  reportIntervalMs?: number;
  backoff?: BackoffOptions;
  log?: (e: AgentLogEvent) => void;
}

export interface AgentStatus {
  deviceId: string | undefined;
  bootedSlot: SlotName;
  primarySlot: SlotName | undefined;
  version: string;
  /** The booted slot is the trial boot of an install, not committed yet. */
  trial?: boolean;
  securityVersionFloor: number;
  slots: DeviceState['slots'];
  install:
    | {
        phase: InstallJournal['phase'];
        version: string;
        targetSlot: SlotName;
        progressPercent: number;
        bytesDone: number;
        bytesTotal: number;
        updatedAt: string;
        error?: { code: string; message: string };
        /** Per image: how it is written and what it cost to download. */
        images: Record<
          string,
          {
            method: 'delta' | 'full' | undefined;
            downloadedBytes: number;
            artifactSizeBytes?: number;
            deltaSizeBytes?: number;
            deltaFallback?: { code: string; message: string };
          }
        >;
      }
    | undefined;
  /** The last release refused or failed (until an install succeeds): which, why and when. */
  lastRefusal: LastRefusal | undefined;
}

export type CheckResult =
  | { status: 'no-update'; pollAfterSeconds?: number }
  | { status: 'reboot-pending'; version: string }
  | { status: 'trial-pending'; version: string }
  | { status: 'installed'; version: string; rebooted: boolean; pollAfterSeconds?: number };

export type AfterBootResult =
  | { action: 'none' }
  | { action: 'reboot-pending'; version: string }
  | { action: 'committed'; version: string; slot: SlotName }
  | { action: 'rejected'; version: string; slot: SlotName; reason: string }
  | { action: 'rolled-back'; version: string; slot: SlotName };

const TRUST_CHAIN_FILE = 'trust-roots.json';

async function readBootId(path: string): Promise<string> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch {
    return 'unknown-boot';
  }
}

export class Agent {
  readonly config: AgentConfig;
  readonly bootControl: BootControl;
  private readonly clock: () => Date;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  private readonly random: () => number;
  private readonly run_: CommandRunner;
  private readonly bootId: () => Promise<string>;
  private readonly log: (e: AgentLogEvent) => void;
  private lastProgressReportMs = Number.NEGATIVE_INFINITY;
  private client: UpdateServerClient | undefined;
  private readonly outbox: ReportOutbox;

  private constructor(
    private readonly o: AgentOptions,
    bootControl: BootControl,
  ) {
    this.config = o.config;
    this.bootControl = bootControl;
    this.clock = o.clock ?? (() => new Date());
    this.sleep = o.sleep ?? defaultSleep;
    this.random = o.random ?? Math.random;
    this.run_ = o.runCommand ?? runCommand;
    this.bootId = o.bootId ?? (() => readBootId(o.config.bootIdPath));
    this.log = o.log ?? (() => {});
    this.outbox = new ReportOutbox(o.config.dataDir);
  }

  static async open(o: AgentOptions): Promise<Agent> {
    await mkdir(o.config.dataDir, { recursive: true, mode: 0o700 });
    return new Agent(o, o.bootControl ?? (await createBootControl(o.config)));
  }

  // ---- trust root ------------------------------------------------------------------------

  /** The baked-in root (config.trustRootPath) walked forward through adopted rotations. */
  async trustRoot(): Promise<TrustRoot> {
    let baked: string;
    try {
      baked = await readFile(this.config.trustRootPath, 'utf8');
    } catch (e) {
      throw new ClientError(
        'ERR_TRUST_ROOT',
        `trust root ${this.config.trustRootPath} cannot be read: ${(e as Error).message}`,
      );
    }
    const chain = ((await readJsonFile(join(this.config.dataDir, TRUST_CHAIN_FILE)).catch(() => undefined)) ??
      []) as string[];
    try {
      return await verifyRootChain(
        await verifyTrustRoot(baked),
        chain.map((c) => JSON.parse(c)),
        this.clock(),
      );
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      throw new ClientError(
        'ERR_TRUST_ROOT',
        `trust root ${this.config.trustRootPath} does not verify (${String(code)}: ${(e as Error).message})`,
        {
          cause: e,
        },
      );
    }
  }

  /**
   * A release may ship the roots of a rotation (TUF §5.3): adopt the newest one only if the
   * chain verifies from the device's current root; otherwise keep the current root (the
   * release then has to verify under it).
   */
  private async adoptTrustRoot(source: ReleaseSource, current: TrustRoot): Promise<TrustRoot> {
    const texts = await source.readRootChain();
    if (texts.length === 0) return current;
    try {
      const next = await verifyRootChain(
        current,
        texts.map((t) => JSON.parse(t)),
        this.clock(),
      );
      if (next.version > current.version) {
        const path = join(this.config.dataDir, TRUST_CHAIN_FILE);
        const chain = ((await readJsonFile(path).catch(() => undefined)) ?? []) as string[];
        await writeFileAtomic(path, JSON.stringify([...chain, ...texts.filter((t) => !chain.includes(t))]));
        this.log({ level: 'info', message: `adopted trust root v${next.version}` });
      }
      return next;
    } catch (e) {
      this.log({
        level: 'warn',
        message: `trust roots shipped with the release not adopted: ${(e as Error).message}`,
      });
      return current;
    }
  }

  // ---- server ----------------------------------------------------------------------------

  private async serverClient(): Promise<UpdateServerClient> {
    if (this.client !== undefined) return this.client;
    const url = this.o.serverUrl ?? this.config.server?.url;
    if (url === undefined) {
      throw new ClientError(
        'ERR_CONFIG_INVALID',
        'no update server configured (server.url or ABOTA_SERVER_URL)',
      );
    }
    if (this.config.server !== undefined && url === this.config.server.url)
      assertServerTransport(this.config.server);
    const state = await readDeviceState(this.config);
    const deviceId = this.config.deviceId ?? state.deviceId;
    this.client = new UpdateServerClient({
      baseUrl: url,
      audience: this.config.server?.audience ?? 'abota',
      tokenLifetimeSeconds: this.config.server?.tokenLifetimeSeconds ?? 180,
      key: await DeviceKey.load(this.config.deviceKeyPath),
      ...(deviceId !== undefined ? { deviceId } : {}),
      ...(this.o.fetch ? { fetch: this.o.fetch } : {}),
      clock: this.clock,
      backoff: this.backoffWithLog(),
      warn: (message) => this.log({ level: 'warn', message }),
    });
    return this.client;
  }

  /** Backoff whose every retry is logged with what failed and how long the agent now waits. */
  private backoffWithLog(): BackoffOptions {
    const backoff = this.o.backoff ?? DEFAULT_BACKOFF;
    return {
      ...backoff,
      sleep: this.sleep,
      random: this.random,
      onRetry: (e, failedTry, delayMs) => {
        const code = (e as { code?: unknown }).code;
        this.log({
          level: 'warn',
          ...(typeof code === 'string' ? { code } : {}),
          message: `${(e as Error).message}; waiting ${(delayMs / 1000).toFixed(1)} s before try ${failedTry + 1} of ${backoff.maxAttempts}`,
        });
      },
    };
  }

  private hasServer(): boolean {
    return (this.o.serverUrl ?? this.config.server?.url) !== undefined;
  }

  /** Create the device key if needed and register it with a provisioning token. */
  async register(token: string): Promise<string> {
    const url = this.o.serverUrl ?? this.config.server?.url;
    if (url === undefined)
      throw new ClientError('ERR_CONFIG_INVALID', 'no update server configured (server.url)');
    await DeviceKey.generate(this.config.deviceKeyPath);
    this.client = undefined;
    const client = await this.serverClient();
    const deviceId = await client.register({
      token,
      product: this.config.product,
      hardware: this.config.hardware,
      ...(this.config.attributes ? { attributes: this.config.attributes } : {}),
    });
    const state = await readDeviceState(this.config);
    await writeDeviceState(this.config, { ...state, deviceId });
    return deviceId;
  }

  /**
   * Best effort: a report that fails is logged, never fails the install. With `key` it is kept
   * in the outbox (report-outbox.ts) until the server accepts it, across restarts.
   */
  private async report(r: DeviceReport, key?: string): Promise<void> {
    if (!this.hasServer()) return;
    if (key === undefined) {
      await this.send(r);
      return;
    }
    // Through the outbox, after anything older still in it: the server sees the steps in order.
    await this.outbox.put(key, r);
    await this.flushOutbox();
  }

  private async send(r: DeviceReport): Promise<boolean> {
    try {
      const client = await this.serverClient();
      if (client.deviceId === undefined) return false;
      await client.report(r);
      return true;
    } catch (e) {
      this.log({
        level: 'warn',
        message: `report ${r.state} failed: ${(e as Error).message}`,
        code: (e as ClientError).code,
      });
      return false;
    }
  }

  /** Send the reports a previous run could not deliver, oldest first; stop at the first failure. */
  async flushOutbox(): Promise<void> {
    if (!this.hasServer()) return;
    for (const e of await this.outbox.list()) {
      if (!(await this.send(e.report))) return;
      await this.outbox.remove(e.key);
    }
  }

  private progressReporter(j: InstallJournal): void {
    if (j.phase !== 'writing') return;
    const now = performance.now();
    if (now - this.lastProgressReportMs < (this.o.reportIntervalMs ?? 15_000)) return;
    this.lastProgressReportMs = now;
    void this.report({
      ...(j.rolloutId !== undefined ? { rolloutId: j.rolloutId } : {}),
      version: j.version,
      state: 'downloading',
      progress: percent(j),
    });
  }

  // ---- facts and status ------------------------------------------------------------------

  private async deviceFacts(booted: SlotName): Promise<DeviceFacts> {
    const state = await readDeviceState(this.config);
    return {
      product: this.config.product,
      hardware: this.config.hardware,
      currentVersion: runningVersion(this.config, state, booted).version,
      securityVersionFloor: securityFloor(this.config, state),
    };
  }

  private async runningVersionNow(): Promise<string> {
    const state = await readDeviceState(this.config);
    return runningVersion(this.config, state, await this.bootControl.getBootedSlot()).version;
  }

  async status(): Promise<AgentStatus> {
    const state = await readDeviceState(this.config);
    const booted = await this.bootControl.getBootedSlot();
    const j = await readJournal(this.config.dataDir);
    // Booted into an install's trial: the slot runs that release, which no state records yet.
    const trial = j?.phase === 'boot-pending' && j.targetSlot === booted;
    return {
      lastRefusal: await readLastRefusal(this.config.dataDir),
      deviceId: this.config.deviceId ?? state.deviceId,
      bootedSlot: booted,
      primarySlot: await this.bootControl.getPrimarySlot().catch(() => undefined),
      version: trial ? j.version : runningVersion(this.config, state, booted).version,
      ...(trial ? { trial: true } : {}),
      securityVersionFloor: securityFloor(this.config, state),
      slots: state.slots,
      install:
        j === undefined
          ? undefined
          : {
              phase: j.phase,
              version: j.version,
              targetSlot: j.targetSlot,
              progressPercent: percent(j),
              bytesDone: j.progress.bytesDone,
              bytesTotal: j.progress.bytesTotal,
              updatedAt: j.updatedAt,
              ...(j.error ? { error: j.error } : {}),
              images: Object.fromEntries(
                Object.entries(j.images).map(([name, p]) => [
                  name,
                  {
                    method: p.method,
                    downloadedBytes: p.downloadedBytes ?? 0,
                    ...(p.artifactSizeBytes !== undefined ? { artifactSizeBytes: p.artifactSizeBytes } : {}),
                    ...(p.delta !== undefined ? { deltaSizeBytes: p.delta.sizeBytes } : {}),
                    ...(p.deltaFallback !== undefined ? { deltaFallback: p.deltaFallback } : {}),
                  },
                ]),
              ),
            },
    };
  }

  // ---- install ---------------------------------------------------------------------------

  private async install(
    source: ReleaseSource,
    req: {
      rolloutId?: string;
      allowDowngrade?: boolean;
      offeredVersion?: string;
      /** Offline: the version the release directory's manifest claims (unverified; status only). */
      claimedVersion?: string;
    },
    signal?: AbortSignal,
  ): Promise<InstallJournal> {
    try {
      const j = await this.installWith(source, req, signal);
      await clearLastRefusal(this.config.dataDir);
      await this.report(
        { ...rollout(j), version: j.version, state: 'installed', progress: 100 },
        `${j.installId}:installed`,
      );
      return j;
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      const after = await readJournal(this.config.dataDir).catch(() => undefined);
      // The offered version (a refused manifest has no journal); offline: the running one, if
      // the boot control can still tell it.
      const version =
        req.offeredVersion ?? (await this.runningVersionNow().catch((): undefined => undefined));
      // Interrupted while arming the trial: nothing has failed yet, after-boot settles it.
      const failed = code !== 'ERR_ABORTED' && after?.phase !== 'boot-pending';
      const refusedVersion = req.claimedVersion ?? version;
      if (failed && refusedVersion !== undefined) {
        await writeLastRefusal(this.config.dataDir, {
          ...(req.rolloutId !== undefined ? { rolloutId: req.rolloutId } : {}),
          version: refusedVersion,
          code: typeof code === 'string' ? code : 'ERR_INSTALL_FAILED',
          message: (e as Error).message,
          at: this.clock().toISOString(),
        }).catch(() => {});
      }
      if (failed && version !== undefined) {
        await this.report({
          ...(req.rolloutId !== undefined ? { rolloutId: req.rolloutId } : {}),
          version,
          // The device's own fault (error-class.ts) is no verdict on the release.
          state: isDeviceSideError(typeof code === 'string' ? code : undefined) ? 'device-error' : 'failed',
          errorCode: typeof code === 'string' ? code.slice(0, 64) : 'ERR_INSTALL_FAILED',
          message: (e as Error).message.slice(0, 1000),
        });
      }
      throw e;
    }
  }

  private async installWith(
    source: ReleaseSource,
    req: { rolloutId?: string; allowDowngrade?: boolean },
    signal?: AbortSignal,
  ): Promise<InstallJournal> {
    const trustRoot = await this.adoptTrustRoot(source, await this.trustRoot());
    const installer = new Installer({
      config: this.config,
      bootControl: this.bootControl,
      trustRoot,
      clock: this.clock,
      deviceFacts: (booted) => this.deviceFacts(booted),
      bootId: this.bootId,
      ...(this.o.checkpointBytes !== undefined ? { checkpointBytes: this.o.checkpointBytes } : {}),
      onProgress: (j) => this.progressReporter(j),
      onTargetInvalidated: async (slot) => {
        const state = await readDeviceState(this.config);
        const { [slot]: _gone, ...rest } = state.slots;
        const rewritten = new Set(state.rewrittenSlots ?? []).add(slot);
        await writeDeviceState(this.config, { ...state, slots: rest, rewrittenSlots: [...rewritten].sort() });
      },
      activeRootHashes: async (booted) =>
        bootedRootHashes(this.config, await readDeviceState(this.config), booted),
      onNotice: (n) => this.installNotice(n, req.rolloutId),
      ...(signal ? { signal } : {}),
    });
    return installer.install(source, {
      ...(req.rolloutId !== undefined ? { rolloutId: req.rolloutId } : {}),
      ...(req.allowDowngrade ? { allowDowngrade: true } : {}),
    });
  }

  /** Delta decisions are logged; a delta that failed (full artifact used instead) is also reported. */
  private async installNotice(n: InstallNotice, rolloutId: string | undefined): Promise<void> {
    this.log({ level: n.level, message: n.message, ...(n.code !== undefined ? { code: n.code } : {}) });
    if (n.kind !== 'delta-fallback' || n.version === undefined) return;
    await this.report({
      ...(rolloutId !== undefined ? { rolloutId } : {}),
      version: n.version,
      state: 'installing',
      ...(n.code !== undefined ? { errorCode: n.code.slice(0, 64) } : {}),
      message: n.message.slice(0, 1000),
    });
  }

  /** Offline/USB install from a release directory; the same verification as an online offer. */
  async installFromDirectory(
    dir: string,
    o: { reboot?: boolean; allowDowngrade?: boolean; signal?: AbortSignal } = {},
  ): Promise<InstallJournal> {
    const source = new DirectoryReleaseSource(dir);
    const claimed = claimedVersion(await source.readManifestJws().catch(() => ''));
    const j = await this.install(
      source,
      {
        ...(o.allowDowngrade ? { allowDowngrade: true } : {}),
        ...(claimed !== undefined ? { claimedVersion: claimed } : {}),
      },
      o.signal,
    );
    if (o.reboot) await this.reboot(j);
    return j;
  }

  /** Poll once; install an offer if there is one; reboot into it when `reboot`. */
  async checkOnce(o: { reboot?: boolean; signal?: AbortSignal } = {}): Promise<CheckResult> {
    const client = await this.serverClient();
    const booted = await this.bootControl.getBootedSlot();
    const state = await readDeviceState(this.config);
    const j = await readJournal(this.config.dataDir).catch(() => undefined);
    // An installed release waits for its trial boot: polling again would only re-offer it, and
    // installing anything now would disarm the trial.
    await this.flushOutbox();
    if (j?.phase === 'boot-pending') {
      if (j.bootId === (await this.bootId())) {
        // The trial may not have been armed yet when a previous run stopped (see afterBoot).
        await this.bootControl.setTryOnce(j.targetSlot);
        return { status: 'reboot-pending', version: j.version };
      }
      // Rebooted, but the trial is not settled yet (afterBoot decides; `run` does it first).
      return { status: 'trial-pending', version: j.version };
    }
    const offer = await client.poll({
      version: runningVersion(this.config, state, booted).version,
      bootedSlot: booted,
      ...(j !== undefined ? { installState: j.phase } : {}),
      product: this.config.product,
      hardware: this.config.hardware,
    });
    if (offer.status === 'no-update') {
      return { status: 'no-update', ...pollAfter(offer.pollAfterSeconds) };
    }
    const bucket =
      this.config.bandwidthLimitBytesPerSecond !== undefined
        ? new TokenBucket(this.config.bandwidthLimitBytesPerSecond)
        : undefined;
    const source = new ServerReleaseSource({
      manifestJws: offer.release.manifestJws,
      artifacts: offer.artifacts,
      deltas: offer.deltas,
      client,
      ...(bucket ? { bucket } : {}),
      backoff: this.backoffWithLog(),
      ...(this.o.fetch ? { fetch: this.o.fetch } : {}),
    });
    await this.report({
      ...(offer.rolloutId !== undefined ? { rolloutId: offer.rolloutId } : {}),
      version: offer.release.version,
      state: 'downloading',
      progress: 0,
    });
    const done = await this.install(
      source,
      {
        ...(offer.rolloutId !== undefined ? { rolloutId: offer.rolloutId } : {}),
        // The rollout's permission to go back; the installer still refuses anything below the
        // securityVersion floor (checkRelease), whatever the server says.
        ...(offer.allowDowngrade === true ? { allowDowngrade: true } : {}),
        offeredVersion: offer.release.version,
      },
      o.signal,
    );
    if (o.reboot) await this.reboot(done);
    return {
      status: 'installed',
      version: done.version,
      rebooted: o.reboot === true,
      ...pollAfter(offer.pollAfterSeconds),
    };
  }

  private async reboot(j: InstallJournal): Promise<void> {
    await this.report({ ...rollout(j), version: j.version, state: 'rebooting' });
    const argv = this.config.rebootCommand;
    const r = await this.run_(argv, 120_000);
    if (r.exitCode !== 0) {
      throw new ClientError('ERR_REBOOT_FAILED', `reboot command ${describeResult(argv, r)}`);
    }
  }

  // ---- after boot ------------------------------------------------------------------------

  private async healthy(): Promise<{ ok: true } | { ok: false; reason: string }> {
    for (const check of this.config.healthChecks) {
      const r = await this.run_(check.command, check.timeoutSeconds * 1000);
      if (r.exitCode !== 0 || r.timedOut)
        return { ok: false, reason: `health check ${describeResult(check.command, r)}` };
    }
    return { ok: true };
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
      else this.log({ level: 'warn', message: `running slot ${booted} not confirmed: ${h.reason}` });
      await this.flushOutbox();
      return { action: 'none' };
    }
    const sameBoot = j.bootId !== undefined && j.bootId === (await this.bootId());
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
          bootId: await this.bootId(),
          updatedAt: this.clock().toISOString(),
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
      if (this.hasServer()) await this.outbox.put(`${j.installId}:rolled-back`, report);
      await this.settle(j, 'rolled-back', { code: 'ERR_ROLLED_BACK', message });
      await this.report(report, `${j.installId}:rolled-back`);
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
    if (this.hasServer()) await this.outbox.put(`${j.installId}:committed`, report);
    await this.settle(j, 'committed');
    await this.report(report, `${j.installId}:committed`);
    this.log({ level: 'info', message: `committed ${j.version} on slot ${j.targetSlot}` });
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
    if (this.hasServer()) await this.outbox.put(`${j.installId}:failed`, report);
    await this.settle(j, 'failed', { code: 'ERR_HEALTH_CHECK_FAILED', message: reason });
    await this.report(report, `${j.installId}:failed`);
    this.log({ level: 'error', message: `rejected ${j.version} on slot ${j.targetSlot}: ${reason}` });
    if (reboot) {
      const r = await this.run_(this.config.rebootCommand, 120_000);
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
      updatedAt: this.clock().toISOString(),
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

  // ---- daemon ----------------------------------------------------------------------------

  /** Poll delay: the server's hint (else the default), clamped to the config bounds, ± jitter. */
  pollDelayMs(hintSeconds: number | undefined): number {
    const p = this.config.poll;
    const base = Math.min(p.maxSeconds, Math.max(p.minSeconds, hintSeconds ?? p.defaultSeconds));
    const factor = 1 + p.jitterFraction * (2 * this.random() - 1);
    return Math.round(base * factor * 1000);
  }

  /** The daemon: settle the last boot, resume an interrupted offline install, then poll forever. */
  async run(signal: AbortSignal): Promise<void> {
    try {
      const r = await this.afterBoot({ reboot: true });
      if (r.action !== 'none')
        this.log({ level: 'info', message: `after boot: ${r.action} ${'version' in r ? r.version : ''}` });
      if (r.action === 'reboot-pending') {
        const j = await readJournal(this.config.dataDir);
        if (j !== undefined) await this.reboot(j);
      }
    } catch (e) {
      this.log({
        level: 'error',
        message: `after-boot step failed: ${(e as Error).message}`,
        code: (e as ClientError).code,
      });
    }
    const pending = await readJournal(this.config.dataDir).catch(() => undefined);
    if (isInProgress(pending) && pending!.source.kind === 'directory') {
      try {
        await this.installFromDirectory(pending!.source.path, { reboot: true, signal });
      } catch (e) {
        this.log({
          level: 'error',
          message: `resuming offline install failed: ${(e as Error).message}`,
          code: (e as ClientError).code,
        });
      }
    }
    let failures = 0;
    while (!signal.aborted) {
      let delayMs: number;
      try {
        const r = await this.checkOnce({ reboot: true, signal });
        failures = 0;
        delayMs = this.pollDelayMs('pollAfterSeconds' in r ? r.pollAfterSeconds : undefined);
      } catch (e) {
        if (signal.aborted) break;
        failures++;
        this.log({ level: 'error', message: (e as Error).message, code: (e as ClientError).code });
        // Back off from a failing server up to the normal poll interval, with jitter.
        const p = this.config.poll;
        delayMs = this.pollDelayMs(
          Math.min(p.defaultSeconds, p.minSeconds * 2 ** Math.min(failures - 1, 16)),
        );
      }
      try {
        await this.sleep(delayMs, signal);
      } catch {
        break;
      }
    }
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

function percent(j: InstallJournal): number {
  if (j.phase === 'boot-pending' || j.phase === 'committed' || j.phase === 'written') return 100;
  return j.progress.bytesTotal === 0 ? 0 : Math.floor((100 * j.progress.bytesDone) / j.progress.bytesTotal);
}

function rollout(j: InstallJournal): { rolloutId?: string } {
  return j.rolloutId !== undefined ? { rolloutId: j.rolloutId } : {};
}

function pollAfter(s: number | undefined): { pollAfterSeconds?: number } {
  return s !== undefined ? { pollAfterSeconds: s } : {};
}

export type { ReportState };
