// The install state machine (DESIGN.md "Device side"): verify the offer's manifest against the
// trust root and the device's facts → fetch and verify every target hash tree → stream each
// artifact into the inactive slot, each block verified before it is written → write the hash
// trees → fsync → set the slot "try once". Every step is journalled, so a crash anywhere
// resumes from the journal; nothing is written to any slot before the manifest check passes.
import { createHash, randomUUID } from 'node:crypto';
import { type FileHandle, rm } from 'node:fs/promises';
import {
  checkRelease,
  type DeviceFacts,
  type ImageManifest,
  type ReleaseManifest,
  type TrustRoot,
} from '@abota/manifest';
import { BlockVerifier, type VerityParams } from '@abota/verity';
import type { BootControl } from '../bootctl/bootcontrol.js';
import type { AgentConfig, ImageTarget } from '../config.js';
import { ClientError, isClientError } from '../errors.js';
import { abortError } from '../http/backoff.js';
import { type BlockCheck, writeImage } from './image-writer.js';
import {
  type ImageProgress,
  type InstallJournal,
  isInProgress,
  readJournal,
  spoolPath,
  writeJournal,
} from './journal.js';
import type { ReleaseSource } from './release-source.js';
import { deviceInfo, openSlotForWrite, otherSlot, type SlotName, writeFully } from './slot-io.js';

/** What the installer needs from a boot-control backend (src/bootctl). */
export type SlotBootControl = Pick<BootControl, 'getBootedSlot' | 'getSlotState' | 'markBad' | 'setTryOnce'>;

/** Hash files larger than this are refused before download (a 4 GiB image needs ~33 MiB). */
export const MAX_HASH_TREE_BYTES = 512 * 1024 * 1024;

/**
 * Durable checkpoint interval. Each checkpoint is an fdatasync of the slot plus a journal write;
 * at 16 MiB they cost about as much as the whole verified copy on this machine's disk
 * (bench/run.ts), at 64 MiB little — and a crash costs at most 64 MiB of re-download.
 */
export const DEFAULT_CHECKPOINT_BYTES = 64 * 1024 * 1024;

/** How often the journal's progress is refreshed between checkpoints. */
const PROGRESS_SAVE_INTERVAL_MS = 5000;

/** Failures after which the same install resumes from its journal instead of starting over. */
export const RESUMABLE_CODES: ReadonlySet<string> = new Set([
  'ERR_ABORTED',
  'ERR_HTTP_NETWORK',
  'ERR_HTTP_UNAVAILABLE',
]);

export const IMAGE_ORDER = ['rootfs', 'boot'] as const;
export type ImageName = (typeof IMAGE_ORDER)[number];

export interface InstallerOptions {
  config: AgentConfig;
  bootControl: SlotBootControl;
  trustRoot: TrustRoot;
  clock: () => Date;
  /** Facts of the running system (version, floor, product, hardware) for checkRelease. */
  deviceFacts: (booted: SlotName) => Promise<DeviceFacts>;
  /** Identity of the current boot, recorded when the slot is set "try once" (post-boot logic). */
  bootId: () => Promise<string>;
  /** Default DEFAULT_CHECKPOINT_BYTES. */
  checkpointBytes?: number;
  onProgress?: (j: InstallJournal) => void;
  /** Called once the target slot is about to be written (its old content stops being valid). */
  onTargetInvalidated?: (slot: SlotName) => Promise<void>;
  signal?: AbortSignal;
}

export interface InstallRequest {
  rolloutId?: string;
  allowDowngrade?: boolean;
}

/** dm-verity parameters of a manifest image in @abota/verity's shape. */
export function verityParamsOf(image: ImageManifest): VerityParams {
  const v = image.verity;
  return {
    hashType: v.hashType,
    algorithm: v.algorithm,
    dataBlockSize: v.dataBlockSize,
    hashBlockSize: v.hashBlockSize,
    dataBlocks: v.dataBlocks,
    salt: Uint8Array.from(Buffer.from(v.salt, 'hex')),
    hashOffset: v.hashOffset,
    superblock: v.superblock,
    ...(v.uuid !== undefined ? { uuid: v.uuid } : {}),
  };
}

export function imagesOf(m: ReleaseManifest): [ImageName, ImageManifest][] {
  const out: [ImageName, ImageManifest][] = [];
  for (const name of IMAGE_ORDER) {
    const img = m.images[name];
    if (img !== undefined) out.push([name, img]);
  }
  return out;
}

export class Installer {
  private journal: InstallJournal | undefined;
  private lastProgressSaveMs = performance.now();

  constructor(private readonly o: InstallerOptions) {}

