// The install state machine (docs/architecture.md "The device side"), planned then executed:
// verify the offer's manifest against the trust root and the device's facts → fetch and verify
// every target hash tree (verified-tree.ts) → mark the inactive slot bad → plan each image
// (plan.ts: target device, hash area, full or delta, resume point) → write each image with its
// writer (slot-writers.ts), each block verified before it is written, falling back from a
// failed delta to the full artifact → write the hash areas → fsync → set the slot "try once".
// Every step is journalled by the journal's one owner (journal-writer.ts), so a crash anywhere
// resumes from the journal; nothing is written to any slot before the manifest check passes.
import { type FileHandle, rm } from 'node:fs/promises';
import {
  checkRelease,
  type DeviceFacts,
  type ImageManifest,
  type ReleaseManifest,
  type TrustRoot,
} from '@abota/manifest';
import type { BootControl } from '../bootctl/bootcontrol.js';
import type { AgentConfig, ImageRootHashes } from '../config.js';
import { ClientError, isClientError } from '../errors.js';
import { abortError } from '../http/backoff.js';
import { DeltaUnusable } from './delta-install.js';
import {
  deltaMetadataPath,
  type ImageProgress,
  type InstallJournal,
  readJournal,
  spoolPath,
  treePath,
} from './journal.js';
import { JournalWriter, newJournal, removeScratch } from './journal-writer.js';
import {
  type DeltaProblem,
  type ImageName,
  type ImagePlan,
  imagesOf,
  planInstall,
  type ResumePoint,
  resumesJournal,
  targetsOf,
} from './plan.js';
import type { DeltaCandidate, ReleaseSource } from './release-source.js';
import { deltaWriter, fullWriter, type ImageWrite } from './slot-writers.js';
import { VerifiedSlotReader } from './slot-reader.js';
import { deviceInfo, openSlotForWrite, otherSlot, type SlotName } from './slot-io.js';
import { VerifiedTree } from './verified-tree.js';

export { MAX_HASH_TREE_BYTES } from './verified-tree.js';

/** What the installer needs from a boot-control backend (src/bootctl). */
export type SlotBootControl = Pick<
  BootControl,
  'getBootedSlot' | 'getSlotState' | 'markBad' | 'setTryOnce' | 'installBootImage'
>;

/**
 * Durable checkpoint interval. Each checkpoint is an fdatasync of the slot plus a journal write;
 * at 16 MiB they cost about as much as the whole verified copy on this machine's disk
 * (bench/run.ts), at 64 MiB little — and a crash costs at most 64 MiB of re-download.
 */
export const DEFAULT_CHECKPOINT_BYTES = 64 * 1024 * 1024;

/** Failures after which the same install resumes from its journal instead of starting over. */
export const RESUMABLE_CODES: ReadonlySet<string> = new Set([
  'ERR_ABORTED',
  'ERR_HTTP_NETWORK',
  'ERR_HTTP_UNAVAILABLE',
  // The server stopped answering or sent too slowly after every retry: the bytes already
  // written and checkpointed are good, so the next attempt continues from the journal.
  'ERR_HTTP_TIMEOUT',
  'ERR_HTTP_TOO_SLOW',
  // A full disk: what was written up to the last checkpoint is good; free space and it resumes.
  'ERR_INSTALL_NO_SPACE',
]);

