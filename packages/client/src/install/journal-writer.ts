// The one owner of an install attempt's journal (journal.ts): the executor and the two image
// writers say what happened — a phase reached, a durable checkpoint, a method chosen, a delta
// given up — and this class decides how the journal records it, writes it atomically and hands
// it to onProgress. Progress between checkpoints is throttled here, and the bytes fetched per
// image are merged into each write. Checkpoint entries are written only after the writer has
// fdatasynced the slot, so the journal never claims more than the device holds. A new install's
// journal and the removal of an install's scratch files live here too.
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import type { DeltaCheckpoint } from '@abota/delta';
import type { ImageManifest, ReleaseManifest } from '@abota/manifest';
import * as v from 'valibot';
import { type ImageRootHashes, rootHashSchema } from '../config.js';
import {
  deltaMetadataPath,
  type ImageProgress,
  type InstallJournal,
  type JournalSource,
  spoolPath,
  treePath,
  writeJournal,
} from './journal.js';
import type { ImageName } from './plan.js';
import type { SlotName } from './slot-io.js';

/** How often the journal's progress is refreshed between checkpoints. */
const PROGRESS_SAVE_INTERVAL_MS = 5000;

export interface JournalWriterOptions {
  dataDir: string;
  clock: () => Date;
  /** Every image of the release: the progress total is summed over them. */
  images: [ImageName, ImageManifest][];
  onProgress?: (j: InstallJournal) => void;
}

export class JournalWriter {
  private lastProgressSaveMs = performance.now();
  /** Bytes fetched per image in this run on top of the journal's count (merged in save()). */
  private readonly downloaded = new Map<string, number>();

  constructor(
    private journal: InstallJournal,
    private readonly o: JournalWriterOptions,
  ) {}

  /** The journal as last recorded (or about to be, for in-memory changes: restartDelta). */
  get current(): InstallJournal {
    return this.journal;
  }

  image(name: ImageName): ImageProgress {
    return this.journal.images[name]!;
  }

  /** Merge `patch`, stamp it, write the journal atomically, then report it. */
  async save(patch: Partial<InstallJournal> = {}): Promise<void> {
    this.journal = { ...this.journal, ...patch, updatedAt: this.o.clock().toISOString() };
    for (const [name, bytes] of this.downloaded) {
      const p = this.journal.images[name];
      if (p !== undefined)
        this.journal.images[name] = { ...p, downloadedBytes: (p.downloadedBytes ?? 0) + bytes };
    }
    this.downloaded.clear();
    await writeJournal(this.o.dataDir, this.journal);
    this.o.onProgress?.(this.journal);
  }

  /** Bytes of an image's blobs just fetched (recorded with the next write). */
  countDownloaded(name: ImageName, bytes: number): void {
    this.downloaded.set(name, (this.downloaded.get(name) ?? 0) + bytes);
  }

  /**
   * Progress for `status` and the server between checkpoints: `bytesInImage` are written, maybe
   * not yet durable. At most one journal write per PROGRESS_SAVE_INTERVAL_MS.
   */
  async progress(name: ImageName, bytesInImage: number, dataBlockSize: number): Promise<void> {
    const now = performance.now();
    if (now - this.lastProgressSaveMs < PROGRESS_SAVE_INTERVAL_MS) return;
    this.lastProgressSaveMs = now;
    const others = this.bytesDone() - this.image(name).blocksWritten * dataBlockSize;
    await this.save({
      progress: { bytesDone: others + bytesInImage, bytesTotal: this.journal.progress.bytesTotal },
    });
  }

  /** The method an image is written with, journalled before its first byte. */
  async methodChosen(name: ImageName, choice: Pick<ImageProgress, 'method' | 'delta'>): Promise<void> {
    this.update(name, choice);
    await this.save();
  }

  /** The slot (and the spool) are fdatasynced up to these counts. */
  async fullCheckpoint(name: ImageName, blocksWritten: number, spooledBytes: number): Promise<void> {
    this.update(name, { blocksWritten, ...(spooledBytes > 0 ? { spooledBytes } : {}) });
    await this.saveProgress();
  }

