// Streams one image's full artifact into an (inactive) slot device: decode on the fly, cut into
// dm-verity data blocks, check each block against the signed tree BEFORE it is written
// (docs/formats.md §1.5: leaf digest = H(salt ‖ block) for hash type 1), positional writes, and
// durable checkpoints (fdatasync, then the journal) so a crash resumes where it stopped.
import { createHash } from 'node:crypto';
import { type FileHandle, open, rm, stat } from 'node:fs/promises';
import type { ImageManifest } from '@abota/manifest';
import { ClientError } from '../errors.js';
import { abortError } from '../http/backoff.js';
import { bufferCollector } from './buffer-gc.js';
import { type ArtifactCodec, assertSupportedCodec, canResumeMidStream, decode } from './codec.js';
import type { ReleaseSource } from './release-source.js';
import { readAt, writeFully } from './slot-io.js';

/** The part of @abota/verity's BlockVerifier the installer needs. */
export interface BlockCheck {
  verifyBlock(blockIndex: number, data: Uint8Array): boolean;
}

export interface WriteImageOptions {
  imageName: string;
  image: ImageManifest;
  verifier: BlockCheck;
  dataFh: FileHandle;
  source: ReleaseSource;
  /** Verified blocks recorded as durable by the last checkpoint (0 for a fresh install). */
  blocksDone: number;
  /** fdatasync + journal checkpoint after about this many newly written bytes. */
  checkpointBytes: number;
  /** Called after the slot (and the spool) are durable up to these counts. */
  onCheckpoint: (blocksWritten: number, spooledBytes: number) => Promise<void>;
  /**
   * Compressed codecs only: keep the downloaded artifact bytes in this file (data partition) so
   * a resume decodes the prefix from disk instead of downloading it again.
   */
  spool?: { path: string; durableBytes: number };
  /** Bytes written so far in this image (for progress), called after every batch; keep it cheap. */
  onBytes?: (bytesDone: number) => Promise<void> | void;
  signal?: AbortSignal;
}

/**
 * Blocks processed per verify-then-write batch (256 KiB of 4 KiB blocks): the memory bound.
 * 1 MiB peaked 1–1.5 MiB higher on Node 24 for the same install time (README "Memory").
 */
const BATCH_BYTES = 256 * 1024;

/**
 * Re-check blocks [0, blocksDone) already on the slot: a checkpoint can claim more than is
 * there (a device that lies about fsync, someone writing the slot). Returns the number of
 * leading blocks that verify, and feeds them to `hash` when given (codec none: the artifact IS
 * the image, so its digest continues from the slot's bytes).
 */
export async function reverifyWrittenBlocks(
  fh: FileHandle,
  verifier: BlockCheck,
  blockSize: number,
  blocksDone: number,
  hash?: ReturnType<typeof createHash>,
): Promise<number> {
  const perBatch = Math.max(1, Math.floor(BATCH_BYTES / blockSize));
  const buf = new Uint8Array(perBatch * blockSize);
  for (let first = 0; first < blocksDone; first += perBatch) {
    const count = Math.min(perBatch, blocksDone - first);
    const got = await readAt(fh, buf, count * blockSize, first * blockSize);
    for (let k = 0; k < count; k++) {
      const block = buf.subarray(k * blockSize, (k + 1) * blockSize);
      if ((k + 1) * blockSize > got || !verifier.verifyBlock(first + k, block)) return first + k;
      hash?.update(block);
    }
  }
  return blocksDone;
}

/**
 * Write `o.image` from its full artifact, resuming after the journal's durable blocks. Resolves
 * once every block and the uncovered tail are written and fdatasynced and the artifact digest
 * matched (the last onCheckpoint says so).
 */
export async function writeImage(o: WriteImageOptions): Promise<void> {
  const w = new ArtifactWrite(o);
  await w.resume();
  const input = await w.openInput();
  try {
    await w.streamInto(input);
  } finally {
    await w.closeSpool();
  }
  await w.removeSpool();
  await w.finish();
}

/** The state of one full-artifact write: the verify-then-write batch, the tail, the spool. */
class ArtifactWrite {
  private readonly where: string;
  private readonly codec: ArtifactCodec;
  private readonly bs: number;
  private readonly coveredBytes: number;
  private readonly tailBytes: number;
  private readonly artifactHash = createHash('sha256');
  private readonly collect = bufferCollector();
  private blocksDone: number;
  /** Artifact bytes skipped at the start of the stream (codec none: the blocks on the slot). */
  private compressedStart = 0;
  private compressedSeen = 0;
  private readonly batch: Uint8Array;
  private batchFill = 0;
  private batchFirstBlock = 0; // block index of batch[0]
  private outputOffset = 0; // decoded bytes consumed so far (absolute)
  private readonly tail: Uint8Array;
  private tailFill = 0;
  private bytesSinceCheckpoint = 0;
  private spoolFh: FileHandle | undefined;
  private spooledBytes = 0;