  /**
   * Install (or resume) the release `source` offers, up to "try once" set on the inactive slot.
   * Returns the journal in phase `boot-pending`; the caller reports and runs the reboot hook.
   */
  async install(source: ReleaseSource, req: InstallRequest = {}): Promise<InstallJournal> {
    const { config } = this.o;
    const manifestJws = await source.readManifestJws();
    const booted = await this.o.bootControl.getBootedSlot();
    const target = otherSlot(booted);
    const previous = await readJournal(config.dataDir);

    // 0. Never overwrite the fallback: while the running slot is an unconfirmed trial, the
    //    other slot is the only one known to boot.
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

    // 1. The trust decision. Nothing below runs unless it passes.
    const facts = await this.o.deviceFacts(booted);
    const { manifest } = await checkRelease(
      manifestJws,
      this.o.trustRoot,
      { ...facts, ...(req.allowDowngrade ? { allowDowngrade: true } : {}) },
      this.o.clock(),
    );

    // An install interrupted while arming its trial (boot-pending, still the same boot) resumes
    // too: only the arming is repeated.
    const resuming =
      (isInProgress(previous) ||
        (previous?.phase === 'boot-pending' && previous.bootId === (await this.o.bootId()))) &&
      previous!.manifestJws === manifestJws &&
      previous!.targetSlot === target &&
      previous!.bootedSlot === booted;
    const images = imagesOf(manifest);
    const targets = new Map<ImageName, ImageTarget>();
    for (const [name] of images) {
      const t = config.slots[target][name];
      if (t === undefined) {
        throw new ClientError(
          'ERR_INSTALL_SLOT_LAYOUT',
          `release ${manifest.version} carries a ${name} image but slot ${target} has no ${name} device configured`,
        );
      }
      targets.set(name, t);
    }
    if (!resuming && previous !== undefined) {
      // A superseded install's spool is of no further use.
      for (const name of Object.keys(previous.images)) {
        await rm(spoolPath(config.dataDir, previous.installId, name), { force: true });
      }
    }
    const now = this.o.clock().toISOString();
    this.journal = resuming
      ? {
          ...withoutError(previous!),
          ...(req.rolloutId !== undefined ? { rolloutId: req.rolloutId } : {}),
          source: source.journalSource,
        }
      : {
          schemaVersion: 1,
          installId: randomUUID(),
          phase: 'verified',
          ...(req.rolloutId !== undefined ? { rolloutId: req.rolloutId } : {}),
          version: manifest.version,
          securityVersion: manifest.securityVersion,
          manifestJws,
          source: source.journalSource,
          bootedSlot: booted,
          targetSlot: target,
          previousVersion: facts.currentVersion,
          images: Object.fromEntries(
            images.map(([name, img]) => [
              name,
              {
                blocksWritten: 0,
                totalBlocks: img.verity.dataBlocks,
                hashTreeWritten: false,
              } satisfies ImageProgress,
            ]),
          ),
          progress: { bytesDone: 0, bytesTotal: images.reduce((s, [, img]) => s + img.sizeBytes, 0) },
          startedAt: now,
          updatedAt: now,
        };
    await this.save({});

    try {
      // 2. Every hash tree, checked against its signed digest and root hash, before any write.
      const verifiers = new Map<ImageName, BlockCheck & { hashFile: Uint8Array }>();
      for (const [name, img] of images) verifiers.set(name, await this.fetchVerifier(source, name, img));

      // 3. The slot stops being bootable before its first byte changes.
      if (this.journal.phase === 'verified') {
        await this.o.bootControl.markBad(target);
        await this.o.onTargetInvalidated?.(target);
        await this.save({ phase: 'writing' });
      }

      // 4. Artifacts, block by verified block; then the hash trees.
      if (this.journal.phase === 'writing') {
        for (const [name, img] of images) {
          await this.writeOneImage(
            source,
            name,
            img,
            targets.get(name)!,
            verifiers.get(name)!,
            booted,
            target,
            images,
          );
        }
        await this.save({ phase: 'written' });
      }

      // 5. Boot the new slot once; the post-boot check commits or the bootloader falls back.
      //    The intent is journalled BEFORE the boot control is touched, so that no crash can
      //    leave an armed trial behind a journal that does not know about it; `armed` is
      //    journalled after setTryOnce returned. Agent.afterBoot() decides from (journal,
      //    booted slot, boot id): booted the target → the trial; same boot, or the old slot
      //    without `armed` → arm again (setTryOnce is idempotent) and reboot; the old slot after
      //    an armed trial → rolled back.
      if (this.journal.phase !== 'boot-pending')
        await this.save({ phase: 'boot-pending', bootId: await this.o.bootId(), armed: false });
      try {
        await this.o.bootControl.setTryOnce(target);
      } catch (e) {
        // A ClientError is the backend's definite refusal (a failed edit writes nothing): the
        // install failed (below). Anything else (an I/O error in the middle of the write) may or
        // may not have armed the trial; the journal stays boot-pending and after-boot decides.
        if (!(e instanceof ClientError)) {
          const code = (e as { code?: unknown }).code;
          await this.save({
            error: {
              code: typeof code === 'string' ? code : 'ERR_INSTALL_FAILED',
              message: (e as Error).message,
            },
          });
          throw new ArmingInterrupted(e);
        }
        throw e;
      }
      await this.save({ armed: true });
      return this.journal;
    } catch (caught) {
      if (caught instanceof ArmingInterrupted)
        throw this.o.signal?.aborted ? abortError(this.o.signal) : caught.cause;
      const e =
        this.o.signal?.aborted && !isClientError(caught, 'ERR_ABORTED') ? abortError(this.o.signal) : caught;
      // Interruptions (shutdown, the network gone after all retries) leave the journal
      // resumable; verification and slot failures end this install.
      const code = (e as { code?: unknown }).code;
      const error = {
        code: typeof code === 'string' ? code : 'ERR_INSTALL_FAILED',
        message: (e as Error).message,
      };
      if (RESUMABLE_CODES.has(error.code)) await this.save({ error });
      else {
        await this.save({ phase: 'failed', error });
        for (const [name] of images)
          await rm(spoolPath(config.dataDir, this.journal.installId, name), { force: true });
      }
      throw e;
    }
  }