export interface InstallerOptions {
  config: AgentConfig;
  bootControl: SlotBootControl;
  trustRoot: TrustRoot;
  clock: () => Date;
  /** Facts of the running system (version, floor, product, hardware) for checkRelease. */
  deviceFacts: (booted: SlotName) => Promise<DeviceFacts>;
  /** Identity of the current boot, recorded when the slot is set "try once" (post-boot logic). */
  bootId: () => Promise<string>;
  /** A release passed the trust decision (before anything is written): offer-freshness.ts. */
  onReleaseVerified?: (version: string) => Promise<void>;
  /** Default DEFAULT_CHECKPOINT_BYTES. */
  checkpointBytes?: number;
  onProgress?: (j: InstallJournal) => void;
  /** Called once the target slot is about to be written (its old content stops being valid). */
  onTargetInvalidated?: (slot: SlotName) => Promise<void>;
  /**
   * Root hashes of the images in the booted (active) slot, as far as they are known
   * (device-state.ts bootedRootHashes). A delta is applied only from an image listed here with
   * the delta's source root hash. Absent: no deltas are used.
   */
  activeRootHashes?: (booted: SlotName) => Promise<ImageRootHashes>;
  /** What the installer decided about deltas, and delta failures it recovered from (log / report). */
  onNotice?: (notice: InstallNotice) => void | Promise<void>;
  signal?: AbortSignal;
}

export interface InstallNotice {
  level: 'info' | 'warn';
  /** `delta-fallback`: a delta failed and the image is installed from its full artifact. */
  kind: 'delta-used' | 'delta-skipped' | 'delta-fallback' | 'delta-ignored';
  image?: ImageName;
  code?: string;
  message: string;
  /** The release being installed (filled in by the installer). */
  version?: string;
}

export interface InstallRequest {
  rolloutId?: string;
  allowDowngrade?: boolean;
}

/** What an attempt works on once the manifest is trusted. */
interface Release {
  manifest: ReleaseManifest;
  manifestJws: string;
  images: [ImageName, ImageManifest][];
  booted: SlotName;
  target: SlotName;
}

export class Installer {
  constructor(private readonly o: InstallerOptions) {}

  /**
   * Install (or resume) the release `source` offers, up to "try once" set on the inactive slot.
   * Returns the journal in phase `boot-pending`; the caller reports and runs the reboot hook.
   */
  async install(source: ReleaseSource, req: InstallRequest = {}): Promise<InstallJournal> {
    const manifestJws = await source.readManifestJws();
    const booted = await this.o.bootControl.getBootedSlot();
    const target = otherSlot(booted);
    const previous = await readJournal(this.o.config.dataDir);
    await this.refuseOverUnconfirmed(previous, booted, target);

    // 1. The trust decision. Nothing below runs unless it passes.
    const facts = await this.o.deviceFacts(booted);
    const { manifest } = await checkRelease(
      manifestJws,
      this.o.trustRoot,
      { ...facts, ...(req.allowDowngrade ? { allowDowngrade: true } : {}) },
      this.o.clock(),
    );
    await this.o.onReleaseVerified?.(manifest.version);
    const release: Release = { manifest, manifestJws, images: imagesOf(manifest), booted, target };
    const journal = await this.openJournal(release, previous, source, req, facts.currentVersion);
    return new InstallAttempt(this.o, source, journal, release).run();
  }

  /**
   * 0. Never overwrite the fallback: while the running slot is an unconfirmed trial, the other
   *    slot is the only one known to boot.
   */
  private async refuseOverUnconfirmed(
    previous: InstallJournal | undefined,
    booted: SlotName,
    target: SlotName,
  ): Promise<void> {
    if (previous?.phase === 'boot-pending' && previous.targetSlot === booted) {
      throw new ClientError(
        'ERR_INSTALL_TRIAL_PENDING',
        `slot ${booted} runs ${previous.version} on trial and is not committed yet; slot ${target} is its fallback and ` +
          'is not overwritten — let the health checks commit it (abota-agent run) or use mark-good / mark-bad first',
      );
    }
    const running = await this.o.bootControl.getSlotState(booted);
    if (!running.good) {
      throw new ClientError(
        'ERR_INSTALL_TRIAL_PENDING',
        `the running slot ${booted} is not confirmed in the boot control; slot ${target} may be the only slot that boots, ` +
          'so it is not overwritten — confirm the running slot first (abota-agent mark-good, or the health checks of abota-agent run)',
      );
    }
  }

