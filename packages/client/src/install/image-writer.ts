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
import { assertSupportedCodec, canResumeMidStream, decode } from './codec.js';
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

export async function writeImage(o: WriteImageOptions): Promise<void> {
  const { image, verifier, dataFh } = o;
  const { codec: codecName, digest, sizeBytes: artifactBytes } = image.artifact;
  const where = `image ${o.imageName}`;
  assertSupportedCodec(codecName, where);
  const codec = codecName;
  const bs = image.verity.dataBlockSize;
  const totalBlocks = image.verity.dataBlocks;
  const coveredBytes = totalBlocks * bs;
  const tailBytes = image.sizeBytes - coveredBytes;
  if (tailBytes < 0 || tailBytes >= bs) {
    throw new ClientError(
      'ERR_INSTALL_UNVERIFIABLE_IMAGE',
      `${where}: ${image.sizeBytes} bytes but the verity tree covers ${coveredBytes}; at most one partial block may be uncovered`,
    );
  }

  const artifactHash = createHash('sha256');
  let blocksDone = o.blocksDone;
  let compressedStart = 0;
  if (blocksDone > 0) {
    const resumable = canResumeMidStream(codec);
    blocksDone = await reverifyWrittenBlocks(
      dataFh,
      verifier,
      bs,
      blocksDone,
      resumable ? artifactHash : undefined,
    );
    // codec none: continue the download at the first missing byte. Compressed codecs restart
    // the stream and skip writing the blocks already verified on the slot (see codec.ts).
    if (resumable) compressedStart = blocksDone * bs;
  }

  const perBatch = Math.max(1, Math.floor(BATCH_BYTES / bs));
  const batch = new Uint8Array(perBatch * bs);
  let batchFill = 0;
  let batchFirstBlock = codec === 'none' ? blocksDone : 0; // block index of batch[0]
  let outputOffset = batchFirstBlock * bs; // decoded bytes consumed so far (absolute)
  const tail = new Uint8Array(tailBytes);
  let tailFill = 0;
  let bytesSinceCheckpoint = 0;

  const flushBatch = async (): Promise<void> => {
    const blocks = batchFill / bs;
    // Blocks before `blocksDone` were verified on the slot already (compressed-codec restart).
    const skip = Math.max(0, Math.min(blocks, blocksDone - batchFirstBlock));
    for (let k = skip; k < blocks; k++) {
      const index = batchFirstBlock + k;
      if (!verifier.verifyBlock(index, batch.subarray(k * bs, (k + 1) * bs))) {
        throw new ClientError(
          'ERR_INSTALL_BLOCK_CORRUPT',
          `${where}: data block ${index} (image bytes ${index * bs}-${(index + 1) * bs - 1}) does not match the signed dm-verity tree; nothing of it was written`,
        );
      }
    }
    if (skip < blocks) {
      await writeFully(
        dataFh,
        batch.subarray(skip * bs, batchFill),
        (batchFirstBlock + skip) * bs,
        `${where} block ${batchFirstBlock + skip}`,
      );
      bytesSinceCheckpoint += batchFill - skip * bs;
      blocksDone = batchFirstBlock + blocks;
      await o.onBytes?.(blocksDone * bs);
    }
    batchFirstBlock += blocks;
    batchFill = 0;
    if (bytesSinceCheckpoint >= o.checkpointBytes) {
      await dataFh.datasync();
      if (spoolFh !== undefined) await spoolFh.datasync();
      await o.onCheckpoint(blocksDone, spooledBytes);
      bytesSinceCheckpoint = 0;
    }
  };

  const collect = bufferCollector();
  let compressedSeen = compressedStart;
  const counted = async function* (input: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const chunk of input) {
      compressedSeen += chunk.byteLength;
      collect(chunk.byteLength);
      if (compressedSeen > artifactBytes) {
        throw new ClientError(
          'ERR_INSTALL_ARTIFACT_SIZE',
          `${where}: artifact is longer than the signed ${artifactBytes} bytes`,
        );
      }
      artifactHash.update(chunk);
      yield chunk;
    }
  };

  // The spool: a cache of the compressed stream. Nothing in it is trusted — every decoded block
  // is still verified against the tree, and the artifact digest covers the spooled prefix too.
  let spoolFh: FileHandle | undefined;
  let spooledBytes = 0;
  let input: AsyncIterable<Uint8Array>;
  if (o.spool !== undefined && !canResumeMidStream(codec)) {
    // A spool shorter than its recorded durable length (lost, replaced) is not used.
    const onDisk = await stat(o.spool.path).then(
      (st) => st.size,
      () => 0,
    );
    const resumeSpool = o.spool.durableBytes <= onDisk ? o.spool.durableBytes : 0;
    spoolFh = await open(o.spool.path, resumeSpool > 0 ? 'r+' : 'w', 0o600);
    await spoolFh.truncate(resumeSpool);
    spooledBytes = resumeSpool;
    const fh = spoolFh;
    const spooled = async function* (): AsyncGenerator<Uint8Array> {
      const buf = new Uint8Array(BATCH_BYTES);
      for (let at = 0; at < resumeSpool; ) {
        const n = await readAt(fh, buf, Math.min(buf.byteLength, resumeSpool - at), at);
        if (n === 0) break;
        at += n;
        yield buf.slice(0, n);
      }
      for await (const chunk of o.source.openBlob(digest, artifactBytes, resumeSpool, o.signal)) {
        await writeFully(fh, chunk, spooledBytes, `${where} spool`);
        spooledBytes += chunk.byteLength;
        yield chunk;
      }
    };
    input = counted(spooled());
  } else {
    input = counted(o.source.openBlob(digest, artifactBytes, compressedStart, o.signal));
  }
  try {
    await streamInto(input);
  } finally {
    await spoolFh?.close();
  }
  if (spoolFh !== undefined) await rm(o.spool!.path, { force: true });
  await finish();

  async function streamInto(input: AsyncIterable<Uint8Array>): Promise<void> {
    for await (const chunk of decode(codec, input, image.sizeBytes, where)) {
      if (o.signal?.aborted) throw abortError(o.signal);
      if (codec !== 'none') collect(chunk.byteLength);
      let pos = 0;
      while (pos < chunk.byteLength) {
        if (outputOffset >= coveredBytes) {
          // The uncovered partial last block: held back until the artifact digest is checked.
          const n = chunk.byteLength - pos;
          if (tailFill + n > tailBytes) {
            throw new ClientError(
              'ERR_INSTALL_ARTIFACT_SIZE',
              `${where}: artifact decodes to more than the signed ${image.sizeBytes} bytes`,
            );
          }
          tail.set(chunk.subarray(pos), tailFill);
          tailFill += n;
          outputOffset += n;
          break;
        }
        const room = Math.min(batch.byteLength - batchFill, coveredBytes - outputOffset);
        const n = Math.min(room, chunk.byteLength - pos);
        batch.set(chunk.subarray(pos, pos + n), batchFill);
        batchFill += n;
        pos += n;
        outputOffset += n;
        if (batchFill === batch.byteLength || outputOffset === coveredBytes) await flushBatch();
      }
    }
  }

  async function finish(): Promise<void> {
    if (outputOffset !== image.sizeBytes || compressedSeen !== artifactBytes) {
      throw new ClientError(
        'ERR_INSTALL_ARTIFACT_SIZE',
        `${where}: artifact ended after ${compressedSeen} of ${artifactBytes} bytes, decoding to ${outputOffset} of ${image.sizeBytes}`,
      );
    }
    const actual = `sha256:${artifactHash.digest('hex')}`;
    if (actual !== digest) {
      throw new ClientError(
        'ERR_INSTALL_ARTIFACT_DIGEST_MISMATCH',
        `${where}: artifact digest is ${actual}, the signed manifest says ${digest}`,
      );
    }
    if (tailBytes > 0) await writeFully(dataFh, tail, coveredBytes, `${where} tail`);
    await dataFh.datasync();
    await o.onCheckpoint(totalBlocks, 0);
  }
}