  private async save(patch: Partial<InstallJournal>): Promise<void> {
    if (this.journal === undefined) return;
    this.journal = { ...this.journal, ...patch, updatedAt: this.o.clock().toISOString() };
    await writeJournal(this.o.config.dataDir, this.journal);
    this.o.onProgress?.(this.journal);
  }

  private async fetchVerifier(
    source: ReleaseSource,
    name: ImageName,
    img: ImageManifest,
  ): Promise<BlockCheck & { hashFile: Uint8Array }> {
    const { digest, sizeBytes } = img.verity.hashTree;
    if (sizeBytes > MAX_HASH_TREE_BYTES) {
      throw new ClientError(
        'ERR_INSTALL_HASH_TREE_INVALID',
        `image ${name}: hash tree of ${sizeBytes} bytes exceeds the ${MAX_HASH_TREE_BYTES}-byte limit`,
      );
    }
    const bytes = new Uint8Array(sizeBytes);
    const hash = createHash('sha256');
    let filled = 0;
    for await (const chunk of source.openBlob(digest, sizeBytes, 0, this.o.signal)) {
      if (filled + chunk.byteLength > sizeBytes) {
        throw new ClientError(
          'ERR_INSTALL_HASH_TREE_INVALID',
          `image ${name}: hash tree is longer than the signed ${sizeBytes} bytes`,
        );
      }
      bytes.set(chunk, filled);
      hash.update(chunk);
      filled += chunk.byteLength;
    }
    const actual = `sha256:${hash.digest('hex')}`;
    if (filled !== sizeBytes || actual !== digest) {
      throw new ClientError(
        'ERR_INSTALL_HASH_TREE_INVALID',
        `image ${name}: hash tree is ${filled} bytes with digest ${actual}; the signed manifest says ${sizeBytes} bytes, ${digest}`,
      );
    }
    let verifier: BlockVerifier;
    try {
      verifier = BlockVerifier.fromHashFile(bytes, verityParamsOf(img), img.verity.rootHash);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      throw new ClientError(
        'ERR_INSTALL_HASH_TREE_INVALID',
        `image ${name}: hash tree does not lead to the signed root hash ${img.verity.rootHash} (${String(code)}: ${(e as Error).message})`,
        { cause: e },
      );
    }
    return { verifyBlock: (i, data) => verifier.verifyBlock(i, data), hashFile: bytes };
  }

