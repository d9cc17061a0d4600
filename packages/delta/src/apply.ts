// Streaming apply (FORMAT.md "Applying"): read the metadata, then each op's data as it arrives,
// check its SHA-256, produce the op's target blocks, verify every block against the target's
// hash tree and only then write it. Memory stays bounded by the op limits in format.ts (one op's
// compressed data + decoded data + target span + a small source cache), whatever the image size.
import { createHash } from 'node:crypto';
import { type BrotliDecompress, createBrotliDecompress, constants as zlibConstants } from 'node:zlib';
import { type DeltaApplyProgress, DeltaError } from './errors.js';
import {
  brotliWindowBits,
  type DeltaHeader,
  type DeltaOp,
  decodeHeader,
  decodeMetadata,
  HEADER_SIZE_BYTES,
  MAX_BROTLI_LGWIN,
  OP_FLAG_SEGMENT_START,
  OpKind,
  segmentRestartOp,
} from './format.js';
import type { BlockVerifierLike, SourceReader, TargetWriter } from './io.js';
import { checkPatch, PatchCursor } from './patch.js';

/**
 * Where to resume: ops before `nextOp` are written. Download resumes at `payloadOffset`, the
 * start of the brotli segment op `nextOp` belongs to (FORMAT.md "Resuming"), so up to one
 * segment is fetched and decoded again, never written again.
 */
export interface DeltaCheckpoint {
  nextOp: number;
  /** Payload byte offset to resume the download from (an HTTP Range start). */
  payloadOffset: number;
  metadataSizeBytes: number;
  /** SHA-256 (hex) of the metadata, so a resume against a different payload is refused. */
  metadataSha256: string;
}

export interface ApplyDeltaOptions {
  /**
   * The payload bytes: from byte 0, or from `resume.payloadOffset` when resuming (then
   * `metadata` must hold the payload's first `resume.metadataSizeBytes` bytes).
   */
  payload: AsyncIterable<Uint8Array>;
  source: SourceReader;
  target: TargetWriter;
  /** Checks every produced block before it is written (the final guard; CONTRACTS.md). */
  verifier: BlockVerifierLike;
  /** Refuse a delta whose header names another target / source (hex root hashes). */
  expectedTargetRootHash?: string;
  expectedSourceRootHash?: string;
  expectedTargetSizeBytes?: number;
  resume?: { checkpoint: DeltaCheckpoint; metadata: Uint8Array };
  /** Called after every op is written; persist it to resume after a power cut. */
  onCheckpoint?: (checkpoint: DeltaCheckpoint) => void | Promise<void>;
}

export interface ApplyDeltaResult {
  header: DeltaHeader;
  opsApplied: number;
  blocksWritten: number;
  payloadBytesRead: number;
  /** True when the whole-image SHA-256 from the header was checked too (not on resume). */
  targetSha256Checked: boolean;
}