  /**
   * The journal of this attempt: the interrupted one continued (an install interrupted while
   * arming its trial, still in the same boot, resumes too: only the arming is repeated), or a new
   * one. A superseded install's scratch files are removed.
   */
  private async openJournal(
    r: Release,
    previous: InstallJournal | undefined,
    source: ReleaseSource,
    req: InstallRequest,
    previousVersion: string,
  ): Promise<JournalWriter> {
    const { config } = this.o;
    const resuming = resumesJournal(previous, {
      manifestJws: r.manifestJws,
      bootedSlot: r.booted,
      targetSlot: r.target,
      ...(previous?.phase === 'boot-pending' ? { currentBootId: await this.o.bootId() } : {}),
    });
    targetsOf(r.images, config.slots, r.target, r.manifest.version);
    if (!resuming && previous !== undefined) {
      // A superseded install's spool and delta metadata are of no further use.
      for (const name of Object.keys(previous.images))
        await removeScratch(config.dataDir, previous.installId, name);
    }
    const rollout = req.rolloutId !== undefined ? { rolloutId: req.rolloutId } : {};
    const journal = resuming
      ? { ...withoutError(previous!), ...rollout, source: source.journalSource }
      : newJournal({
          manifest: r.manifest,
          manifestJws: r.manifestJws,
          images: r.images,
          ...rollout,
          bootedSlot: r.booted,
          targetSlot: r.target,
          source: source.journalSource,
          previousVersion,
          now: this.o.clock(),
        });
    const writer = new JournalWriter(journal, {
      dataDir: config.dataDir,
      clock: this.o.clock,
      images: r.images,
      ...(this.o.onProgress ? { onProgress: this.o.onProgress } : {}),
    });
    await writer.save();
    return writer;
  }
}

/** One run of an install: executes the steps the journal has not recorded as done yet. */
class InstallAttempt {
  private readonly trees = new Map<ImageName, VerifiedTree>();

  constructor(
    private readonly o: InstallerOptions,
    private readonly source: ReleaseSource,
    private readonly journal: JournalWriter,
    private readonly r: Release,
  ) {}

  async run(): Promise<InstallJournal> {
    const { bootControl } = this.o;
    try {
      // 2. Every hash tree, checked against its signed digest and root hash, before any write.
      for (const [name, image] of this.r.images) {
        const path = treePath(this.o.config.dataDir, this.journal.current.installId, name);
        const signal = this.o.signal ? { signal: this.o.signal } : {};
        this.trees.set(
          name,
          await VerifiedTree.fetch({ source: this.source, imageName: name, image, path, ...signal }),
        );
      }
      // 3. The slot stops being bootable before its first byte changes.
      if (this.journal.current.phase === 'verified') {
        await bootControl.markBad(this.r.target);
        await this.o.onTargetInvalidated?.(this.r.target);
        await this.journal.save({ phase: 'writing' });
      }
      // 4. Artifacts (or deltas), block by verified block; then the hash trees.
      if (this.journal.current.phase === 'writing') {
        for (const plan of await this.plan()) await this.writeImage(plan);
        await this.journal.save({ phase: 'written' });
      }
      if (this.journal.current.phase === 'written') await this.installBootImage();
      await this.armTrial();
      return this.journal.current;
    } catch (caught) {
      throw await this.failed(caught);
    } finally {
      // The trees are fetched and checked again by every attempt: their scratch files end here,
      // whatever the outcome (no descriptor outlives the attempt).
      for (const [name, tree] of this.trees) {
        await tree.close();
        await rm(treePath(this.o.config.dataDir, this.journal.current.installId, name), { force: true });
      }
    }
  }

  /** The plan of every image, from the journal and the deltas offered now. */
  private async plan(): Promise<ImagePlan[]> {
    const { images, booted, target, manifest } = this.r;
    return planInstall({
      version: manifest.version,
      images,
      bootedSlot: booted,
      targetSlot: target,
      slots: this.o.config.slots,
      progress: this.journal.current.images,
      deltas: await this.deltasOffered(),
    });
  }

