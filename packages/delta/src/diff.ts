// `diff(old, new)`: write an abota delta (FORMAT.md) that turns the source image into the
// target. Two passes over each image with positional reads, never a whole image in memory:
//   1. source: per-block digests (block dedup, docs/formats.md §4.3) and the sampled
//      rolling-hash index (matcher.ts); target: classify each block as zero, a copy of some
//      source block, or changed;
//   2. runs of changed blocks become PATCH (or REPLACE) ops, matched against the whole source on
//      the main thread and brotli-compressed on the libuv thread pool (the second core).
// Memory bound: index ≤ 96 MiB + source page cache (default ≤ 256 MiB) + 20 bytes per source
// block + 5 bytes per target block + 2 brotli segments in flight (≤ 8 MiB queued input and
// ≈ 50 MiB quality-11 encoder state each).
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { open, rm, stat } from 'node:fs/promises';
import { once } from 'node:events';
import {
  type BrotliCompress,
  brotliCompressSync,
  createBrotliCompress,
  constants as zlibConstants,
} from 'node:zlib';
import { DeltaError } from './errors.js';
import {
  type DeltaHeader,
  type DeltaOp,
  encodeMetadata,
  LIMITS,
  MAX_BROTLI_LGWIN,
  OP_FLAG_SEGMENT_START,
  OpKind,
} from './format.js';
import { FileSourceBytes, type SourceBytes, SourceIndex, matchSpan } from './matcher.js';
import type { PatchBuilder } from './patch.js';

/** Decoded bytes per brotli segment: the resume granularity and the unit of parallel compression. */
const SEGMENT_DECODED_BYTES = 8 * 1024 * 1024;
const MAX_SEGMENTS_IN_FLIGHT = 2;
/** See DiffOptions.brotliWindowBits. */
const DEFAULT_BROTLI_LGWIN = 21;

/**
 * One brotli stream over the data of consecutive ops, flushed after each op so each op's
 * compressed bytes stand alone in the payload (FORMAT.md "Segments").
 */
class SegmentEncoder {
  private readonly stream: BrotliCompress;
  private pending: Buffer[] = [];
  private readonly outputs: { op: DeltaOp; data: Buffer }[] = [];
  private failure: Error | undefined;
  decodedBytes = 0;

  constructor(quality: number, lgwin: number) {
    this.stream = createBrotliCompress({
      params: {
        [zlibConstants.BROTLI_PARAM_QUALITY]: quality,
        [zlibConstants.BROTLI_PARAM_LGWIN]: lgwin,
      },
    });
    this.stream.on('data', (chunk: Buffer) => this.pending.push(chunk));
    this.stream.on('error', (err) => {
      this.failure ??= err;
    });
  }

  add(op: DeltaOp, decoded: Uint8Array): void {
    this.decodedBytes += decoded.length;
    const entry = { op, data: Buffer.alloc(0) };
    this.outputs.push(entry);
    this.stream.write(decoded);
    // Output pushed before this callback belongs to this op (zlib processes writes in order).
    this.stream.flush(zlibConstants.BROTLI_OPERATION_FLUSH, () => {
      entry.data = Buffer.concat(this.pending);
      this.pending = [];
    });
  }

  /** Stop compressing (abort): a pending finish() rejects with `reason`. */
  destroy(reason: unknown): void {
    this.stream.destroy(reason instanceof Error ? reason : new Error(String(reason)));
  }

  /** End the stream; the closing bytes belong to the segment's last op. */
  async finish(): Promise<SegmentEncoder> {
    this.stream.end();
    await once(this.stream, 'end');
    if (this.failure) throw this.failure;
    const last = this.outputs[this.outputs.length - 1];
    if (last && this.pending.length > 0) last.data = Buffer.concat([last.data, ...this.pending]);
    this.pending = [];
    return this;
  }

  results(): readonly { op: DeltaOp; data: Buffer }[] {
    return this.outputs;
  }
}