/** Pulls exact byte counts from an async iterable of arbitrary chunks. */
class PayloadReader {
  private readonly it: AsyncIterator<Uint8Array>;
  private chunk: Uint8Array = new Uint8Array(0);
  /** Reused for op data that spans chunks (a fresh buffer per op would outlive young-generation GCs). */
  private scratch = new Uint8Array(0);
  bytesRead = 0;
  constructor(
    source: AsyncIterable<Uint8Array>,
    private offset: number,
  ) {
    this.it = source[Symbol.asyncIterator]();
  }
  /**
   * Exactly `n` bytes or ERR_DELTA_TRUNCATED naming `what`. With `transient`, the bytes are
   * valid only until the next read (they may be a reused buffer); otherwise they are the
   * caller's. Either way a chunk of the payload is never used after the next one is requested,
   * so the payload iterable may reuse its buffers.
   */
  async read(n: number, what: string, transient = false): Promise<Uint8Array> {
    if (this.chunk.length >= n) {
      const view = this.chunk.subarray(0, n);
      this.chunk = this.chunk.subarray(n);
      this.advance(n);
      return transient ? view : view.slice();
    }
    if (transient && this.scratch.length < n) this.scratch = new Uint8Array(n);
    const out = transient ? this.scratch.subarray(0, n) : new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      if (this.chunk.length === 0) {
        const next = await this.it.next();
        if (next.done) {
          throw new DeltaError(
            'ERR_DELTA_TRUNCATED',
            `payload ends at byte ${this.offset + filled} inside ${what} (expected ${n} bytes from byte ${this.offset})`,
          );
        }
        this.chunk = next.value;
        continue;
      }
      const take = Math.min(n - filled, this.chunk.length);
      out.set(this.chunk.subarray(0, take), filled);
      this.chunk = this.chunk.subarray(take);
      filled += take;
    }
    this.advance(n);
    return out;
  }
  private advance(n: number): void {
    this.offset += n;
    this.bytesRead += n;
  }
  async expectEnd(): Promise<void> {
    while (this.chunk.length === 0) {
      const next = await this.it.next();
      if (next.done) return;
      this.chunk = next.value;
    }
    throw new DeltaError(
      'ERR_DELTA_TRAILING_DATA',
      `unexpected bytes after the last op's data at byte ${this.offset}`,
    );
  }
  async close(): Promise<void> {
    await this.it.return?.();
  }
}

const COPY_CHUNK_BYTES = 256 * 1024;
// One shared zero buffer: allocating per ZERO chunk lets garbage (external memory the GC is slow
// to collect) grow RSS far beyond the working set on images that are mostly free space.
let zeros = new Uint8Array(0);
let span = new Uint8Array(0);
/** The PATCH output buffer, reused piece after piece (emit awaits the write before it is refilled). */
function spanBuffer(length: number): Uint8Array {
  if (span.length < length) span = new Uint8Array(length);
  return span.subarray(0, length);
}
function zeroChunk(length: number): Uint8Array {
  if (zeros.length < length) zeros = new Uint8Array(Math.max(length, COPY_CHUNK_BYTES));
  return zeros.subarray(0, length);
}

/** A few recently used source pages (buffers allocated once): PATCH copies of one op tend to be close. */
class SourcePageCache {
  private static readonly PAGE = 16 * 1024;
  private static readonly PAGES = 64;
  private readonly pages = new Map<number, Uint8Array>();
  private readonly copyBuffer = new Uint8Array(COPY_CHUNK_BYTES);
  private lastPage = -1;
  constructor(private readonly source: SourceReader) {}
  /** Large block-aligned copies bypass the cache; the result is valid until the next call. */
  async sourceRead(offset: number, length: number): Promise<Uint8Array> {
    const into = this.copyBuffer.subarray(0, length);
    await this.source.read(offset, into);
    return into;
  }
  /**
   * Copy without waiting when every page of the range is cached (most PATCH copies: short and
   * near the previous one); false when a page must be read, then nothing was copied.
   */
  copyCached(out: Uint8Array, outPos: number, offset: number, length: number): boolean {
    const PAGE = SourcePageCache.PAGE;
    const first = Math.floor(offset / PAGE);
    const last = Math.floor((offset + length - 1) / PAGE);
    if (last !== first) return false;
    const page = this.pages.get(first);
    if (!page) return false;
    if (first !== this.lastPage) {
      // Keep the LRU order (the same page again and again needs no update).
      this.pages.delete(first);
      this.pages.set(first, page);
      this.lastPage = first;
    }
    const inPage = offset - first * PAGE;
    if (inPage + length > Math.min(PAGE, this.source.sizeBytes - first * PAGE)) return false;
    if (length <= 32) for (let k = 0; k < length; k++) out[outPos + k] = page[inPage + k]!;
    else out.set(page.subarray(inPage, inPage + length), outPos);
    return true;
  }
  async copyInto(out: Uint8Array, outPos: number, offset: number, length: number): Promise<void> {
    const PAGE = SourcePageCache.PAGE;
    let done = 0;
    while (done < length) {
      const pos = offset + done;
      const pageIndex = Math.floor(pos / PAGE);
      const page = await this.page(pageIndex);
      const inPage = pos - pageIndex * PAGE;
      const take = Math.min(length - done, page.length - inPage);
      if (take <= 0)
        throw new Error(`source page ${pageIndex} is short (${page.length} bytes) for byte ${pos}`);
      out.set(page.subarray(inPage, inPage + take), outPos + done);
      done += take;
    }
  }
  private async page(index: number): Promise<Uint8Array> {
    const PAGE = SourcePageCache.PAGE;
    const start = index * PAGE;
    const length = Math.min(PAGE, this.source.sizeBytes - start);
    this.lastPage = index;
    let buffer = this.pages.get(index);
    if (buffer) {
      this.pages.delete(index);
      this.pages.set(index, buffer);
      return buffer.subarray(0, length);
    }
    if (this.pages.size >= SourcePageCache.PAGES) {
      // Recycle the least recently used page's buffer (always a full PAGE bytes).
      const [oldest, recycled] = this.pages.entries().next().value!;
      this.pages.delete(oldest);
      buffer = recycled;
    } else {
      buffer = new Uint8Array(PAGE);
    }
    await this.source.read(start, buffer.subarray(0, length));
    this.pages.set(index, buffer);
    return buffer.subarray(0, length);
  }
}

