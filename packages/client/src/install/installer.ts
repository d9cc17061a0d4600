// The install state machine (docs/architecture.md "The device side"): verify the offer's manifest
// against the trust root and the device's facts → fetch and verify every target hash tree → stream
// each image into the inactive slot (its full artifact, or a delta against the active slot when one
// fits: delta-install.ts), each block verified before it is written → write the hash trees → fsync
// → set the slot "try once". Every step is journalled, so a crash anywhere resumes from the
// journal; nothing is written to any slot before the manifest check passes.
import { createHash, randomUUID } from 'node:crypto';
import { type FileHandle, open, rm } from 'node:fs/promises';
import {
  checkRelease,
  type DeviceFacts,
  type ImageManifest,
  type ReleaseManifest,
  type TrustRoot,
} from '@abota/manifest';
import { BlockVerifier, type VerityParams } from '@abota/verity';
import * as v from 'valibot';
import type { BootControl } from '../bootctl/bootcontrol.js';
import { type AgentConfig, type ImageRootHashes, type ImageTarget, rootHashSchema } from '../config.js';
import { ClientError, isClientError } from '../errors.js';
import { abortError } from '../http/backoff.js';
import { chooseDelta, DeltaUnusable, writeImageFromDelta } from './delta-install.js';
import { type BlockCheck, reverifyWrittenBlocks, writeImage } from './image-writer.js';
import {
  deltaMetadataPath,
  type ImageProgress,
  type InstallJournal,
  isInProgress,
  readJournal,
  spoolPath,
  treePath,
  writeJournal,
} from './journal.js';
import type { DeltaCandidate, ReleaseSource } from './release-source.js';
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

/**
 * A target hash tree checked up to its signed root hash, and the per-block checks built from it.
 * The tree stays in its scratch file (treePath); memory holds only the levels above the leaves.
 */
