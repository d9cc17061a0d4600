// The install journal: one small JSON file in the data directory, replaced atomically after every
// step and at checkpoints, so an install resumes after a crash at any point. It records where the
// release comes from, which slot is written, and per image how many verified blocks are durably
// on the slot (the resume point).
import { join } from 'node:path';
import { z } from 'zod';
import { readJsonFile, writeFileAtomic } from '../atomic-file.js';
import { imageRootHashesSchema } from '../config.js';
import { ClientError } from '../errors.js';

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

/** @abota/delta's DeltaCheckpoint: where an interrupted delta resumes (FORMAT.md "Resuming"). */
const deltaCheckpointSchema = z.object({
  nextOp: z.number().int().nonnegative(),
  payloadOffset: z.number().int().nonnegative(),
  metadataSizeBytes: z.number().int().positive(),
  metadataSha256: z.string().regex(/^[0-9a-f]{64}$/),
});

const deltaProgressSchema = z.object({
  digest: z.string(),
  sizeBytes: z.number().int().positive(),
  sourceRootHash: z.string(),
  /**
   * Last durable checkpoint: the target slot was fdatasynced after its ops were written and the
   * payload's metadata is in deltaMetadataPath() (resume needs both). Absent: start at op 0.
   */
  checkpoint: deltaCheckpointSchema.optional(),
});
export type DeltaProgress = z.infer<typeof deltaProgressSchema>;

const imageProgressSchema = z.object({
  /** Verified data blocks known to be durably on the slot (fsynced before this was recorded). */
  blocksWritten: z.number().int().nonnegative(),
  totalBlocks: z.number().int().nonnegative(),
  hashTreeWritten: z.boolean(),
  /** Compressed artifact bytes durably kept in the spool file (config spoolCompressedArtifacts). */
  spooledBytes: z.number().int().nonnegative().optional(),
  /**
   * How the image is being written: from a delta against the active slot, or from the full
   * artifact. Absent = not chosen yet (nothing written), or a journal from before deltas (full).
   */
  method: z.enum(['delta', 'full']).optional(),
  /** The delta chosen for this image; kept after a fallback to say which one failed. */
  delta: deltaProgressSchema.optional(),
  /** Why the delta was given up (method is then `full`, restarted from block 0). */
  deltaFallback: z.object({ code: z.string(), message: z.string() }).optional(),
  /** Size of the full artifact (status: "delta 3.1 MiB of 40 MiB full"). */
  artifactSizeBytes: z.number().int().nonnegative().optional(),
  /** Bytes of this image fetched from the release source so far, delta and artifact, resumes included. */
  downloadedBytes: z.number().int().nonnegative().optional(),
});
export type ImageProgress = z.infer<typeof imageProgressSchema>;

const sourceSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('directory'), path: z.string() }),
  z.object({ kind: z.literal('server'), artifacts: z.record(z.string(), z.string()) }),
]);
export type JournalSource = z.infer<typeof sourceSchema>;

export const journalSchema = z.object({
  schemaVersion: z.literal(1),
  installId: z.string(),
  phase: z.enum(installPhases),
  rolloutId: z.string().optional(),
  version: z.string(),
  securityVersion: z.number().int().nonnegative(),
  /** The JWS as received; re-verified (with the clock of the moment) whenever the install resumes. */
  manifestJws: z.string(),
  source: sourceSchema,
  bootedSlot: z.enum(['A', 'B']),
  targetSlot: z.enum(['A', 'B']),
  /** Root hash of each image of the release (signed manifest): recorded in state.json at commit. */
  rootHashes: imageRootHashesSchema.optional(),
  /** Version running when the install started (reported while installing, restored on rollback). */
  previousVersion: z.string(),
  images: z.record(z.string(), imageProgressSchema),
  progress: z.object({ bytesDone: z.number().nonnegative(), bytesTotal: z.number().nonnegative() }),
  startedAt: z.string(),
  updatedAt: z.string(),
  /** Boot identity when the slot was set "try once": the same id after a restart means no reboot yet. */
  bootId: z.string().optional(),
  /**
   * Set once setTryOnce returned (boot-pending is journalled before it is called). Without it,
   * booting the old slot again may mean the trial was never armed: after-boot arms it again.
   */
  armed: z.boolean().optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export type InstallJournal = z.infer<typeof journalSchema>;

/** Spool file of one image's compressed artifact for an install. */
export function spoolPath(dataDir: string, installId: string, image: string): string {
  return join(dataDir, `spool-${installId}-${image}.bin`);
}

/** The metadata (header + op table) of the delta being applied to one image, kept to resume it. */
export function deltaMetadataPath(dataDir: string, installId: string, image: string): string {
  return join(dataDir, `delta-${installId}-${image}.meta`);
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
  const r = journalSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new ClientError(
      'ERR_JOURNAL_INVALID',
      `install journal ${path} is not valid (${i ? `${i.path.join('.')}: ${i.message}` : 'schema'}); move it away to start over`,
    );
  }
  return r.data;
}

export async function writeJournal(dataDir: string, j: InstallJournal): Promise<void> {
  await writeFileAtomic(journalPath(dataDir), `${JSON.stringify(j, null, 2)}\n`);
}

export function isInProgress(j: InstallJournal | undefined): boolean {
  return j !== undefined && (j.phase === 'verified' || j.phase === 'writing' || j.phase === 'written');
}