export async function applyDelta(opts: ApplyDeltaOptions): Promise<ApplyDeltaResult> {
  const { source, target, verifier } = opts;
  const startOffset = opts.resume?.checkpoint.payloadOffset ?? 0;
  const reader = new PayloadReader(opts.payload, startOffset);
  const progress: DeltaApplyProgress = { opsApplied: 0, blocksWritten: 0 };
  const segment: { decoder: SegmentDecoder | undefined } = { decoder: undefined };
  try {
    // 1. Metadata: from the stream, or (resume) from the bytes the caller re-fetched.
    let metadata: Uint8Array;
    if (opts.resume) {
      metadata = opts.resume.metadata;
    } else {
      const head = await reader.read(HEADER_SIZE_BYTES, 'the delta header');
      const { metadataSizeBytes } = decodeHeader(head);
      metadata = new Uint8Array(metadataSizeBytes);
      metadata.set(head, 0);
      metadata.set(
        await reader.read(metadataSizeBytes - HEADER_SIZE_BYTES, 'the op table'),
        HEADER_SIZE_BYTES,
      );
    }
    const { header, ops, metadataSizeBytes } = decodeMetadata(metadata);
    // offsets[i] = payload offset of op i's data; resumeOffset(i) = where a resume before op i starts.
    const offsets: number[] = [];
    for (let i = 0, o = metadataSizeBytes; i <= ops.length; i++) {
      offsets.push(o);
      o += ops[i]?.dataLength ?? 0;
    }
    const segmentStarts: number[] = [];
    for (let i = 0, last = -1; i < ops.length; i++) {
      if ((ops[i]!.flags & OP_FLAG_SEGMENT_START) !== 0) last = i;
      segmentStarts.push(last);
    }
    const resumeOffset = (i: number) =>
      offsets[i >= ops.length || segmentStarts[i]! < 0 ? i : segmentStarts[i]!]!;
    const metadataSha256 = createHash('sha256').update(metadata.subarray(0, metadataSizeBytes)).digest('hex');
    checkIdentities(header, opts);
    let firstOp = 0;
    if (opts.resume) {
      const cp = opts.resume.checkpoint;
      if (
        cp.metadataSha256 !== metadataSha256 ||
        cp.metadataSizeBytes !== metadataSizeBytes ||
        !Number.isInteger(cp.nextOp) ||
        cp.nextOp < 0 ||
        cp.nextOp > ops.length ||
        cp.payloadOffset !== resumeOffset(cp.nextOp)
      ) {
        throw new DeltaError(
          'ERR_DELTA_CHECKPOINT_INVALID',
          `checkpoint (op ${cp.nextOp} at byte ${cp.payloadOffset}) does not belong to this delta (metadata sha256 ${metadataSha256})`,
        );
      }
      firstOp = cp.nextOp;
      for (let i = 0; i < firstOp; i++) progress.blocksWritten += ops[i]!.blockCount;
      progress.opsApplied = firstOp;
    }

    // 2. Ops in target order. The whole-image digest is only computable on an uninterrupted run.
    const imageHash = firstOp === 0 ? createHash('sha256') : undefined;
    const cache = new SourcePageCache(source);
    const restartOp = segmentRestartOp(ops, firstOp);
    for (let i = restartOp; i < ops.length; i++) {
      const op = ops[i]!;
      if (i < firstOp) {
        // Replaying the start of the segment: decode to rebuild the brotli state, write nothing.
        if (op.dataLength > 0) await decodeOpData(i, op, reader, segment);
        continue;
      }
      const emit = async (firstBlock: number, bytes: Uint8Array) => {
        const { blockSize } = header;
        for (let b = 0; b * blockSize < bytes.length; b++) {
          const blockIndex = firstBlock + b;
          try {
            verifier.assertBlock(blockIndex, bytes.subarray(b * blockSize, (b + 1) * blockSize));
          } catch (err) {
            throw new DeltaError(
              'ERR_DELTA_TARGET_VERIFICATION',
              `op ${i} (${OpKind[op.kind]}) produced target block ${blockIndex} that fails verification` +
                ` (${(err as Error).message}); is the source image the one the delta was made from (sha256 ${header.source.sha256})?`,
              { cause: err },
            );
          }
        }
        await target.write(firstBlock * blockSize, bytes);
        imageHash?.update(bytes);
        progress.blocksWritten += bytes.length / blockSize;
      };
      await applyOp(i, op, header, reader, segment, cache, emit);
      progress.opsApplied = i + 1;
      await opts.onCheckpoint?.({
        nextOp: i + 1,
        payloadOffset: resumeOffset(i + 1),
        metadataSizeBytes,
        metadataSha256,
      });
    }
    segment.decoder?.close();
    await reader.expectEnd();
    if (imageHash) {
      const digest = imageHash.digest('hex');
      if (digest !== header.target.sha256) {
        throw new DeltaError(
          'ERR_DELTA_TARGET_VERIFICATION',
          `the produced target hashes to sha256 ${digest}, the delta header says ${header.target.sha256}`,
        );
      }
    }
    return {
      header,
      opsApplied: progress.opsApplied,
      blocksWritten: progress.blocksWritten,
      payloadBytesRead: reader.bytesRead,
      targetSha256Checked: imageHash !== undefined,
    };
  } catch (err) {
    await reader.close().catch(() => {});
    segment.decoder?.close();
    if (err instanceof DeltaError) {
      throw new DeltaError(
        err.code,
        `${err.message} [delta apply stopped after ${progress.opsApplied} ops, ${progress.blocksWritten} blocks written; the target is incomplete]`,
        {
          cause: err.cause,
          progress: { ...progress },
        },
      );
    }
    throw new DeltaError('ERR_DELTA_IO', `delta apply failed: ${(err as Error).message}`, {
      cause: err,
      progress: { ...progress },
    });
  }
}