  constructor(private readonly o: WriteImageOptions) {
    const { image } = o;
    this.where = `image ${o.imageName}`;
    const codec = image.artifact.codec;
    assertSupportedCodec(codec, this.where);
    this.codec = codec;
    this.bs = image.verity.dataBlockSize;
    this.coveredBytes = image.verity.dataBlocks * this.bs;
    this.tailBytes = image.sizeBytes - this.coveredBytes;
    if (this.tailBytes < 0 || this.tailBytes >= this.bs) {
      throw new ClientError(
        'ERR_INSTALL_UNVERIFIABLE_IMAGE',
        `${this.where}: ${image.sizeBytes} bytes but the verity tree covers ${this.coveredBytes}; at most one partial block may be uncovered`,
      );
    }
    this.blocksDone = o.blocksDone;
    this.batch = new Uint8Array(Math.max(1, Math.floor(BATCH_BYTES / this.bs)) * this.bs);
    this.tail = new Uint8Array(this.tailBytes);
  }

  /** Re-check the journal's durable blocks on the slot and decide where the stream starts. */
  async resume(): Promise<void> {
    const resumable = canResumeMidStream(this.codec);
    if (this.blocksDone > 0) {
      const hash = resumable ? this.artifactHash : undefined;
      this.blocksDone = await reverifyWrittenBlocks(
        this.o.dataFh,
        this.o.verifier,
        this.bs,
        this.blocksDone,
        hash,
      );
      // codec none: continue the download at the first missing byte. Compressed codecs restart
      // the stream and skip writing the blocks already verified on the slot (see codec.ts).
      if (resumable) this.compressedStart = this.blocksDone * this.bs;
    }
    this.batchFirstBlock = this.codec === 'none' ? this.blocksDone : 0;
    this.outputOffset = this.batchFirstBlock * this.bs;
    this.compressedSeen = this.compressedStart;
  }

  /**
   * The artifact's bytes from the resume point, bounded by its signed size and hashed. The
   * spool is a cache of the compressed stream: nothing in it is trusted — every decoded block
   * is still verified against the tree, and the artifact digest covers the spooled prefix too.
   */
  async openInput(): Promise<AsyncIterable<Uint8Array>> {
    const { spool, source, signal } = this.o;
    const { digest, sizeBytes } = this.o.image.artifact;
    if (spool === undefined || canResumeMidStream(this.codec))
      return this.counted(source.openBlob(digest, sizeBytes, this.compressedStart, signal));
    // A spool shorter than its recorded durable length (lost, replaced) is not used.
    const onDisk = await stat(spool.path).then(
      (st) => st.size,
      () => 0,
    );
    const resumeSpool = spool.durableBytes <= onDisk ? spool.durableBytes : 0;
    this.spoolFh = await open(spool.path, resumeSpool > 0 ? 'r+' : 'w', 0o600);
    await this.spoolFh.truncate(resumeSpool);
    this.spooledBytes = resumeSpool;
    return this.counted(this.spooled(this.spoolFh, resumeSpool));
  }

  /** The spooled prefix read back from disk, then the rest downloaded and appended to the spool. */
  private async *spooled(fh: FileHandle, resumeSpool: number): AsyncGenerator<Uint8Array> {
    const buf = new Uint8Array(BATCH_BYTES);
    for (let at = 0; at < resumeSpool; ) {
      const n = await readAt(fh, buf, Math.min(buf.byteLength, resumeSpool - at), at);
      if (n === 0) break;
      at += n;
      yield buf.slice(0, n);
    }
    const { digest, sizeBytes } = this.o.image.artifact;
    for await (const chunk of this.o.source.openBlob(digest, sizeBytes, resumeSpool, this.o.signal)) {
      await writeFully(fh, chunk, this.spooledBytes, `${this.where} spool`);
      this.spooledBytes += chunk.byteLength;
      yield chunk;
    }
  }

  private async *counted(input: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    const artifactBytes = this.o.image.artifact.sizeBytes;
    for await (const chunk of input) {
      this.compressedSeen += chunk.byteLength;
      this.collect(chunk.byteLength);
      if (this.compressedSeen > artifactBytes) {
        throw new ClientError(
          'ERR_INSTALL_ARTIFACT_SIZE',
          `${this.where}: artifact is longer than the signed ${artifactBytes} bytes`,
        );
      }
      this.artifactHash.update(chunk);
      yield chunk;
    }
  }

  async closeSpool(): Promise<void> {
    await this.spoolFh?.close();
  }

