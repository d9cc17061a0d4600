// The install plan: pure decisions over values, made before the executor (installer.ts) touches
// a slot — where each image of the release goes in the inactive slot, where its dm-verity hash
// area goes, whether it is written from its full artifact or from a delta against the active
// slot, and from which point an interrupted install resumes. No I/O here: the inputs are the
// signed manifest, the slot config, the journal and the offered deltas, so every rule is tested
// with plain data (plan.test.ts).
import type { ImageManifest, ReleaseManifest } from '@abota/manifest';
import type { AgentConfig, ImageRootHashes, ImageTarget } from '../config.js';
import { ClientError } from '../errors.js';
import { chooseDelta } from './delta-install.js';
import { type DeltaProgress, type ImageProgress, type InstallJournal, isInProgress } from './journal.js';
import type { DeltaCandidate } from './release-source.js';
import type { SlotName } from './slot-io.js';

export const IMAGE_ORDER = ['rootfs', 'boot'] as const;
export type ImageName = (typeof IMAGE_ORDER)[number];

/** The release's images in install order (rootfs, then boot). */
export function imagesOf(m: ReleaseManifest): [ImageName, ImageManifest][] {
  const out: [ImageName, ImageManifest][] = [];
  for (const name of IMAGE_ORDER) {
    const img = m.images[name];
    if (img !== undefined) out.push([name, img]);
  }
  return out;
}

/** Where the hash area of an image goes: after the data on its device, or on a device of its own. */
export type HashPlacement =
  | { kind: 'after-data'; offsetBytes: number }
  | { kind: 'separate'; path: string; offsetBytes: number };

/** A delta's problem found by the plan: the executor falls back to the full artifact. */
export interface DeltaProblem {
  code: string;
  message: string;
}

/** How the image's data area gets onto the slot in this run. */
export type WriteDecision =
  /** The data area and hash area were written before the interruption: only the hash area is written again. */
  | { method: 'none' }
  /** `record`: journal `method: full` before the first byte; `skipped`: why an offered delta is not used. */
  | { method: 'full'; record: boolean; skipped?: string }
  | {
      method: 'delta';
      /** The journal's delta (chosen in an earlier run) or the one chosen now. */
      delta: DeltaProgress;
      /** Chosen now: journal it before the first byte, and report it. */
      record: boolean;
      /** The active slot's data area the delta reads (never written). */
      source?: { path: string; limitBytes?: number };
      /** Set when the delta cannot be applied at all: fall back to the full artifact. */
      unusable?: DeltaProblem;
    };

/** Where the image resumes, from the journal (every count is re-verified on the slot before use). */
export interface ResumePoint {
  /** Verified blocks the journal records as durable on the slot. */
  blocksDone: number;
  /** Compressed artifact bytes durably in the spool (full artifact, compressed codecs). */
  spooledBytes: number;
  /** Delta only: every block was applied and no checkpoint is left — re-verify instead of downloading. */
  deltaApplied: boolean;
}

export interface ImagePlan {
  name: ImageName;
  image: ImageManifest;
  /** The inactive slot's device (or file) for the image's data. */
  dataPath: string;
  hashArea: HashPlacement;
  /** A block device shorter than this cannot hold the image (and its hash area, when after the data). */
  requiredDeviceBytes: number;
  /** A regular data file is made exactly this size (byte-identical to the image); absent: left as is. */
  dataFileSizeBytes?: number;
  write: WriteDecision;
  resume: ResumePoint;
}

export interface PlanInput {
  /** The release's version (messages). */
  version: string;
  images: [ImageName, ImageManifest][];
  bootedSlot: SlotName;
  targetSlot: SlotName;
  slots: AgentConfig['slots'];
  /** The journal's per-image progress (an install's first run: all zero). */
  progress: InstallJournal['images'];
  /** Deltas offered for the release, and the active slot's KNOWN root hashes (never guessed). */
  deltas: { candidates: DeltaCandidate[]; active: ImageRootHashes };
}

/** The target slot's device config of each image; refuses a release the slot has no device for. */
export function targetsOf(
  images: [ImageName, ImageManifest][],
  slots: AgentConfig['slots'],
  targetSlot: SlotName,
  version: string,
): Map<ImageName, ImageTarget> {
  const targets = new Map<ImageName, ImageTarget>();
  for (const [name] of images) {
    const t = slots[targetSlot][name];
    if (t === undefined) {
      throw new ClientError(
        'ERR_INSTALL_SLOT_LAYOUT',
        `release ${version} carries a ${name} image but slot ${targetSlot} has no ${name} device configured`,
      );
    }
    targets.set(name, t);
  }
  return targets;
}