  /**
   * 4b. A backend whose bootloader boots the slot's boot image from elsewhere (uefi systemd-boot:
   *     the UKI on the ESP) copies it out of the slot, each block read back and checked against
   *     the signed tree. Repeated whole after a crash (the journal is still `written`).
   */
  private async installBootImage(): Promise<void> {
    const boot = this.r.images.find(([name]) => name === 'boot');
    const path = this.o.config.slots[this.r.target].boot?.path;
    if (this.o.bootControl.installBootImage === undefined || boot === undefined || path === undefined) return;
    const where = `slot ${this.r.target} boot image ${path}`;
    const reader = await VerifiedSlotReader.open(path, this.trees.get('boot')!, boot[1], where);
    try {
      await this.o.bootControl.installBootImage(this.r.target, reader, where);
    } finally {
      await reader.close();
    }
  }

  /**
   * 5. Boot the new slot once; the post-boot check commits or the bootloader falls back. The
   *    intent is journalled BEFORE the boot control is touched, so that no crash can leave an
   *    armed trial behind a journal that does not know about it; `armed` is journalled after
   *    setTryOnce returned. Agent.afterBoot() decides from (journal, booted slot, boot id):
   *    booted the target → the trial; same boot, or the old slot without `armed` → arm again
   *    (setTryOnce is idempotent) and reboot; the old slot after an armed trial → rolled back.
   */
  private async armTrial(): Promise<void> {
    if (this.journal.current.phase !== 'boot-pending')
      await this.journal.save({ phase: 'boot-pending', bootId: await this.o.bootId(), armed: false });
    try {
      await this.o.bootControl.setTryOnce(this.r.target);
    } catch (e) {
      // A ClientError is the backend's definite refusal (a failed edit writes nothing): the
      // install failed. Anything else (an I/O error in the middle of the write) may or may not
      // have armed the trial; the journal stays boot-pending and after-boot decides.
      if (e instanceof ClientError) throw e;
      await this.journal.save({ error: errorOf(e) });
      throw new ArmingInterrupted(e);
    }
    await this.journal.save({ armed: true });
  }

  /**
   * The error this attempt ends with. Interruptions (shutdown, the network gone after all
   * retries) leave the journal resumable; verification and slot failures end this install.
   */
  private async failed(caught: unknown): Promise<unknown> {
    const { signal } = this.o;
    if (caught instanceof ArmingInterrupted) return signal?.aborted ? abortError(signal) : caught.cause;
    const e =
      signal?.aborted && !isClientError(caught, 'ERR_ABORTED') ? abortError(signal) : noSpaceError(caught);
    const error = errorOf(e);
    // On a full disk the journal itself may not be writable: the one on disk is at the last
    // checkpoint, which is where the install resumes.
    if (error.code === 'ERR_INSTALL_NO_SPACE') await this.journal.save({ error }).catch(() => {});
    else if (RESUMABLE_CODES.has(error.code)) await this.journal.save({ error });
    else {
      await this.journal.save({ phase: 'failed', error });
      for (const [name] of this.r.images)
        await removeScratch(this.o.config.dataDir, this.journal.current.installId, name);
    }
    return e;
  }

  /** One image: its data area (full or delta), then its hash area, each durable before it is journalled. */
  private async writeImage(plan: ImagePlan): Promise<void> {
    const { config } = this.o;
    const { booted, target } = this.r;
    const dataFh = await openSlotForWrite(plan.dataPath, target, booted, config.slots[booted]);
    try {
      const info = await deviceInfo(dataFh);
      if (info.isBlockDevice && info.sizeBytes < plan.requiredDeviceBytes) {
        throw new ClientError(
          'ERR_INSTALL_SLOT_LAYOUT',
          `slot ${target} ${plan.name}: ${plan.dataPath} has ${info.sizeBytes} bytes, ${plan.requiredDeviceBytes} are needed`,
        );
      }
      const size = plan.dataFileSizeBytes;
      if (!info.isBlockDevice && size !== undefined && info.sizeBytes !== size) await dataFh.truncate(size);
      await this.writeData(plan, dataFh);
      await this.writeHashArea(plan, dataFh);
      await this.journal.hashAreaWritten(plan.name);
    } finally {
      await dataFh.close();
    }
  }

