// The two ways an image's data area reaches the inactive slot, behind one interface: the full
// artifact (image-writer.ts) and a delta against the active slot (delta-install.ts). Each writer
// resumes from the plan's resume point, verifies every block against the target's tree before
// it is written, and reports durable checkpoints to the journal's owner. Which writer runs, and
// falling back from the delta to the full artifact, is the executor's policy (installer.ts).
import type { FileHandle } from 'node:fs/promises';
import { writeImageFromDelta } from './delta-install.js';
import { reverifyWrittenBlocks, writeImage } from './image-writer.js';
import type { JournalWriter } from './journal-writer.js';
import type { ImagePlan, ResumePoint } from './plan.js';
import type { ReleaseSource } from './release-source.js';
import type { VerifiedTree } from './verified-tree.js';

/** One image being written into the inactive slot: what either writer works with. */
export interface ImageWrite {
  plan: ImagePlan;
  tree: VerifiedTree;
  /** The inactive slot's data device, open for writing. */
  dataFh: FileHandle;
  /** The release source; what it delivers is counted into the journal. */
  source: ReleaseSource;
  journal: JournalWriter;
  /** fdatasync + journal checkpoint after about this many newly written bytes. */
  checkpointBytes: number;
  /** Full artifact, compressed codecs: keep the downloaded bytes here (config spoolCompressedArtifacts). */
  spoolPath?: string;
  /** Delta: where its metadata is kept to resume (journal.deltaMetadataPath). */
  deltaMetadataPath: string;
  signal?: AbortSignal;
}

export interface ImageWriter {
  /**
   * Write the image's data area from `resume` on. Resolves once every block is verified, written
   * and fdatasynced, and the journal says so.
   */
  write(w: ImageWrite, resume: ResumePoint): Promise<void>;
}

/** The full artifact, decoded on the fly (image-writer.ts). */
export const fullWriter: ImageWriter = {
  async write(w, resume) {
    const { name, image } = w.plan;
    await writeImage({
      imageName: name,
      image,
      verifier: w.tree,
      dataFh: w.dataFh,
      source: w.source,
      blocksDone: resume.blocksDone,
      checkpointBytes: w.checkpointBytes,
      onBytes: (bytesInImage) => w.journal.progress(name, bytesInImage, image.verity.dataBlockSize),
      ...(w.spoolPath !== undefined
        ? { spool: { path: w.spoolPath, durableBytes: resume.spooledBytes } }
        : {}),
      onCheckpoint: (blocksWritten, spooledBytes) =>
        w.journal.fullCheckpoint(name, blocksWritten, spooledBytes),
      ...(w.signal ? { signal: w.signal } : {}),
    });
  },
};

/**
 * The plan's delta, resuming its journalled checkpoint. Throws DeltaUnusable when the delta cannot
 * produce the image (the executor falls back to the full artifact).
 */
export const deltaWriter: ImageWriter = {
  async write(w, resume) {
    const { name, image, write } = w.plan;
    if (write.method !== 'delta' || write.source === undefined)
      throw new Error(`image ${name}: the plan has no applicable delta`);
    const { dataBlockSize: bs, dataBlocks: total } = image.verity;
    let blocksDone = resume.blocksDone;
    if (resume.deltaApplied) {
      // Applied completely before an interruption (e.g. while writing the hash area): nothing to
      // download if every block still verifies on the slot; otherwise apply it again from op 0.
      if ((await reverifyWrittenBlocks(w.dataFh, w.tree, bs, total)) === total) return;
      w.journal.restartDelta(name);
      blocksDone = 0;
    }
    await writeImageFromDelta({
      imageName: name,
      image,
      delta: write.delta,
      metadataPath: w.deltaMetadataPath,
      verifier: w.tree,
      dataFh: w.dataFh,
      sourcePath: write.source.path,
      ...(write.source.limitBytes !== undefined ? { sourceLimitBytes: write.source.limitBytes } : {}),
      source: w.source,
      blocksDone,
      checkpointBytes: w.checkpointBytes,
      onCheckpoint: (checkpoint, blocksWritten) => w.journal.deltaCheckpoint(name, checkpoint, blocksWritten),
      onBytes: (bytesWritten) => w.journal.progress(name, bytesWritten, bs),
      ...(w.signal ? { signal: w.signal } : {}),
    });
    await w.journal.deltaApplied(name, total);
  },
};