interface VerifiedTree extends BlockCheck {
  /** Throws (VerityError ERR_VERITY_DATA_CORRUPT) when the block does not hash into the tree. */
  assertBlock(blockIndex: number, data: Uint8Array): void;
  /** Size of the hash file (the signed hashTree.sizeBytes). */
  sizeBytes: number;
  /** Write the hash file at `offset` of `fh`, re-checked as it is copied (1 MiB at a time). */
  copyTo(fh: FileHandle, offset: number, where: string): Promise<void>;
  /** Close the scratch file (idempotent); the verifier must not be used afterwards. */
  close(): Promise<void>;
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
  /** Bytes fetched per image in this run on top of the journal's count (merged in save()). */
  private readonly downloaded = new Map<string, number>();

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
      // A superseded install's spool and delta metadata are of no further use.
      for (const name of Object.keys(previous.images))
        await removeScratch(config.dataDir, previous.installId, name);
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
          rootHashes: rootHashesOf(images),
          images: Object.fromEntries(
            images.map(([name, img]) => [
              name,
              {
                blocksWritten: 0,
                totalBlocks: img.verity.dataBlocks,
                hashTreeWritten: false,
                artifactSizeBytes: img.artifact.sizeBytes,
              } satisfies ImageProgress,
            ]),
          ),
          progress: { bytesDone: 0, bytesTotal: images.reduce((s, [, img]) => s + img.sizeBytes, 0) },
          startedAt: now,
          updatedAt: now,
        };
    await this.save({});

    const verifiers = new Map<ImageName, VerifiedTree>();
    try {
      // 2. Every hash tree, checked against its signed digest and root hash, before any write.
      for (const [name, img] of images) verifiers.set(name, await this.fetchVerifier(source, name, img));

      // 3. The slot stops being bootable before its first byte changes.
      if (this.journal.phase === 'verified') {
        await this.o.bootControl.markBad(target);
        await this.o.onTargetInvalidated?.(target);
        await this.save({ phase: 'writing' });
      }

      // 4. Artifacts (or deltas), block by verified block; then the hash trees.
      if (this.journal.phase === 'writing') {
        const deltas = await this.deltasFor(source, images, booted);
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
            deltas,
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
        for (const [name] of images) await removeScratch(config.dataDir, this.journal.installId, name);
      }
      throw e;
    } finally {
      // The trees are fetched and checked again by every attempt: their scratch files end here,
      // whatever the outcome (no descriptor outlives the attempt).
      for (const [name, tree] of verifiers) {
        await tree.close();
        await rm(treePath(config.dataDir, this.journal.installId, name), { force: true });
      }
    }
  }

  private async save(patch: Partial<InstallJournal>): Promise<void> {
    if (this.journal === undefined) return;
    this.journal = { ...this.journal, ...patch, updatedAt: this.o.clock().toISOString() };
    for (const [name, bytes] of this.downloaded) {
      const p = this.journal.images[name];
      if (p !== undefined)
        this.journal.images[name] = { ...p, downloadedBytes: (p.downloadedBytes ?? 0) + bytes };
    }
    this.downloaded.clear();
    await writeJournal(this.o.config.dataDir, this.journal);
    this.o.onProgress?.(this.journal);
  }

  private async fetchVerifier(
    source: ReleaseSource,
    name: ImageName,
    img: ImageManifest,
  ): Promise<VerifiedTree> {
    const { digest, sizeBytes } = img.verity.hashTree;
    if (sizeBytes > MAX_HASH_TREE_BYTES) {
      throw new ClientError(
        'ERR_INSTALL_HASH_TREE_INVALID',
        `image ${name}: hash tree of ${sizeBytes} bytes exceeds the ${MAX_HASH_TREE_BYTES}-byte limit`,
      );
    }
    // The tree goes to a scratch file on the data partition, not into memory (4 MiB for a
    // 512 MiB image): each chunk is written before the next is taken, nothing accumulates.
    const path = treePath(this.o.config.dataDir, this.journal!.installId, name);
    const where = `image ${name} hash tree scratch file ${path}`;
    const fh = await open(path, 'w+', 0o600);
    try {
      const hash = createHash('sha256');
      let filled = 0;
      for await (const chunk of source.openBlob(digest, sizeBytes, 0, this.o.signal)) {
        if (filled + chunk.byteLength > sizeBytes) {
          throw new ClientError(
            'ERR_INSTALL_HASH_TREE_INVALID',
            `image ${name}: hash tree is longer than the signed ${sizeBytes} bytes`,
          );
        }
        await writeFully(fh, chunk, filled, where);
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
        verifier = await BlockVerifier.fromHashFileHandle(fh, verityParamsOf(img), img.verity.rootHash);
      } catch (e) {
        const code = (e as { code?: unknown }).code;
        throw new ClientError(
          code === 'ERR_VERITY_IO' ? 'ERR_INSTALL_SLOT_IO' : 'ERR_INSTALL_HASH_TREE_INVALID',
          code === 'ERR_VERITY_IO'
            ? `${where}: ${(e as Error).message}`
            : `image ${name}: hash tree does not lead to the signed root hash ${img.verity.rootHash} (${String(code)}: ${(e as Error).message})`,
          { cause: e },
        );
      }
      let closed = false;
      return {
        verifyBlock: (i, data) => verifier.verifyBlock(i, data),
        assertBlock: (i, data) => verifier.assertBlock(i, data),
        sizeBytes,
        copyTo: async (out, offset, to) => {
          // Tree blocks come from memory or are re-checked against it (VerityError otherwise);
          // the digest covers the rest: the hash area gets exactly the signed, verified bytes.
          const copied = createHash('sha256');
          let at = 0;
          try {
            for await (const piece of verifier.hashFile()) {
              copied.update(piece);
              await writeFully(out, piece, offset + at, to);
              at += piece.byteLength;
            }
          } catch (e) {
            if (isClientError(e)) throw e;
            throw new ClientError(
              'ERR_INSTALL_HASH_TREE_INVALID',
              `${where} changed after it was verified (${String((e as { code?: unknown }).code)}: ${(e as Error).message})`,
              { cause: e },
            );
          }
          const now = `sha256:${copied.digest('hex')}`;
          if (at !== sizeBytes || now !== digest) {
            throw new ClientError(
              'ERR_INSTALL_HASH_TREE_INVALID',
              `${where} changed after it was verified: copied ${at} bytes with digest ${now}, the signed manifest says ${sizeBytes} bytes, ${digest}`,
            );
          }
        },
        close: async () => {
          if (closed) return;
          closed = true;
          await fh.close();
        },
      };
    } catch (e) {
      await fh.close();
      await rm(path, { force: true });
      throw e;
    }
  }

  private async notice(n: InstallNotice): Promise<void> {
    try {
      const version = this.journal?.version;
      await this.o.onNotice?.(version !== undefined ? { ...n, version } : n);
    } catch {
      // a log or report hook never fails the install
    }
  }

  /**
   * The deltas offered for this release and the active slot's known root hashes; an empty list
   * when the caller gave no root hashes (then there is nothing a delta could be checked against).
   */
  private async deltasFor(
    source: ReleaseSource,
    images: [ImageName, ImageManifest][],
    booted: SlotName,
  ): Promise<{ candidates: DeltaCandidate[]; active: ImageRootHashes }> {
    if (this.o.activeRootHashes === undefined) return { candidates: [], active: {} };
    const warnings: string[] = [];
    const candidates = (await source.readDeltas?.((m) => warnings.push(m))) ?? [];
    for (const message of warnings) await this.notice({ level: 'warn', kind: 'delta-ignored', message });
    const wanted = new Set(images.map(([name]) => name as string));
    return {
      candidates: candidates.filter((d) => wanted.has(d.image)),
      active: await this.o.activeRootHashes(booted),
    };
  }

  /** Count the bytes an image's blobs deliver (status: "delta 3.1 MiB of 40 MiB full"). */
  private counting(source: ReleaseSource, name: ImageName): ReleaseSource {
    const count = (n: number): void => {
      this.downloaded.set(name, (this.downloaded.get(name) ?? 0) + n);
    };
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

  /**
   * Decide how a not yet started image is written (journalled before its first byte): a delta
   * when chooseDelta() accepts one, else the full artifact. An image the journal already has
   * blocks of keeps its method (journals from before deltas: full).
   */
  private async chooseMethod(
    name: ImageName,
    img: ImageManifest,
    deltas: { candidates: DeltaCandidate[]; active: ImageRootHashes },
    booted: SlotName,
  ): Promise<'delta' | 'full'> {
    const progress = this.journal!.images[name]!;
    if (progress.method !== undefined) return progress.method;
    if (progress.blocksWritten > 0) return 'full';
    const choice = chooseDelta(name, img, deltas.candidates, deltas.active[name]);
    if (choice.use === undefined) {
      if (choice.reason !== undefined)
        await this.notice({
          level: 'info',
          kind: 'delta-skipped',
          image: name,
          message: `image ${name}: delta not used, installing the full artifact: ${choice.reason}`,
        });
      this.journal!.images[name] = { ...progress, method: 'full' };
      await this.save({});
      return 'full';
    }
    const d = choice.use;
    this.journal!.images[name] = {
      ...progress,
      method: 'delta',
      delta: { digest: d.digest, sizeBytes: d.sizeBytes, sourceRootHash: d.sourceRootHash },
    };
    await this.save({});
    await this.notice({
      level: 'info',
      kind: 'delta-used',
      image: name,
      message: `image ${name}: applying delta ${d.digest} (${d.sizeBytes} bytes instead of the ${img.artifact.sizeBytes}-byte artifact) against slot ${booted}`,
    });
    return 'delta';
  }

  /** A delta failed for good: journal `full` from block 0 first, then report it. */
  private async fallBackToFull(name: ImageName, e: DeltaUnusable, allImages: [ImageName, ImageManifest][]) {
    const { delta, ...rest } = this.journal!.images[name]!;
    const { checkpoint: _dropped, ...deltaWithoutCheckpoint } = delta ?? { checkpoint: undefined };
    this.journal!.images[name] = {
      ...rest,
      method: 'full',
      blocksWritten: 0,
      ...(delta !== undefined ? { delta: deltaWithoutCheckpoint as typeof delta } : {}),
      deltaFallback: { code: e.code, message: e.message.slice(0, 2000) },
    };
    await this.save({
      progress: { bytesDone: this.bytesDone(allImages), bytesTotal: this.journal!.progress.bytesTotal },
    });
    await rm(deltaMetadataPath(this.o.config.dataDir, this.journal!.installId, name), { force: true });
    await this.notice({
      level: 'warn',
      kind: 'delta-fallback',
      image: name,
      code: e.code,
      message: `image ${name}: delta failed (${e.code}: ${e.message}); installing the full artifact from block 0`,
    });
  }

  private async writeOneImage(
    source: ReleaseSource,
    name: ImageName,
    img: ImageManifest,
    t: ImageTarget,
    verifier: VerifiedTree,
    booted: SlotName,
    target: SlotName,
    allImages: [ImageName, ImageManifest][],
    deltas: { candidates: DeltaCandidate[]; active: ImageRootHashes },
  ): Promise<void> {
    const { config } = this.o;
    const progress = this.journal!.images[name]!;
    const counted = this.counting(source, name);
    const sameDevice = t.hashPath === undefined;
    const hashOffset = t.hashOffsetBytes ?? 0;
    const treeBytes = verifier.sizeBytes;
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

      if (!progress.hashTreeWritten && (await this.chooseMethod(name, img, deltas, booted)) === 'delta') {
        try {
          await this.writeFromDelta(
            counted,
            name,
            img,
            dataFh,
            verifier,
            booted,
            allImages,
            deltas.candidates,
          );
        } catch (e) {
          if (!(e instanceof DeltaUnusable)) throw e;
          await this.fallBackToFull(name, e, allImages);
        }
      }
      if (!progress.hashTreeWritten && this.journal!.images[name]!.method !== 'delta') {
        await writeImage({
          imageName: name,
          image: img,
          verifier,
          dataFh,
          source: counted,
          blocksDone: this.journal!.images[name]!.blocksWritten,
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
              ...this.journal!.images[name]!,
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
      await this.writeHashArea(sameDevice ? dataFh : undefined, t, verifier, booted, target, name);
      this.journal!.images[name] = { ...this.journal!.images[name]!, hashTreeWritten: true };
      await this.save({});
    } finally {
      await dataFh.close();
    }
  }

  /**
   * Write image `name` from the journalled delta (resuming its checkpoint). Throws DeltaUnusable
   * when the delta cannot produce the image (the caller falls back to the full artifact).
   */
  private async writeFromDelta(
    source: ReleaseSource,
    name: ImageName,
    img: ImageManifest,
    dataFh: FileHandle,
    verifier: VerifiedTree,
    booted: SlotName,
    allImages: [ImageName, ImageManifest][],
    candidates: DeltaCandidate[],
  ): Promise<void> {
    const { config } = this.o;
    const progress = this.journal!.images[name]!;
    const delta = progress.delta!;
    if (!candidates.some((d) => d.digest === delta.digest && d.image === name)) {
      throw new DeltaUnusable(
        'ERR_INSTALL_DELTA_WITHDRAWN',
        `delta ${delta.digest} is no longer offered for this release`,
      );
    }
    const active = config.slots[booted][name];
    if (active === undefined) {
      throw new DeltaUnusable(
        'ERR_INSTALL_SLOT_LAYOUT',
        `the active slot ${booted} has no ${name} device configured`,
      );
    }
    const bs = img.verity.dataBlockSize;
    const total = img.verity.dataBlocks;
    if (progress.blocksWritten === total && delta.checkpoint === undefined) {
      // Applied completely before an interruption (e.g. while writing the hash area): nothing to
      // download if every block still verifies on the slot; otherwise apply it again from op 0.
      if ((await reverifyWrittenBlocks(dataFh, verifier, bs, total)) === total) return;
      this.journal!.images[name] = { ...progress, blocksWritten: 0 };
    }
    await writeImageFromDelta({
      imageName: name,
      image: img,
      delta,
      metadataPath: deltaMetadataPath(config.dataDir, this.journal!.installId, name),
      verifier,
      dataFh,
      sourcePath: active.path,
      ...(active.hashPath === undefined && active.hashOffsetBytes !== undefined
        ? { sourceLimitBytes: active.hashOffsetBytes }
        : {}),
      source,
      blocksDone: this.journal!.images[name]!.blocksWritten,
      checkpointBytes: this.o.checkpointBytes ?? DEFAULT_CHECKPOINT_BYTES,
      onCheckpoint: async (checkpoint, blocksWritten) => {
        const current = this.journal!.images[name]!;
        this.journal!.images[name] = { ...current, blocksWritten, delta: { ...current.delta!, checkpoint } };
        await this.save({
          progress: { bytesDone: this.bytesDone(allImages), bytesTotal: this.journal!.progress.bytesTotal },
        });
      },
      onBytes: async (bytesWritten) => {
        const now = performance.now();
        if (now - this.lastProgressSaveMs < PROGRESS_SAVE_INTERVAL_MS) return;
        this.lastProgressSaveMs = now;
        const others = this.bytesDone(allImages) - this.journal!.images[name]!.blocksWritten * bs;
        await this.save({
          progress: { bytesDone: others + bytesWritten, bytesTotal: this.journal!.progress.bytesTotal },
        });
      },
      ...(this.o.signal ? { signal: this.o.signal } : {}),
    });
    // Every block is written, verified and fdatasynced; the checkpoint has served its purpose.
    const { checkpoint: _done, ...finished } = this.journal!.images[name]!.delta!;
    this.journal!.images[name] = {
      ...this.journal!.images[name]!,
      blocksWritten: img.verity.dataBlocks,
      delta: finished,
    };
    await this.save({
      progress: { bytesDone: this.bytesDone(allImages), bytesTotal: this.journal!.progress.bytesTotal },
    });
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
    tree: VerifiedTree,
    booted: SlotName,
    target: SlotName,
    name: ImageName,
  ): Promise<void> {
    const offset = t.hashOffsetBytes ?? 0;
    const where = `slot ${target} ${name} hash area`;
    if (sameDeviceFh !== undefined) {
      await tree.copyTo(sameDeviceFh, offset, where);
      await sameDeviceFh.datasync();
      return;
    }
    const path = t.hashPath!;
    const fh = await openSlotForWrite(path, target, booted, this.o.config.slots[booted]);
    try {
      // A separate hash file holds exactly what veritysetup would write into a new file.
      if ((await fh.stat()).isFile()) await fh.truncate(offset + tree.sizeBytes);
      await tree.copyTo(fh, offset, where);
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

/** The release's image root hashes in state.json's shape (each already checked by the manifest schema). */
function rootHashesOf(images: [ImageName, ImageManifest][]): ImageRootHashes {
  const out: ImageRootHashes = {};
  for (const [name, img] of images) {
    if (v.is(rootHashSchema, img.verity.rootHash)) out[name] = img.verity.rootHash;
  }
  return out;
}

/** An install's per-image scratch files in the data directory (spool, delta metadata, hash tree). */
async function removeScratch(dataDir: string, installId: string, image: string): Promise<void> {
  await rm(spoolPath(dataDir, installId, image), { force: true });
  await rm(deltaMetadataPath(dataDir, installId, image), { force: true });
  await rm(treePath(dataDir, installId, image), { force: true });
}

function withoutError(j: InstallJournal): InstallJournal {
  const { error: _error, ...rest } = j;
  return rest;
}