  private async writeOneImage(
    source: ReleaseSource,
    name: ImageName,
    img: ImageManifest,
    t: ImageTarget,
    verifier: BlockCheck & { hashFile: Uint8Array },
    booted: SlotName,
    target: SlotName,
    allImages: [ImageName, ImageManifest][],
  ): Promise<void> {
    const { config } = this.o;
    const progress = this.journal!.images[name]!;
    const sameDevice = t.hashPath === undefined;
    const hashOffset = t.hashOffsetBytes ?? 0;
    const treeBytes = verifier.hashFile.byteLength;
    if (sameDevice && hashOffset < img.sizeBytes) {
      throw new ClientError(
        'ERR_INSTALL_SLOT_LAYOUT',
        `slot ${target} ${name}: hash area at byte ${hashOffset} overlaps the ${img.sizeBytes}-byte image on ${t.path}`,
      );
    }
    const dataFh = await openSlotForWrite(t.path, target, booted, config.slots[booted]);
    try {
      const info = await deviceInfo(dataFh);
      const needed = sameDevice ? hashOffset + treeBytes : img.sizeBytes;
      if (info.isBlockDevice && info.sizeBytes < needed) {
        throw new ClientError(
          'ERR_INSTALL_SLOT_LAYOUT',
          `slot ${target} ${name}: ${t.path} has ${info.sizeBytes} bytes, ${needed} are needed`,
        );
      }
      // A slot file is made exactly the image's size, so it is byte-identical to the image.
      if (!info.isBlockDevice && !sameDevice && info.sizeBytes !== img.sizeBytes)
        await dataFh.truncate(img.sizeBytes);

      if (!progress.hashTreeWritten) {
        await writeImage({
          imageName: name,
          image: img,
          verifier,
          dataFh,
          source,
          blocksDone: progress.blocksWritten,
          checkpointBytes: this.o.checkpointBytes ?? DEFAULT_CHECKPOINT_BYTES,
          onBytes: async (bytesInImage) => {
            // Progress for `status` and the server between checkpoints (written, maybe not yet durable).
            const now = performance.now();
            if (now - this.lastProgressSaveMs < PROGRESS_SAVE_INTERVAL_MS) return;
            this.lastProgressSaveMs = now;
            const others =
              this.bytesDone(allImages) -
              this.journal!.images[name]!.blocksWritten * img.verity.dataBlockSize;
            await this.save({
              progress: { bytesDone: others + bytesInImage, bytesTotal: this.journal!.progress.bytesTotal },
            });
          },
          ...(config.spoolCompressedArtifacts
            ? {
                spool: {
                  path: spoolPath(config.dataDir, this.journal!.installId, name),
                  durableBytes: progress.spooledBytes ?? 0,
                },
              }
            : {}),
          onCheckpoint: async (blocksWritten, spooledBytes) => {
            this.journal!.images[name] = {
              ...progress,
              blocksWritten,
              ...(spooledBytes > 0 ? { spooledBytes } : {}),
            };
            await this.save({
              progress: {
                bytesDone: this.bytesDone(allImages),
                bytesTotal: this.journal!.progress.bytesTotal,
              },
            });
          },
          ...(this.o.signal ? { signal: this.o.signal } : {}),
        });
      }
      await this.writeHashArea(sameDevice ? dataFh : undefined, t, verifier.hashFile, booted, target, name);
      this.journal!.images[name] = { ...this.journal!.images[name]!, hashTreeWritten: true };
      await this.save({});
    } finally {
      await dataFh.close();
    }
  }

  /** Bytes of verified data durably on the slot, over all images (journal progress). */
  private bytesDone(images: [ImageName, ImageManifest][]): number {
    let sum = 0;
    for (const [name, img] of images) {
      const p = this.journal!.images[name];
      if (p !== undefined) sum += p.blocksWritten * img.verity.dataBlockSize;
    }
    return sum;
  }

  private async writeHashArea(
    sameDeviceFh: FileHandle | undefined,
    t: ImageTarget,
    hashFile: Uint8Array,
    booted: SlotName,
    target: SlotName,
    name: ImageName,
  ): Promise<void> {
    const offset = t.hashOffsetBytes ?? 0;
    const where = `slot ${target} ${name} hash area`;
    if (sameDeviceFh !== undefined) {
      await writeFully(sameDeviceFh, hashFile, offset, where);
      await sameDeviceFh.datasync();
      return;
    }
    const path = t.hashPath!;
    const fh = await openSlotForWrite(path, target, booted, this.o.config.slots[booted]);
    try {
      // A separate hash file holds exactly what veritysetup would write into a new file.
      if ((await fh.stat()).isFile()) await fh.truncate(offset + hashFile.byteLength);
      await writeFully(fh, hashFile, offset, where);
      await fh.datasync();
    } finally {
      await fh.close();
    }
  }
}

/** setTryOnce failed in a way that may or may not have armed the trial (see step 5). */
class ArmingInterrupted extends Error {
  constructor(override readonly cause: unknown) {
    super('arming the trial boot was interrupted');
  }
}

function withoutError(j: InstallJournal): InstallJournal {
  const { error: _error, ...rest } = j;
  return rest;
}
