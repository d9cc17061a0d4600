// The device agent: polls the update server (outbound only), installs offers and offline release
// directories through the Installer and reboots through the configured hook. Its other concerns
// live beside it: the trust root and its rotations (agent-trust-roots.ts), reports and their
// outbox (agent-reports.ts), the post-boot commit/reject (agent-after-boot.ts), status
// (agent-status.ts) and the daemon loop (agent-loop.ts). Clock, fetch, boot identity, command
// runner and boot control are injectable so tests wire real parts.
import { mkdir, readFile } from 'node:fs/promises';
import type { DeviceFacts, TrustRoot } from '@abota/manifest';
import { type AfterBootResult, TrialSettler } from './agent-after-boot.js';
import { HealthBaker } from './agent-bake.js';
import type { AgentLogEvent } from './agent-log.js';
import { type CheckResult, pollDelayMs, runLoop } from './agent-loop.js';
import { DeviceReporter, rollout } from './agent-reports.js';
import { type AgentStatus, agentStatus } from './agent-status.js';
import { TrustRootStore } from './agent-trust-roots.js';
import { createBootControl } from './boot-control-config.js';
import type { BootControl, SlotName } from './bootctl/index.js';
import type { AgentConfig } from './config.js';
import {
  bootedRootHashes,
  readDeviceState,
  runningVersion,
  securityFloor,
  writeDeviceState,
} from './device-state.js';
import { isNoVerdictOnRelease } from './error-class.js';
import { ClientError } from './errors.js';
import { type CommandRunner, describeResult, runCommand } from './hooks.js';
import { type BackoffOptions, DEFAULT_BACKOFF, sleep as defaultSleep } from './http/backoff.js';
import { DeviceKey } from './http/device-auth.js';
import { type ReportState, UpdateServerClient } from './http/server-api.js';
import { TokenBucket } from './http/token-bucket.js';
import { type InstallNotice, Installer } from './install/installer.js';
import { type InstallJournal, readJournal } from './install/journal.js';
import { DirectoryReleaseSource, type ReleaseSource, ServerReleaseSource } from './install/release-source.js';
import { claimedVersion, clearLastRefusal, writeLastRefusal } from './last-refusal.js';
import { freezeWarning, noteValidOffer, startOfferClock } from './offer-freshness.js';
import { assertServerTransport } from './server-url.js';
import type { Watchdog } from './watchdog.js';

