// The install journal: one small JSON file in the data directory, replaced atomically after every
// step and at checkpoints, so an install resumes after a crash at any point. It records where the
// release comes from, which slot is written, and per image how many verified blocks are durably
// on the slot (the resume point).
import { join } from 'node:path';
import * as v from 'valibot';
import { readJsonFile, writeFileAtomic } from '../atomic-file.js';
import { imageRootHashesSchema } from '../config.js';
import { ClientError } from '../errors.js';
import { describeIssue } from '../schema-issues.js';

export const JOURNAL_FILE = 'install-journal.json';

export const installPhases = [
  'verified', // manifest accepted; nothing on the slot is trusted yet
  'writing', // images being streamed into the target slot (checkpoints in `images`)
  'written', // all images and hash trees written and fsynced
  'boot-pending', // target set "try once"; the reboot hook runs next
  'committed', // booted the target, health checks passed, marked good
  'failed', // install or health checks failed; the target is not bootable
  'rolled-back', // we tried the target but the device came back on the old slot
] as const;
export type InstallPhase = (typeof installPhases)[number];

const nonNegativeInt = v.pipe(v.number(), v.safeInteger(), v.minValue(0));
const positiveInt = v.pipe(v.number(), v.safeInteger(), v.minValue(1));
const errorSchema = v.object({ code: v.string(), message: v.string() });

/** @abota/delta's DeltaCheckpoint: where an interrupted delta resumes (FORMAT.md "Resuming"). */
const deltaCheckpointSchema = v.object({
  nextOp: nonNegativeInt,
  payloadOffset: nonNegativeInt,
  metadataSizeBytes: positiveInt,
  metadataSha256: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)),
});

const deltaProgressSchema = v.object({
  digest: v.string(),
  sizeBytes: positiveInt,
  sourceRootHash: v.string(),
  /**
   * Last durable checkpoint: the target slot was fdatasynced after its ops were written and the
   * payload's metadata is in deltaMetadataPath() (resume needs both). Absent: start at op 0.
   */
  checkpoint: v.optional(deltaCheckpointSchema),
});
export type DeltaProgress = v.InferOutput<typeof deltaProgressSchema>;

const imageProgressSchema = v.object({
  /** Verified data blocks known to be durably on the slot (fsynced before this was recorded). */
  blocksWritten: nonNegativeInt,
  totalBlocks: nonNegativeInt,
  hashTreeWritten: v.boolean(),
  /** Compressed artifact bytes durably kept in the spool file (config spoolCompressedArtifacts). */
  spooledBytes: v.optional(nonNegativeInt),
  /**
   * How the image is being written: from a delta against the active slot, or from the full
   * artifact. Absent = not chosen yet (nothing written), or a journal from before deltas (full).
   */
  method: v.optional(v.picklist(['delta', 'full'])),
  /** The delta chosen for this image; kept after a fallback to say which one failed. */
  delta: v.optional(deltaProgressSchema),
  /** Why the delta was given up (method is then `full`, restarted from block 0). */
  deltaFallback: v.optional(errorSchema),
  /** Size of the full artifact (status: "delta 3.1 MiB of 40 MiB full"). */
  artifactSizeBytes: v.optional(nonNegativeInt),
  /** Bytes of this image fetched from the release source so far, delta and artifact, resumes included. */
  downloadedBytes: v.optional(nonNegativeInt),
});
export type ImageProgress = v.InferOutput<typeof imageProgressSchema>;

const sourceSchema = v.variant('kind', [
  v.object({ kind: v.literal('directory'), path: v.string() }),
  v.object({ kind: v.literal('server'), artifacts: v.record(v.string(), v.string()) }),
]);
export type JournalSource = v.InferOutput<typeof sourceSchema>;

export const journalSchema = v.object({
  schemaVersion: v.literal(1),
  installId: v.string(),
  phase: v.picklist(installPhases),
  rolloutId: v.optional(v.string()),
  version: v.string(),
  securityVersion: nonNegativeInt,
  /** The JWS as received; re-verified (with the clock of the moment) whenever the install resumes. */
  manifestJws: v.string(),
  source: sourceSchema,
  bootedSlot: v.picklist(['A', 'B']),
  targetSlot: v.picklist(['A', 'B']),
  /** Root hash of each image of the release (signed manifest): recorded in state.json at commit. */
  rootHashes: v.optional(imageRootHashesSchema),
  /** Version running when the install started (reported while installing, restored on rollback). */
  previousVersion: v.string(),
  images: v.record(v.string(), imageProgressSchema),
  progress: v.object({
    bytesDone: v.pipe(v.number(), v.minValue(0)),
    bytesTotal: v.pipe(v.number(), v.minValue(0)),
  }),
  startedAt: v.string(),
  updatedAt: v.string(),
  /** Boot identity when the slot was set "try once": the same id after a restart means no reboot yet. */
  bootId: v.optional(v.string()),
  /**
   * Set once setTryOnce returned (boot-pending is journalled before it is called). Without it,
   * booting the old slot again may mean the trial was never armed: after-boot arms it again.
   */
  armed: v.optional(v.boolean()),
  error: v.optional(errorSchema),
});
export type InstallJournal = v.InferOutput<typeof journalSchema>;

/** Spool file of one image's compressed artifact for an install. */
export function spoolPath(dataDir: string, installId: string, image: string): string {
  return join(dataDir, `spool-${installId}-${image}.bin`);
}

/** The metadata (header + op table) of the delta being applied to one image, kept to resume it. */
export function deltaMetadataPath(dataDir: string, installId: string, image: string): string {
  return join(dataDir, `delta-${installId}-${image}.meta`);
}

/**
 * The target hash tree of one image, downloaded and checked before any slot write: the verifier
 * reads its leaf level from here during the install attempt (not held in memory).
 */
export function treePath(dataDir: string, installId: string, image: string): string {
  return join(dataDir, `tree-${installId}-${image}.verity`);
}

export function journalPath(dataDir: string): string {
  return join(dataDir, JOURNAL_FILE);
}

export async function readJournal(dataDir: string): Promise<InstallJournal | undefined> {
  const path = journalPath(dataDir);
  let raw: unknown;
  try {
    raw = await readJsonFile(path);
  } catch (e) {
    throw new ClientError(
      'ERR_JOURNAL_INVALID',
      `install journal ${path} is not JSON: ${(e as Error).message}`,
    );
  }
  if (raw === undefined) return undefined;
  const r = v.safeParse(journalSchema, raw);
  if (!r.success) {
    throw new ClientError(
      'ERR_JOURNAL_INVALID',
      `install journal ${path} is not valid (${describeIssue(r.issues[0])}); move it away to start over`,
    );
  }
  return r.output;
}

export async function writeJournal(dataDir: string, j: InstallJournal): Promise<void> {
  await writeFileAtomic(journalPath(dataDir), `${JSON.stringify(j, null, 2)}\n`);
}

export function isInProgress(j: InstallJournal | undefined): boolean {
  return j !== undefined && (j.phase === 'verified' || j.phase === 'writing' || j.phase === 'written');
}