function checkIdentities(header: DeltaHeader, opts: ApplyDeltaOptions): void {
  if (opts.source.sizeBytes !== header.source.sizeBytes) {
    throw new DeltaError(
      'ERR_DELTA_WRONG_SOURCE',
      `the delta was made from a ${header.source.sizeBytes}-byte source, this source has ${opts.source.sizeBytes} bytes`,
    );
  }
  if (
    opts.expectedSourceRootHash !== undefined &&
    header.source.rootHash !== '' &&
    header.source.rootHash !== opts.expectedSourceRootHash
  ) {
    throw new DeltaError(
      'ERR_DELTA_WRONG_SOURCE',
      `the delta was made from source root hash ${header.source.rootHash}, the active slot has ${opts.expectedSourceRootHash}`,
    );
  }
  if (
    opts.expectedTargetRootHash !== undefined &&
    header.target.rootHash !== '' &&
    header.target.rootHash !== opts.expectedTargetRootHash
  ) {
    throw new DeltaError(
      'ERR_DELTA_WRONG_TARGET',
      `the delta produces target root hash ${header.target.rootHash}, expected ${opts.expectedTargetRootHash}`,
    );
  }
  if (
    opts.expectedTargetSizeBytes !== undefined &&
    header.target.sizeBytes !== opts.expectedTargetSizeBytes
  ) {
    throw new DeltaError(
      'ERR_DELTA_WRONG_TARGET',
      `the delta produces a ${header.target.sizeBytes}-byte target, expected ${opts.expectedTargetSizeBytes}`,
    );
  }
}