export type { AfterBootResult, AgentLogEvent, AgentStatus, CheckResult, ReportState };

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
  /** The systemd watchdog (`run` under WatchdogSec=): started by run(), fed by its progress. */
  watchdog?: Watchdog;
}

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
  private client: UpdateServerClient | undefined;
  private readonly trustRoots: TrustRootStore;
  private readonly reporter: DeviceReporter;
  private readonly trial: TrialSettler;
  private readonly baker: HealthBaker;

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
    this.trustRoots = new TrustRootStore({
      trustRootPath: o.config.trustRootPath,
      dataDir: o.config.dataDir,
      log: this.log,
    });
    this.reporter = new DeviceReporter({
      dataDir: o.config.dataDir,
      hasServer: this.hasServer(),
      client: () => this.serverClient(),
      log: this.log,
      ...(o.reportIntervalMs !== undefined ? { reportIntervalMs: o.reportIntervalMs } : {}),
    });
    this.trial = new TrialSettler({
      config: o.config,
      bootControl,
      clock: this.clock,
      run: this.run_,
      bootId: this.bootId,
      reporter: this.reporter,
      log: this.log,
    });
    this.baker = new HealthBaker({
      config: o.config,
      clock: this.clock,
      run: this.run_,
      bootId: this.bootId,
      reporter: this.reporter,
      log: this.log,
    });
  }

  static async open(o: AgentOptions): Promise<Agent> {
    await mkdir(o.config.dataDir, { recursive: true, mode: 0o700 });
    return new Agent(o, o.bootControl ?? (await createBootControl(o.config)));
  }

  /** The baked-in root (config.trustRootPath) walked forward through adopted rotations. */
  trustRoot(): Promise<TrustRoot> {
    return this.trustRoots.current();
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
      ...(this.config.server?.requestTimeoutSeconds !== undefined
        ? { requestTimeoutMs: this.config.server.requestTimeoutSeconds * 1000 }
        : {}),
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
        // A retry is progress of a kind: the request ended (within its deadline) and is tried again.
        this.o.watchdog?.beat();
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

  /** Send the reports a previous run could not deliver, oldest first; stop at the first failure. */
  flushOutbox(): Promise<void> {
    return this.reporter.flush();
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

  status(): Promise<AgentStatus> {
    return agentStatus(this.config, this.bootControl, this.clock());
  }

  /** The day of the last "no valid offer" warning logged: once a day is enough. */
  private freezeWarnedDay: number | undefined;

  /** After a "no update" answer: log the freeze warning once a day while it holds. */
  private async warnIfFrozen(): Promise<void> {
    const now = this.clock();
    const f = await startOfferClock(this.config.dataDir, now);
    const w = freezeWarning(f, now, this.config.freezeWarningDays);
    if (w === undefined || this.freezeWarnedDay === w.days) return;
    this.freezeWarnedDay = w.days;
    this.log({ level: 'warn', message: w.message, code: 'WARN_NO_VALID_OFFER' });
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
      await this.reporter.report(
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
        await this.reporter.report({
          ...(req.rolloutId !== undefined ? { rolloutId: req.rolloutId } : {}),
          version,
          // The device's own fault or a failed transport (error-class.ts) is no verdict on the release.
          state: isNoVerdictOnRelease(typeof code === 'string' ? code : undefined)
            ? 'device-error'
            : 'failed',
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
    const trustRoot = await this.trustRoots.adopt(
      await source.readRootChain(),
      await this.trustRoots.current(),
    );
    const installer = new Installer({
      config: this.config,
      bootControl: this.bootControl,
      trustRoot,
      clock: this.clock,
      deviceFacts: (booted) => this.deviceFacts(booted),
      bootId: this.bootId,
      onReleaseVerified: (version) => noteValidOffer(this.config.dataDir, version, this.clock()),
      ...(this.o.checkpointBytes !== undefined ? { checkpointBytes: this.o.checkpointBytes } : {}),
      onProgress: (j) => this.reporter.progress(j),
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
    await this.reporter.report({
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
    // The server sends the rotations after this root with an offer; a root that does not
    // verify is reported when an install needs it, not here.
    const rootVersion = (await this.trustRoots.current().catch(() => undefined))?.version;
    const offer = await client.poll({
      version: runningVersion(this.config, state, booted).version,
      ...(rootVersion !== undefined ? { trustRootVersion: rootVersion } : {}),
      bootedSlot: booted,
      ...(j !== undefined ? { installState: j.phase } : {}),
      product: this.config.product,
      hardware: this.config.hardware,
    });
    if (offer.status === 'update') await this.baker.noteOffer(offer.rolloutId, offer.health?.bakeSeconds);
    if (offer.status === 'no-update') {
      await this.warnIfFrozen();
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
      ...(offer.roots !== undefined ? { roots: offer.roots } : {}),
      client,
      ...(bucket ? { bucket } : {}),
      backoff: this.backoffWithLog(),
      ...(this.o.fetch ? { fetch: this.o.fetch } : {}),
      minRate: this.minDownloadRate(),
      ...(this.o.watchdog ? { onChunk: () => this.o.watchdog?.beat() } : {}),
    });
    await this.reporter.report({
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

  /**
   * Slow-retrieval limits of blob downloads (config server.minDownloadBytesPerSecond and
   * slowDownloadWindowSeconds). A bandwidth limit below the minimum would trip it, so the
   * minimum is then half the limit.
   */
  private minDownloadRate(): { bytesPerSecond: number; windowMs: number } {
    const s = this.config.server;
    const limit = this.config.bandwidthLimitBytesPerSecond ?? Number.POSITIVE_INFINITY;
    return {
      bytesPerSecond: Math.max(1, Math.min(s?.minDownloadBytesPerSecond ?? 1024, Math.floor(limit / 2))),
      windowMs: (s?.slowDownloadWindowSeconds ?? 60) * 1000,
    };
  }

  /** Report `rebooting` and run the reboot hook. */
  async reboot(j: InstallJournal): Promise<void> {
    await this.reporter.report({ ...rollout(j), version: j.version, state: 'rebooting' });
    const argv = this.config.rebootCommand;
    const r = await this.run_(argv, 120_000);
    if (r.exitCode !== 0) {
      throw new ClientError('ERR_REBOOT_FAILED', `reboot command ${describeResult(argv, r)}`);
    }
  }

  // ---- after boot (agent-after-boot.ts) and the daemon (agent-loop.ts) ------------------

  /** Run once per boot, before polling: settle an install waiting for its trial boot. */
  async afterBoot(o: { reboot?: boolean } = {}): Promise<AfterBootResult> {
    // A window in progress first: this boot counts (crash loop), or the old slot came back.
    await this.baker.afterBoot(await this.bootControl.getBootedSlot());
    const r = await this.trial.afterBoot(o);
    if (r.action === 'committed') await this.bakeCommitted();
    return r;
  }

  /** Starts the health bake window of the release just committed (agent-bake.ts). */
  private async bakeCommitted(): Promise<void> {
    const j = await readJournal(this.config.dataDir);
    if (j?.phase === 'committed') await this.baker.committed(j);
  }

  /** Milliseconds until the bake window's next health check; undefined outside a window. */
  bakeDueInMs(): Promise<number | undefined> {
    return this.baker.dueInMs();
  }

  /** Runs the bake window's health check if due, and reports it. */
  bakeTick(): Promise<void> {
    return this.baker.tick();
  }

  /** Operator confirmation: commit the pending trial now (skipping the health checks), or confirm the running slot. */
  async markGood(): Promise<AfterBootResult> {
    const r = await this.trial.markGood();
    if (r.action === 'committed') await this.bakeCommitted();
    return r;
  }

  /** Operator rejection of the trial boot of the pending install (booted in the new slot). */
  markBad(o: { reboot?: boolean } = {}): Promise<AfterBootResult> {
    return this.trial.markBad(o);
  }

  /** Poll delay: the server's hint (else the default), clamped to the config bounds, ± jitter. */
  pollDelayMs(hintSeconds: number | undefined): number {
    return pollDelayMs(this.config.poll, hintSeconds, this.random);
  }

  /** The daemon: settle the last boot, resume an interrupted offline install, then poll forever. */
  async run(signal: AbortSignal): Promise<void> {
    const watchdog = this.o.watchdog;
    watchdog?.start();
    try {
      await runLoop(
        {
          config: this.config,
          steps: this,
          sleep: this.sleep,
          random: this.random,
          log: this.log,
          ...(watchdog ? { watchdog } : {}),
        },
        signal,
      );
    } finally {
      watchdog?.stop();
    }
  }
}

function pollAfter(s: number | undefined): { pollAfterSeconds?: number } {
  return s !== undefined ? { pollAfterSeconds: s } : {};
}