export interface DiffOptions {
  sourcePath: string;
  targetPath: string;
  outPath: string;
  /** The dm-verity data block size of the target (default 4096). */
  blockSize?: number;
  /** dm-verity root hashes (hex) to record in the header, when known. */
  sourceRootHash?: string;
  targetRootHash?: string;
  /** Brotli quality 0..11 (default 11). */
  brotliQuality?: number;
  /**
   * Brotli window, log2 bytes, 16..MAX_BROTLI_LGWIN (default 21 = a 2 MiB ring buffer in the
   * applier). Measured on the ext4 feature update: 22 makes the delta 0.8 % smaller but the
   * applier's peak RSS ~5 MiB larger (66-67 vs 61-62 MiB under the agent's flags).
   */
  brotliWindowBits?: number;
  /** Source page cache bound in bytes (default 256 MiB). */
  maxSourceCacheBytes?: number;
  /** Largest target span of one PATCH/REPLACE op (default and maximum: LIMITS.maxDataOpTargetBytes). */
  maxOpTargetBytes?: number;
  /**
   * Stop (Ctrl-C): checked between 4 MiB reads and between ops; the diff then throws the
   * signal's reason and leaves no temporary file (`outPath` is not written).
   */
  signal?: AbortSignal;
  /** Called after each 4 MiB read (phases source, target) and each changed span (encode). */
  onProgress?: (progress: DiffProgress) => void;
}

/**
 * How far a diff is: `source` and `target` read each image once (totals: their sizes);
 * `encode` matches and compresses the changed spans (total: their bytes, known after `target`).
 */
export interface DiffProgress {
  phase: 'source' | 'target' | 'encode';
  doneBytes: number;
  totalBytes: number;
}

export interface DiffResult {
  payloadSizeBytes: number;
  header: DeltaHeader;
  opCounts: Record<'zero' | 'sourceCopy' | 'replace' | 'patch', number>;
  /** Target bytes produced by each kind. */
  targetBytes: Record<'zero' | 'sourceCopy' | 'replace' | 'patch', number>;
  /** Literal bytes inside PATCH ops (before compression). */
  patchLiteralBytes: number;
}

const READ_CHUNK_BYTES = 4 * 1024 * 1024;
/** Brotli quality of the trial compressions that choose between two PATCH programs. */
const TRIAL_QUALITY = 5;

/**
 * Match a changed span with and without the near search (matcher.ts) and keep the program that
 * compresses smaller. Short near copies pay off in already-compressed data (lz4/zstd file
 * systems: its literals barely compress) and cost in plain data, where brotli would have
 * coded those bytes better than the COPY commands that interrupt them (measured: erofs
 * security fix -28 %, ext4 feature update +4 % with the near search everywhere).
 */
function chooseProgram(
  span: Uint8Array,
  baseOffset: number,
  src: SourceBytes,
  index: SourceIndex,
  lgwin: number,
): { builder: PatchBuilder; program?: Uint8Array } {
  const plain = matchSpan(span, baseOffset, src, index, { nearSearch: false });
  // Without a COPY there is no diagonal to search near.
  if (plain.copies === 0) return { builder: plain };
  const near = matchSpan(span, baseOffset, src, index, { nearSearch: true });
  if (near.copies === plain.copies) return { builder: plain };
  // The trial encodes both programs; the chosen one's encoding is kept for the op.
  const trial = (builder: PatchBuilder) => {
    const program = builder.finish();
    const size = brotliCompressSync(program, {
      params: {
        [zlibConstants.BROTLI_PARAM_QUALITY]: TRIAL_QUALITY,
        [zlibConstants.BROTLI_PARAM_LGWIN]: lgwin,
      },
    }).length;
    return { builder, program, size };
  };
  const a = trial(near);
  const b = trial(plain);
  return a.size < b.size ? a : b;
}
const CHANGED = 0;
const ZERO = 1;
const COPY = 2;
/** Unchanged blocks between changed ones that are folded into one PATCH op (saves op overhead). */
const GAP_BLOCKS = 64;

/** Yield to the event loop so signal handlers (Ctrl-C) and timers run between chunks. */
const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function readChunks(
  path: string,
  sizeBytes: number,
  signal: AbortSignal | undefined,
  fn: (chunk: Uint8Array, start: number) => void,
): Promise<void> {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(READ_CHUNK_BYTES);
    for (let start = 0; start < sizeBytes; start += READ_CHUNK_BYTES) {
      await yieldToEventLoop();
      signal?.throwIfAborted();
      const len = Math.min(READ_CHUNK_BYTES, sizeBytes - start);
      let done = 0;
      while (done < len) {
        const n = readSync(fd, buf, done, len - done, start + done);
        if (n === 0)
          throw new DeltaError('ERR_DELTA_IO', `${path} shrank while diffing (EOF at byte ${start + done})`);
        done += n;
      }
      fn(buf.subarray(0, len), start);
    }
  } finally {
    closeSync(fd);
  }
}