async function applyOp(
  index: number,
  op: DeltaOp,
  header: DeltaHeader,
  reader: PayloadReader,
  segment: { decoder: SegmentDecoder | undefined },
  cache: SourcePageCache,
  emit: (firstBlock: number, bytes: Uint8Array) => Promise<void>,
): Promise<void> {
  const { blockSize } = header;
  const where = `op ${index} (${OpKind[op.kind]}, target blocks ${op.targetStartBlock}+${op.blockCount})`;
  const chunkBlocks = Math.max(1, COPY_CHUNK_BYTES / blockSize);
  if (op.kind === OpKind.Zero || op.kind === OpKind.SourceCopy) {
    for (let done = 0; done < op.blockCount; done += chunkBlocks) {
      const n = Math.min(chunkBlocks, op.blockCount - done);
      const bytes =
        op.kind === OpKind.Zero
          ? zeroChunk(n * blockSize)
          : await cache.sourceRead((op.sourceStartBlock + done) * blockSize, n * blockSize);
      await emit(op.targetStartBlock + done, bytes);
    }
    return;
  }
  const decoded = await decodeOpData(index, op, reader, segment);
  const spanBytes = op.blockCount * blockSize;
  if (op.kind === OpKind.Replace) {
    await emit(op.targetStartBlock, decoded);
    return;
  }
  const baseOffset = op.targetStartBlock * blockSize;
  const bounds = { baseOffset, targetLength: spanBytes, sourceSizeBytes: header.source.sizeBytes, where };
  // The whole program is checked before the first source read; then walked again to run it,
  // producing the span in pieces of COPY_CHUNK_BYTES (a multiple of any block size): each piece
  // is verified and written as soon as it is full, so no buffer holds the whole span.
  checkPatch(decoded, bounds);
  const cursor = new PatchCursor(decoded, bounds);
  const out = spanBuffer(Math.min(spanBytes, COPY_CHUNK_BYTES));
  let filled = 0;
  let emittedBlocks = 0;
  while (cursor.next()) {
    const add = cursor.kind === 'add';
    let from = add ? cursor.literalOffset : cursor.sourceOffset;
    let left = cursor.length;
    while (left > 0) {
      const take = Math.min(left, out.length - filled);
      if (add) {
        if (take <= 32) for (let k = 0; k < take; k++) out[filled + k] = decoded[from + k]!;
        else out.set(decoded.subarray(from, from + take), filled);
      } else if (!cache.copyCached(out, filled, from, take)) {
        await cache.copyInto(out, filled, from, take);
      }
      filled += take;
      from += take;
      left -= take;
      if (filled === out.length) {
        await emit(op.targetStartBlock + emittedBlocks, out);
        emittedBlocks += filled / blockSize;
        filled = 0;
      }
    }
  }
  if (filled > 0) await emit(op.targetStartBlock + emittedBlocks, out.subarray(0, filled));
}