  /**
   * The data area by the plan's method. The fallback policy: a delta that cannot produce the
   * image (DeltaUnusable) is journalled as given up and the full artifact is written from block 0;
   * an interruption is not a delta failure and resumes the delta later.
   */
  private async writeData(plan: ImagePlan, dataFh: FileHandle): Promise<void> {
    const { name, write } = plan;
    if (write.method === 'none') return;
    const { config } = this.o;
    const installId = this.journal.current.installId;
    const w: ImageWrite = {
      plan,
      tree: this.trees.get(name)!,
      dataFh,
      source: countingSource(this.source, (n) => this.journal.countDownloaded(name, n)),
      journal: this.journal,
      checkpointBytes: this.o.checkpointBytes ?? DEFAULT_CHECKPOINT_BYTES,
      ...(config.spoolCompressedArtifacts ? { spoolPath: spoolPath(config.dataDir, installId, name) } : {}),
      deltaMetadataPath: deltaMetadataPath(config.dataDir, installId, name),
      ...(this.o.signal ? { signal: this.o.signal } : {}),
    };
    if (write.method === 'full') {
      if (write.record) await this.recordFull(name, write.skipped);
      await fullWriter.write(w, plan.resume);
      return;
    }
    if (write.record) await this.recordDelta(plan, write.delta);
    const failure = write.unusable ?? (await this.tryDelta(w, plan.resume));
    if (failure === undefined) return;
    await this.fallBackToFull(name, failure, w.deltaMetadataPath);
    await fullWriter.write(w, { ...plan.resume, blocksDone: 0, deltaApplied: false });
  }

  /** The delta writer; its DeltaUnusable is returned (fall back), anything else is thrown. */
  private async tryDelta(w: ImageWrite, resume: ResumePoint): Promise<DeltaUnusable | undefined> {
    try {
      await deltaWriter.write(w, resume);
      return undefined;
    } catch (e) {
      if (e instanceof DeltaUnusable) return e;
      throw e;
    }
  }

  private async recordFull(name: ImageName, skipped: string | undefined): Promise<void> {
    if (skipped !== undefined) {
      const message = `image ${name}: delta not used, installing the full artifact: ${skipped}`;
      await this.notice({ level: 'info', kind: 'delta-skipped', image: name, message });
    }
    await this.journal.methodChosen(name, { method: 'full' });
  }

  private async recordDelta(plan: ImagePlan, delta: NonNullable<ImageProgress['delta']>): Promise<void> {
    await this.journal.methodChosen(plan.name, { method: 'delta', delta });
    await this.notice({
      level: 'info',
      kind: 'delta-used',
      image: plan.name,
      message: `image ${plan.name}: applying delta ${delta.digest} (${delta.sizeBytes} bytes instead of the ${plan.image.artifact.sizeBytes}-byte artifact) against slot ${this.r.booted}`,
    });
  }

  /** A delta failed for good: journal `full` from block 0 first, then report it. */
  private async fallBackToFull(name: ImageName, e: DeltaProblem, metadataPath: string): Promise<void> {
    await this.journal.fellBackToFull(name, e);
    await rm(metadataPath, { force: true });
    await this.notice({
      level: 'warn',
      kind: 'delta-fallback',
      image: name,
      code: e.code,
      message: `image ${name}: delta failed (${e.code}: ${e.message}); installing the full artifact from block 0`,
    });
  }