  /** The slot is fdatasynced up to `blocksWritten` and the delta's metadata file is durable. */
  async deltaCheckpoint(name: ImageName, checkpoint: DeltaCheckpoint, blocksWritten: number): Promise<void> {
    const current = this.image(name);
    this.update(name, { blocksWritten, delta: { ...current.delta!, checkpoint } });
    await this.saveProgress();
  }

  /**
   * A delta recorded as applied no longer verifies on the slot: it is applied again from op 0.
   * Held in memory only (progress counts from 0); the next checkpoint writes it.
   */
  restartDelta(name: ImageName): void {
    this.update(name, { blocksWritten: 0 });
  }

  /** Every block of the delta is written, verified and fdatasynced; its checkpoint has served its purpose. */
  async deltaApplied(name: ImageName, totalBlocks: number): Promise<void> {
    const { checkpoint: _done, ...finished } = this.image(name).delta!;
    this.update(name, { blocksWritten: totalBlocks, delta: finished });
    await this.saveProgress();
  }

  /** A delta failed for good: `full` from block 0, keeping which delta failed and why. */
  async fellBackToFull(name: ImageName, failure: { code: string; message: string }): Promise<void> {
    const { delta, ...rest } = this.image(name);
    const { checkpoint: _dropped, ...deltaWithoutCheckpoint } = delta ?? { checkpoint: undefined };
    this.journal.images[name] = {
      ...rest,
      method: 'full',
      blocksWritten: 0,
      ...(delta !== undefined ? { delta: deltaWithoutCheckpoint as typeof delta } : {}),
      deltaFallback: { code: failure.code, message: failure.message.slice(0, 2000) },
    };
    await this.saveProgress();
  }

  /** The image's hash area is written and fdatasynced. */
  async hashAreaWritten(name: ImageName): Promise<void> {
    this.update(name, { hashTreeWritten: true });
    await this.save();
  }

  private update(name: ImageName, patch: Partial<ImageProgress>): void {
    this.journal.images[name] = { ...this.image(name), ...patch };
  }

  private async saveProgress(): Promise<void> {
    await this.save({
      progress: { bytesDone: this.bytesDone(), bytesTotal: this.journal.progress.bytesTotal },
    });
  }

  /** Bytes of verified data durably on the slot, over all images. */
  private bytesDone(): number {
    let sum = 0;
    for (const [name, img] of this.o.images) {
      const p = this.journal.images[name];
      if (p !== undefined) sum += p.blocksWritten * img.verity.dataBlockSize;
    }
    return sum;
  }
}

export interface NewJournal {
  manifest: ReleaseManifest;
  manifestJws: string;
  images: [ImageName, ImageManifest][];
  bootedSlot: SlotName;
  targetSlot: SlotName;
  source: JournalSource;
  /** Version running when the install starts. */
  previousVersion: string;
  rolloutId?: string;
  now: Date;
}

/** A new install's journal: nothing written yet, phase `verified`. */
export function newJournal(o: NewJournal): InstallJournal {
  const { manifest, images } = o;
  const now = o.now.toISOString();
  const progress = (img: ImageManifest): ImageProgress => ({
    blocksWritten: 0,
    totalBlocks: img.verity.dataBlocks,
    hashTreeWritten: false,
    artifactSizeBytes: img.artifact.sizeBytes,
  });
  return {
    schemaVersion: 1,
    installId: randomUUID(),
    phase: 'verified',
    ...(o.rolloutId !== undefined ? { rolloutId: o.rolloutId } : {}),
    version: manifest.version,
    securityVersion: manifest.securityVersion,
    manifestJws: o.manifestJws,
    source: o.source,
    bootedSlot: o.bootedSlot,
    targetSlot: o.targetSlot,
    previousVersion: o.previousVersion,
    rootHashes: rootHashesOf(images),
    images: Object.fromEntries(images.map(([name, img]) => [name, progress(img)])),
    progress: { bytesDone: 0, bytesTotal: images.reduce((s, [, img]) => s + img.sizeBytes, 0) },
    startedAt: now,
    updatedAt: now,
  };
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
export async function removeScratch(dataDir: string, installId: string, image: string): Promise<void> {
  await rm(spoolPath(dataDir, installId, image), { force: true });
  await rm(deltaMetadataPath(dataDir, installId, image), { force: true });
  await rm(treePath(dataDir, installId, image), { force: true });
}