function readRange(fd: number, offset: number, length: number): Uint8Array {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, offset + done);
    if (n === 0)
      throw new DeltaError('ERR_DELTA_IO', `target shrank while diffing (EOF at byte ${offset + done})`);
    done += n;
  }
  return buf;
}

async function imageSize(path: string, role: string, blockSize: number): Promise<number> {
  const st = await stat(path).catch((err: unknown) => {
    throw new DeltaError('ERR_DELTA_IO', `cannot read ${role} image ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  });
  if (!st.isFile() && !st.isBlockDevice()) {
    throw new DeltaError('ERR_DELTA_INPUT_INVALID', `${role} image ${path} is not a file`);
  }
  if (st.size % blockSize !== 0) {
    throw new DeltaError(
      'ERR_DELTA_INPUT_INVALID',
      `${role} image ${path} is ${st.size} bytes, not a multiple of the ${blockSize}-byte block size`,
    );
  }
  return st.size;
}

export async function diff(opts: DiffOptions): Promise<DiffResult> {
  const blockSize = opts.blockSize ?? 4096;
  if (blockSize < 512 || blockSize > 65536 || (blockSize & (blockSize - 1)) !== 0) {
    throw new DeltaError(
      'ERR_DELTA_INPUT_INVALID',
      `block size ${blockSize} is not a power of two in 512..65536`,
    );
  }
  const maxOpBytes = Math.min(
    opts.maxOpTargetBytes ?? LIMITS.maxDataOpTargetBytes,
    LIMITS.maxDataOpTargetBytes,
  );
  const maxSpanBlocks = Math.max(1, Math.floor(maxOpBytes / blockSize));
  const quality = opts.brotliQuality ?? 11;
  const sourceSize = await imageSize(opts.sourcePath, 'source', blockSize);
  const targetSize = await imageSize(opts.targetPath, 'target', blockSize);

  // Pass 1a: source block digests, whole-image digest, rolling-hash index.
  const sourceBlocks = sourceSize / blockSize;
  const blockDigestLength = 20;
  const sourceDigests = Buffer.allocUnsafe(sourceBlocks * blockDigestLength);
  const blockBySourceDigest = new Map<string, number>();
  const index = new SourceIndex(sourceSize);
  const sourceHash = createHash('sha256');
  const zeroKey = createHash('sha1').update(new Uint8Array(blockSize)).digest().toString('latin1');
  const signal = opts.signal;
  const progress = opts.onProgress;
  await readChunks(opts.sourcePath, sourceSize, signal, (chunk, start) => {
    sourceHash.update(chunk);
    for (let p = 0; p < chunk.length; p += blockSize) {
      const block = (start + p) / blockSize;
      const d = createHash('sha1')
        .update(chunk.subarray(p, p + blockSize))
        .digest();
      d.copy(sourceDigests, block * blockDigestLength);
      const key = d.toString('latin1');
      // Zero blocks (most of a fresh ext4 image) have nothing worth indexing.
      if (key !== zeroKey) index.addChunk(chunk.subarray(p, p + blockSize), start + p);
      if (!blockBySourceDigest.has(key)) blockBySourceDigest.set(key, block);
    }
    progress?.({ phase: 'source', doneBytes: start + chunk.length, totalBytes: sourceSize });
  });

  // Pass 1b: classify target blocks.
  const targetBlocks = targetSize / blockSize;
  const kind = new Uint8Array(targetBlocks);
  const copyFrom = new Uint32Array(targetBlocks);
  const targetHash = createHash('sha256');
  let previousCopy = -2;
  await readChunks(opts.targetPath, targetSize, signal, (chunk, start) => {
    targetHash.update(chunk);
    for (let p = 0; p < chunk.length; p += blockSize) {
      const block = (start + p) / blockSize;
      const d = createHash('sha1')
        .update(chunk.subarray(p, p + blockSize))
        .digest();
      const key = d.toString('latin1');
      if (key === zeroKey) {
        kind[block] = ZERO;
        previousCopy = -2;
        continue;
      }
      // Prefer continuing the previous copy run so runs merge into one op.
      const next = previousCopy + 1;
      let from = -1;
      if (
        next >= 0 &&
        next < sourceBlocks &&
        sourceDigests.compare(d, 0, 20, next * 20, next * 20 + 20) === 0
      ) {
        from = next;
      } else {
        from = blockBySourceDigest.get(key) ?? -1;
      }
      if (from >= 0) {
        kind[block] = COPY;
        copyFrom[block] = from;
      } else {
        kind[block] = CHANGED;
      }
      previousCopy = from >= 0 ? from : -2;
    }
    progress?.({ phase: 'target', doneBytes: start + chunk.length, totalBytes: targetSize });
  });
  blockBySourceDigest.clear();

  // Plan: ops in target order.
  interface Planned {
    kind: OpKind;
    start: number;
    count: number;
    source: number;
  }
  const plan: Planned[] = [];
  for (let b = 0; b < targetBlocks; ) {
    const k = kind[b]!;
    let end = b + 1;
    if (k === CHANGED) {
      while (end < targetBlocks && end - b < maxSpanBlocks) {
        if (kind[end] === CHANGED) {
          end++;
          continue;
        }
        let j = end;
        while (j < targetBlocks && kind[j] !== CHANGED && j - end <= GAP_BLOCKS) j++;
        if (j < targetBlocks && kind[j] === CHANGED && j - end <= GAP_BLOCKS && j + 1 - b <= maxSpanBlocks) {
          end = j + 1;
          continue;
        }
        break;
      }
      plan.push({ kind: OpKind.Patch, start: b, count: end - b, source: 0 });
    } else if (k === ZERO) {
      while (end < targetBlocks && kind[end] === ZERO) end++;
      plan.push({ kind: OpKind.Zero, start: b, count: end - b, source: 0 });
    } else {
      while (end < targetBlocks && kind[end] === COPY && copyFrom[end] === copyFrom[end - 1]! + 1) end++;
      plan.push({ kind: OpKind.SourceCopy, start: b, count: end - b, source: copyFrom[b]! });
    }
    b = end;
  }
  let changedBytes = 0;
  for (const p of plan) if (p.kind === OpKind.Patch) changedBytes += p.count * blockSize;
  let encodedBytes = 0;
  if (plan.length > LIMITS.maxOps) {
    throw new DeltaError(
      'ERR_DELTA_TOO_LARGE',
      `the delta would need ${plan.length} ops, more than the format's ${LIMITS.maxOps}; ship the full image instead`,
    );
  }

  // Pass 2: match changed spans (main thread) and compress them in brotli segments (thread pool).
  const dataPath = `${opts.outPath}.data.tmp`;
  const dataFile = await open(dataPath, 'w');
  const src = new FileSourceBytes(
    opts.sourcePath,
    sourceSize,
    Math.max(4, Math.floor((opts.maxSourceCacheBytes ?? 256 * 1024 * 1024) / FileSourceBytes.PAGE)),
  );
  const targetFd = openSync(opts.targetPath, 'r');
  const ops: DeltaOp[] = [];
  const opCounts = { zero: 0, sourceCopy: 0, replace: 0, patch: 0 };
  const targetBytes = { zero: 0, sourceCopy: 0, replace: 0, patch: 0 };
  let patchLiteralBytes = 0;
  let dataSizeBytes = 0;
  const lgwin = Math.max(16, Math.min(MAX_BROTLI_LGWIN, opts.brotliWindowBits ?? DEFAULT_BROTLI_LGWIN));
  const inFlight: Promise<SegmentEncoder>[] = [];
  let writeChain: Promise<void> = Promise.resolve();
  const writeSegment = (encoder: SegmentEncoder) => {
    writeChain = writeChain.then(async () => {
      for (const { op, data } of encoder.results()) {
        if (data.length > LIMITS.maxOpDataBytes) {
          throw new DeltaError(
            'ERR_DELTA_TOO_LARGE',
            `op at target block ${op.targetStartBlock} compresses to ${data.length} bytes`,
          );
        }
        op.dataLength = data.length;
        op.dataSha256 = createHash('sha256').update(data).digest();
        await dataFile.write(data, 0, data.length, dataSizeBytes);
        dataSizeBytes += data.length;
      }
      live.delete(encoder);
    });
  };
  let segment: SegmentEncoder | undefined;
  // Encoders not yet written out; an abort destroys them so a long compression stops at once.
  const live = new Set<SegmentEncoder>();
  const stopEncoders = (): void => {
    for (const encoder of live) encoder.destroy(signal?.reason);
  };
  signal?.addEventListener('abort', stopEncoders, { once: true });
  let lastYieldMs = performance.now();
  const closeSegment = async () => {
    if (!segment) return;
    inFlight.push(segment.finish());
    segment = undefined;
    // Two segments compress in parallel while the matcher works on the next one.
    if (inFlight.length >= MAX_SEGMENTS_IN_FLIGHT) writeSegment(await inFlight.shift()!);
  };
  let failed = false;
  try {
    for (const p of plan) {
      const op: DeltaOp = {
        kind: p.kind,
        flags: 0,
        targetStartBlock: p.start,
        blockCount: p.count,
        sourceStartBlock: p.source,
        dataLength: 0,
        decodedLength: 0,
        dataSha256: new Uint8Array(32),
      };
      ops.push(op);
      if (p.kind === OpKind.Zero || p.kind === OpKind.SourceCopy) {
        const key = p.kind === OpKind.Zero ? 'zero' : 'sourceCopy';
        opCounts[key]++;
        targetBytes[key] += p.count * blockSize;
        continue;
      }
      // Matching is synchronous: give a Ctrl-C handler a turn every 100 ms.
      if (performance.now() - lastYieldMs > 100) {
        await yieldToEventLoop();
        lastYieldMs = performance.now();
      }
      signal?.throwIfAborted();
      const span = readRange(targetFd, p.start * blockSize, p.count * blockSize);
      const { builder, program } = chooseProgram(span, p.start * blockSize, src, index, lgwin);
      let decoded: Uint8Array;
      // A PATCH program larger than the applier accepts (never seen: controls cost less than
      // the bytes they copy) falls back to REPLACE, which is at most one span.
      if (builder.copies === 0 || builder.encodedSizeBound() > LIMITS.maxOpDecodedBytes) {
        op.kind = OpKind.Replace;
        decoded = span;
        opCounts.replace++;
        targetBytes.replace += span.length;
      } else {
        decoded = program ?? builder.finish();
        opCounts.patch++;
        targetBytes.patch += span.length;
        patchLiteralBytes += builder.literalBytes;
      }
      op.decodedLength = decoded.length;
      if (!segment) {
        segment = new SegmentEncoder(quality, lgwin);
        live.add(segment);
        op.flags = OP_FLAG_SEGMENT_START;
      }
      segment.add(op, decoded);
      encodedBytes += span.length;
      progress?.({ phase: 'encode', doneBytes: encodedBytes, totalBytes: changedBytes });
      if (segment.decodedBytes >= SEGMENT_DECODED_BYTES) await closeSegment();
    }
    await closeSegment();
    // shift() before await: on a failure the others stay in inFlight for the catch below.
    while (inFlight.length > 0) writeSegment(await inFlight.shift()!);
    await writeChain;
  } catch (err) {
    failed = true;
    // Let started compressions and writes settle before the files close (no write after close,
    // no unhandled rejection), then drop the partial data file.
    for (const encoder of live) encoder.destroy(err);
    await Promise.allSettled([writeChain, ...inFlight]);
    throw err;
  } finally {
    signal?.removeEventListener('abort', stopEncoders);
    closeSync(targetFd);
    src.close();
    await dataFile.close();
    if (failed) await rm(dataPath, { force: true });
  }

  const header: DeltaHeader = {
    version: 1,
    blockSize,
    source: { sizeBytes: sourceSize, sha256: sourceHash.digest('hex'), rootHash: opts.sourceRootHash ?? '' },
    target: { sizeBytes: targetSize, sha256: targetHash.digest('hex'), rootHash: opts.targetRootHash ?? '' },
    opCount: ops.length,
    dataSizeBytes,
  };
  const metadata = encodeMetadata(header, ops);
  const out = await open(opts.outPath, 'w');
  try {
    await out.write(metadata, 0, metadata.length, 0);
    const data = await open(dataPath, 'r');
    try {
      const buf = Buffer.allocUnsafe(READ_CHUNK_BYTES);
      for (let pos = 0; pos < dataSizeBytes; ) {
        const { bytesRead } = await data.read(buf, 0, READ_CHUNK_BYTES, pos);
        await out.write(buf, 0, bytesRead, metadata.length + pos);
        pos += bytesRead;
      }
    } finally {
      await data.close();
    }
    await out.sync();
  } finally {
    await out.close();
    await rm(dataPath, { force: true });
  }
  return {
    payloadSizeBytes: metadata.length + dataSizeBytes,
    header,
    opCounts,
    targetBytes,
    patchLiteralBytes,
  };
}