  private async writeHashArea(plan: ImagePlan, dataFh: FileHandle): Promise<void> {
    const { booted, target } = this.r;
    const tree = this.trees.get(plan.name)!;
    const { hashArea } = plan;
    const where = `slot ${target} ${plan.name} hash area`;
    if (hashArea.kind === 'after-data') {
      await tree.copyTo(dataFh, hashArea.offsetBytes, where);
      await dataFh.datasync();
      return;
    }
    const fh = await openSlotForWrite(hashArea.path, target, booted, this.o.config.slots[booted]);
    try {
      // A separate hash file holds exactly what veritysetup would write into a new file.
      if ((await fh.stat()).isFile()) await fh.truncate(hashArea.offsetBytes + tree.sizeBytes);
      await tree.copyTo(fh, hashArea.offsetBytes, where);
      await fh.datasync();
    } finally {
      await fh.close();
    }
  }

  /**
   * The deltas offered for this release and the active slot's known root hashes; an empty list
   * when the caller gave no root hashes (then there is nothing a delta could be checked against).
   */
  private async deltasOffered(): Promise<{ candidates: DeltaCandidate[]; active: ImageRootHashes }> {
    if (this.o.activeRootHashes === undefined) return { candidates: [], active: {} };
    const warnings: string[] = [];
    const candidates = (await this.source.readDeltas?.((m) => warnings.push(m))) ?? [];
    for (const message of warnings) await this.notice({ level: 'warn', kind: 'delta-ignored', message });
    const wanted = new Set(this.r.images.map(([name]) => name as string));
    return {
      candidates: candidates.filter((d) => wanted.has(d.image)),
      active: await this.o.activeRootHashes(this.r.booted),
    };
  }

  private async notice(n: InstallNotice): Promise<void> {
    try {
      const { version } = this.journal.current;
      await this.o.onNotice?.({ ...n, version });
    } catch {
      // a log or report hook never fails the install
    }
  }
}

/** setTryOnce failed in a way that may or may not have armed the trial (see armTrial). */
class ArmingInterrupted extends Error {
  constructor(override readonly cause: unknown) {
    super('arming the trial boot was interrupted');
  }
}

/** ENOSPC / EDQUOT as the agent's own code: a full disk is the device's problem, not the release's. */
function noSpaceError(e: unknown): unknown {
  // The system error itself, or wrapped (a slot write is ERR_INSTALL_SLOT_IO with it as cause).
  const sys = [e, (e as { cause?: unknown } | undefined)?.cause].find((x) =>
    ['ENOSPC', 'EDQUOT'].includes((x as { code?: unknown } | undefined)?.code as string),
  ) as { code: string; path?: unknown } | undefined;
  if (sys === undefined) return e;
  const { code, path } = sys;
  return new ClientError(
    'ERR_INSTALL_NO_SPACE',
    `no space left${typeof path === 'string' ? ` writing ${path}` : ''} (${code}): free space on the data ` +
      'partition; the install resumes from its last checkpoint',
    { cause: e },
  );
}

/** The journal's record of an error: its code (ERR_INSTALL_FAILED when it has none) and message. */
function errorOf(e: unknown): { code: string; message: string } {
  const code = (e as { code?: unknown }).code;
  return { code: typeof code === 'string' ? code : 'ERR_INSTALL_FAILED', message: (e as Error).message };
}

/** Count the bytes an image's blobs deliver (status: "delta 3.1 MiB of 40 MiB full"). */
function countingSource(source: ReleaseSource, count: (bytes: number) => void): ReleaseSource {
  return {
    journalSource: source.journalSource,
    readManifestJws: () => source.readManifestJws(),
    readRootChain: () => source.readRootChain(),
    readDeltas: async (warn) => (await source.readDeltas?.(warn)) ?? [],
    async *openBlob(digest, sizeBytes, startByte, signal) {
      for await (const chunk of source.openBlob(digest, sizeBytes, startByte, signal)) {
        count(chunk.byteLength);
        yield chunk;
      }
    },
  };
}

function withoutError(j: InstallJournal): InstallJournal {
  const { error: _error, ...rest } = j;
  return rest;
}