function describeOp(index: number, op: DeltaOp): string {
  return `op ${index} (${OpKind[op.kind]}, target blocks ${op.targetStartBlock}+${op.blockCount})`;
}

/**
 * One brotli stream spanning the data of consecutive ops. The encoder flushed after each op,
 * so feeding an op's bytes yields exactly that op's decoded data; output beyond the op table's
 * `decodedLength` (a decompression bomb) stops the stream.
 */
class SegmentDecoder {
  private readonly stream: BrotliDecompress;
  /** Decoded bytes of the current op, in a buffer reused op after op. */
  private out = new Uint8Array(0);
  private size = 0;
  private limit = 0;
  private failure: Error | undefined;

  constructor() {
    this.stream = createBrotliDecompress();
    this.stream.on('data', (chunk: Buffer) => {
      if (this.size + chunk.length > this.limit) {
        this.failure ??= new Error(`decodes to more than the ${this.limit} bytes the op table allows`);
        this.stream.destroy();
        return;
      }
      this.out.set(chunk, this.size);
      this.size += chunk.length;
    });
    this.stream.on('error', (err) => {
      this.failure ??= err;
    });
  }

  /** The op's decoded bytes; valid until the next call. */
  async decode(data: Uint8Array, expectedLength: number): Promise<Uint8Array> {
    if (this.out.length < expectedLength) this.out = new Uint8Array(expectedLength);
    this.size = 0;
    this.limit = expectedLength;
    await new Promise<void>((resolve) => {
      const done = () => {
        this.stream.off('error', done);
        this.stream.off('close', done);
        resolve();
      };
      this.stream.once('error', done);
      this.stream.once('close', done);
      this.stream.write(data);
      this.stream.flush(zlibConstants.BROTLI_OPERATION_FLUSH, done);
    });
    if (this.failure) throw this.failure;
    if (this.size !== expectedLength) {
      throw new Error(`decodes to ${this.size} bytes, the op table says ${expectedLength}`);
    }
    return this.out.subarray(0, expectedLength);
  }

  close(): void {
    this.stream.destroy();
  }
}

/** Read op data, check its SHA-256, decode it in its brotli segment. */
async function decodeOpData(
  index: number,
  op: DeltaOp,
  reader: PayloadReader,
  segment: { decoder: SegmentDecoder | undefined },
): Promise<Uint8Array> {
  const where = describeOp(index, op);
  const data = await reader.read(op.dataLength, `${where} data`, true);
  const digest = createHash('sha256').update(data).digest();
  if (!digest.equals(op.dataSha256)) {
    throw new DeltaError(
      'ERR_DELTA_OP_DIGEST_MISMATCH',
      `${where}: data does not match its SHA-256 ${Buffer.from(op.dataSha256).toString('hex')} (found ${digest.toString('hex')}): the payload is corrupt`,
    );
  }
  if ((op.flags & OP_FLAG_SEGMENT_START) !== 0) {
    segment.decoder?.close();
    segment.decoder = undefined;
    const lgwin = brotliWindowBits(data);
    if (lgwin < 0 || lgwin > MAX_BROTLI_LGWIN) {
      throw new DeltaError(
        'ERR_DELTA_TOO_LARGE',
        `${where}: brotli stream declares a ${lgwin < 0 ? 'large' : `2^${lgwin}-byte`} window; at most 2^${MAX_BROTLI_LGWIN} is accepted`,
      );
    }
    segment.decoder = new SegmentDecoder();
  }
  if (!segment.decoder) {
    throw new DeltaError('ERR_DELTA_MALFORMED', `${where}: data op outside a brotli segment`);
  }
  try {
    return await segment.decoder.decode(data, op.decodedLength);
  } catch (err) {
    throw new DeltaError(
      'ERR_DELTA_OP_INVALID',
      `${where}: data is not a valid brotli segment continuation (${(err as Error).message})`,
      {
        cause: err,
      },
    );
  }
}