  async removeSpool(): Promise<void> {
    if (this.spoolFh !== undefined) await rm(this.o.spool!.path, { force: true });
  }

  /** Decode, cut into verity blocks (batched) and hold back the uncovered partial last block. */
  async streamInto(input: AsyncIterable<Uint8Array>): Promise<void> {
    const { image, signal } = this.o;
    const { batch, coveredBytes } = this;
    for await (const chunk of decode(this.codec, input, image.sizeBytes, this.where)) {
      if (signal?.aborted) throw abortError(signal);
      if (this.codec !== 'none') this.collect(chunk.byteLength);
      let pos = 0;
      while (pos < chunk.byteLength) {
        if (this.outputOffset >= coveredBytes) {
          this.holdTail(chunk.subarray(pos));
          break;
        }
        const room = Math.min(batch.byteLength - this.batchFill, coveredBytes - this.outputOffset);
        const n = Math.min(room, chunk.byteLength - pos);
        batch.set(chunk.subarray(pos, pos + n), this.batchFill);
        this.batchFill += n;
        pos += n;
        this.outputOffset += n;
        if (this.batchFill === batch.byteLength || this.outputOffset === coveredBytes)
          await this.flushBatch();
      }
    }
  }

  /** The uncovered partial last block: held back until the artifact digest is checked. */
  private holdTail(bytes: Uint8Array): void {
    if (this.tailFill + bytes.byteLength > this.tailBytes) {
      throw new ClientError(
        'ERR_INSTALL_ARTIFACT_SIZE',
        `${this.where}: artifact decodes to more than the signed ${this.o.image.sizeBytes} bytes`,
      );
    }
    this.tail.set(bytes, this.tailFill);
    this.tailFill += bytes.byteLength;
    this.outputOffset += bytes.byteLength;
  }

  /** Verify every block of the batch, then write it; a durable checkpoint every checkpointBytes. */
  private async flushBatch(): Promise<void> {
    const { bs, batch, where } = this;
    const blocks = this.batchFill / bs;
    const first = this.batchFirstBlock;
    // Blocks before `blocksDone` were verified on the slot already (compressed-codec restart).
    const skip = Math.max(0, Math.min(blocks, this.blocksDone - first));
    for (let k = skip; k < blocks; k++) {
      const index = first + k;
      if (!this.o.verifier.verifyBlock(index, batch.subarray(k * bs, (k + 1) * bs))) {
        throw new ClientError(
          'ERR_INSTALL_BLOCK_CORRUPT',
          `${where}: data block ${index} (image bytes ${index * bs}-${(index + 1) * bs - 1}) does not match the signed dm-verity tree; nothing of it was written`,
        );
      }
    }
    if (skip < blocks) {
      const from = (first + skip) * bs;
      await writeFully(
        this.o.dataFh,
        batch.subarray(skip * bs, this.batchFill),
        from,
        `${where} block ${first + skip}`,
      );
      this.bytesSinceCheckpoint += this.batchFill - skip * bs;
      this.blocksDone = first + blocks;
      await this.o.onBytes?.(this.blocksDone * bs);
    }
    this.batchFirstBlock += blocks;
    this.batchFill = 0;
    if (this.bytesSinceCheckpoint >= this.o.checkpointBytes) {
      await this.o.dataFh.datasync();
      if (this.spoolFh !== undefined) await this.spoolFh.datasync();
      await this.o.onCheckpoint(this.blocksDone, this.spooledBytes);
      this.bytesSinceCheckpoint = 0;
    }
  }

  /** Sizes and digest checked, the tail written, the slot fdatasynced: the last checkpoint. */
  async finish(): Promise<void> {
    const { image, dataFh } = this.o;
    const { digest, sizeBytes: artifactBytes } = image.artifact;
    if (this.outputOffset !== image.sizeBytes || this.compressedSeen !== artifactBytes) {
      throw new ClientError(
        'ERR_INSTALL_ARTIFACT_SIZE',
        `${this.where}: artifact ended after ${this.compressedSeen} of ${artifactBytes} bytes, decoding to ${this.outputOffset} of ${image.sizeBytes}`,
      );
    }
    const actual = `sha256:${this.artifactHash.digest('hex')}`;
    if (actual !== digest) {
      throw new ClientError(
        'ERR_INSTALL_ARTIFACT_DIGEST_MISMATCH',
        `${this.where}: artifact digest is ${actual}, the signed manifest says ${digest}`,
      );
    }
    if (this.tailBytes > 0) await writeFully(dataFh, this.tail, this.coveredBytes, `${this.where} tail`);
    await dataFh.datasync();
    await this.o.onCheckpoint(image.verity.dataBlocks, 0);
  }
}