/** Plan every image of the release (install order). Throws ERR_INSTALL_SLOT_LAYOUT for a layout that cannot hold it. */
export function planInstall(input: PlanInput): ImagePlan[] {
  const targets = targetsOf(input.images, input.slots, input.targetSlot, input.version);
  return input.images.map(([name, image]) => {
    const progress = input.progress[name] ?? freshProgress(image);
    return {
      name,
      image,
      ...placementOf(name, image, targets.get(name)!, input.targetSlot),
      write: decideWrite(name, image, progress, input),
      resume: {
        blocksDone: progress.blocksWritten,
        spooledBytes: progress.spooledBytes ?? 0,
        deltaApplied:
          progress.method === 'delta' &&
          progress.blocksWritten === image.verity.dataBlocks &&
          progress.delta?.checkpoint === undefined,
      },
    };
  });
}

function freshProgress(image: ImageManifest): ImageProgress {
  return { blocksWritten: 0, totalBlocks: image.verity.dataBlocks, hashTreeWritten: false };
}

function placementOf(
  name: ImageName,
  image: ImageManifest,
  t: ImageTarget,
  targetSlot: SlotName,
): Pick<ImagePlan, 'dataPath' | 'hashArea' | 'requiredDeviceBytes' | 'dataFileSizeBytes'> {
  const offsetBytes = t.hashOffsetBytes ?? 0;
  if (t.hashPath !== undefined) {
    return {
      dataPath: t.path,
      hashArea: { kind: 'separate', path: t.hashPath, offsetBytes },
      requiredDeviceBytes: image.sizeBytes,
      dataFileSizeBytes: image.sizeBytes,
    };
  }
  if (offsetBytes < image.sizeBytes) {
    throw new ClientError(
      'ERR_INSTALL_SLOT_LAYOUT',
      `slot ${targetSlot} ${name}: hash area at byte ${offsetBytes} overlaps the ${image.sizeBytes}-byte image on ${t.path}`,
    );
  }
  return {
    dataPath: t.path,
    hashArea: { kind: 'after-data', offsetBytes },
    requiredDeviceBytes: offsetBytes + image.verity.hashTree.sizeBytes,
  };
}

/**
 * Full or delta: an image the journal already has a method for keeps it; one with blocks but no
 * method (a journal from before deltas) is full; otherwise chooseDelta() decides.
 */
function decideWrite(
  name: ImageName,
  image: ImageManifest,
  progress: ImageProgress,
  input: PlanInput,
): WriteDecision {
  if (progress.hashTreeWritten) return { method: 'none' };
  if (progress.method === 'full') return { method: 'full', record: false };
  if (progress.method === 'delta' && progress.delta !== undefined)
    return deltaDecision(name, progress.delta, false, input);
  if (progress.blocksWritten > 0) return { method: 'full', record: false };
  const choice = chooseDelta(name, image, input.deltas.candidates, input.deltas.active[name]);
  if (choice.use === undefined) {
    return {
      method: 'full',
      record: true,
      ...(choice.reason !== undefined ? { skipped: choice.reason } : {}),
    };
  }
  const { digest, sizeBytes, sourceRootHash } = choice.use;
  return deltaDecision(name, { digest, sizeBytes, sourceRootHash }, true, input);
}

/** A delta is applied only while it is still offered and the active slot has a device to read it from. */
function deltaDecision(
  name: ImageName,
  delta: DeltaProgress,
  record: boolean,
  input: PlanInput,
): WriteDecision {
  const base = { method: 'delta', delta, record } as const;
  if (!input.deltas.candidates.some((d) => d.digest === delta.digest && d.image === name)) {
    const message = `delta ${delta.digest} is no longer offered for this release`;
    return { ...base, unusable: { code: 'ERR_INSTALL_DELTA_WITHDRAWN', message } };
  }
  const active = input.slots[input.bootedSlot][name];
  if (active === undefined) {
    const message = `the active slot ${input.bootedSlot} has no ${name} device configured`;
    return { ...base, unusable: { code: 'ERR_INSTALL_SLOT_LAYOUT', message } };
  }
  // Hash area after the data on the same device: the source is the data area before it.
  const limit = active.hashPath === undefined ? active.hashOffsetBytes : undefined;
  return { ...base, source: { path: active.path, ...(limit !== undefined ? { limitBytes: limit } : {}) } };
}

/**
 * Whether an install continues the journal of an earlier attempt: the same signed manifest for
 * the same slots, still in progress — or interrupted while arming its trial (boot-pending) in
 * this same boot (`currentBootId`), when only the arming is repeated.
 */
export function resumesJournal(
  previous: InstallJournal | undefined,
  now: { manifestJws: string; bootedSlot: SlotName; targetSlot: SlotName; currentBootId?: string },
): boolean {
  if (previous === undefined) return false;
  const unfinished =
    isInProgress(previous) ||
    (previous.phase === 'boot-pending' &&
      now.currentBootId !== undefined &&
      previous.bootId === now.currentBootId);
  return (
    unfinished &&
    previous.manifestJws === now.manifestJws &&
    previous.targetSlot === now.targetSlot &&
    previous.bootedSlot === now.bootedSlot
  );
}
