// Writes one image of the inactive slot from a delta (docs/CONTRACTS.md "Deltas end to end"):
// the payload streams from the release source into @abota/delta's applyDelta, which reads the
// ACTIVE slot's image (opened read-only) as its source and verifies every produced block against
// the target's signed dm-verity tree before it is written. Durable checkpoints (fdatasync of the
// slot, then the journal) let an interrupted delta resume; anything else that goes wrong is a
// DeltaUnusable, upon which the installer falls back to the full artifact.
import { createHash } from 'node:crypto';
import { type FileHandle, open, readFile, rm } from 'node:fs/promises';
import {
  type ApplyDeltaResult,
  applyDelta,
  type BlockVerifierLike,
  type DeltaCheckpoint,
  DeltaError,
  type DeltaHeader,
  decodeHeader,
  decodeMetadata,
  HEADER_SIZE_BYTES,
  type SourceReader,
  type TargetWriter,
} from '@abota/delta';
import type { ImageManifest } from '@abota/manifest';
import { writeFileAtomic } from '../atomic-file.js';
import { ClientError, isClientError } from '../errors.js';
import { abortError, isTransient } from '../http/backoff.js';
import { bufferCollector } from './buffer-gc.js';
import { type BlockCheck, reverifyWrittenBlocks } from './image-writer.js';
import type { DeltaProgress } from './journal.js';
import type { DeltaCandidate, ReleaseSource } from './release-source.js';
import { deviceInfo, readAt, writeFully } from './slot-io.js';

/**
 * The delta could not produce the image (corrupt or lying payload, wrong or damaged source, a
 * source read error, a refused download, a digest mismatch): not an interruption, so resuming
 * it would fail again. The installer reports `code`/`message` and installs the full artifact.
 */
export class DeltaUnusable extends Error {
  override readonly name = 'DeltaUnusable';
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Why a delta is or is not used for an image (pure: tested without files). */
export type DeltaChoice =
  | { use: DeltaCandidate }
  | { use: undefined; reason: string | undefined /* undefined: no delta offered for the image */ };

/**
 * Pick the delta for `imageName`: only one whose source root hash is the KNOWN root hash of that
 * image in the active slot (never a guess), that produces whole verity blocks (the format has no
 * partial last block) and that is smaller than the full artifact.
 */
export function chooseDelta(
  imageName: string,
  image: ImageManifest,
  candidates: readonly DeltaCandidate[],
  activeRootHash: string | undefined,
): DeltaChoice {
  const offered = candidates.filter((d) => d.image === imageName);
  if (offered.length === 0) return { use: undefined, reason: undefined };
  if (activeRootHash === undefined) {
    return {
      use: undefined,
      reason: `the root hash of the active slot's ${imageName} is not known (state.json, factory.rootHashes, roothash= on the kernel command line)`,
    };
  }
  const match = offered.find((d) => d.sourceRootHash === activeRootHash);
  if (match === undefined) {
    return {
      use: undefined,
      reason: `the active slot's ${imageName} has root hash ${activeRootHash}; the offered deltas are from ${offered.map((d) => d.sourceRootHash).join(', ')}`,
    };
  }
  const { dataBlocks, dataBlockSize } = image.verity;
  if (image.sizeBytes !== dataBlocks * dataBlockSize) {
    return {
      use: undefined,
      reason: `the ${image.sizeBytes}-byte ${imageName} image ends in a partial verity block, which a delta cannot produce`,
    };
  }
  if (match.sizeBytes >= image.artifact.sizeBytes) {
    return {
      use: undefined,
      reason: `the ${match.sizeBytes}-byte delta is not smaller than the ${image.artifact.sizeBytes}-byte full artifact`,
    };
  }
  return { use: match };
}

export interface DeltaImageOptions {
  imageName: string;
  /** The target image of the signed manifest (size, verity geometry, root hash). */
  image: ImageManifest;
  delta: DeltaProgress;
  /** Where the payload's metadata is kept to resume (journal.deltaMetadataPath). */
  metadataPath: string;
  /** Built from the verified target hash tree: every produced block passes it before the write. */
  verifier: BlockVerifierLike & BlockCheck;
  /** The inactive slot's data device, open for writing. */
  dataFh: FileHandle;
  /** The ACTIVE slot's device for this image: opened read-only here, never written. */
  sourcePath: string;
  /** Hash area after the data on the same device: the source is the data area before this offset. */
  sourceLimitBytes?: number;
  source: ReleaseSource;
  /** Blocks the journal records as durable (the ops before `delta.checkpoint.nextOp`). */
  blocksDone: number;
  checkpointBytes: number;
  /** After the slot was fdatasynced up to `blocksWritten` and the metadata file is durable. */
  onCheckpoint: (checkpoint: DeltaCheckpoint, blocksWritten: number) => Promise<void>;
  /** Written bytes so far (progress between checkpoints); keep it cheap. */
  onBytes?: (bytesWritten: number) => Promise<void> | void;
  /** Payload bytes as they arrive from the release source. */
  onDownloaded?: (bytes: number) => void;
  signal?: AbortSignal;
}

export interface DeltaImageResult {
  result: ApplyDeltaResult;
  /** Whether this run started at op 0 (else it resumed from the journal's checkpoint). */
  resumed: boolean;
  /** The payload's sha256 was checked against the offered digest (uninterrupted runs only). */
  payloadDigestChecked: boolean;
}

/**
 * Apply `o.delta` into the target slot. Resolves once every block is written, verified and
 * fdatasynced. Throws DeltaUnusable (fall back to the full artifact), an ERR_ABORTED /
 * transient network ClientError (resume later from the journal's checkpoint), or the slot's or
 * journal's own I/O error (the install fails as it would on the full path).
 */
export async function writeImageFromDelta(o: DeltaImageOptions): Promise<DeltaImageResult> {
  const run = new DeltaApply(o);
  await run.loadResumePoint();
  try {
    return await run.apply();
  } catch (e) {
    throw classify(e, run.seen, run.where, o.signal);
  } finally {
    await run.close();
  }
}

interface ResumeState {
  checkpoint: DeltaCheckpoint;
  metadata: Uint8Array;
  header: DeltaHeader;
}

/** One delta application: its payload stream, the active slot as source, the target writes and checkpoints. */
class DeltaApply {
  readonly where: string;
  /** Who failed decides what happens next (applyDelta wraps every error in a DeltaError). */
  readonly seen: { payloadError: unknown; localError: unknown; sourceError: unknown } = {
    payloadError: undefined,
    localError: undefined,
    sourceError: undefined,
  };
  private readonly bs: number;
  private readonly collect = bufferCollector();
  private resume: ResumeState | undefined;
  private blocksDone = 0;
  private payloadHash: ReturnType<typeof createHash> | undefined;
  private payloadSeen = 0;
  private payloadIt: AsyncIterator<Uint8Array> | undefined;
  /** Payload chunks read to decode the header, replayed into applyDelta. */
  private readonly prefix: Uint8Array[] = [];
  private srcFh: FileHandle | undefined;
  private metadata: Uint8Array | undefined;
  private metadataFill = 0;
  private metadataSaved = false;
  private writtenEnd = 0;
  private bytesSinceCheckpoint = 0;

  constructor(private readonly o: DeltaImageOptions) {
    this.bs = o.image.verity.dataBlockSize;
    this.where = `image ${o.imageName} delta ${o.delta.digest}`;
  }

  /**
   * Resume only from a checkpoint whose metadata is on disk intact and whose blocks still verify
   * on the slot (a device that lies about fsync); otherwise the delta starts again at op 0. Then
   * the payload is opened where the resume point says.
   */
  async loadResumePoint(): Promise<void> {
    const { o } = this;
    if (o.delta.checkpoint !== undefined) {
      this.resume = await loadResumePoint(o.metadataPath, o.delta.checkpoint, o.blocksDone);
      if (this.resume !== undefined) {
        const intact = await reverifyWrittenBlocks(o.dataFh, o.verifier, this.bs, o.blocksDone);
        if (intact === o.blocksDone) this.blocksDone = o.blocksDone;
        else this.resume = undefined;
      }
    }
    const startByte = this.resume?.checkpoint.payloadOffset ?? 0;
    this.payloadHash = startByte === 0 ? createHash('sha256') : undefined;
    this.payloadSeen = startByte;
    this.payloadIt = this.download(startByte)[Symbol.asyncIterator]();
    this.writtenEnd = this.blocksDone * this.bs;
    this.metadataSaved = this.resume !== undefined;
  }

  async apply(): Promise<DeltaImageResult> {
    const { o, resume } = this;
    const { header, metadataSizeBytes } = await this.readHeader();
    const source = await this.openSource(header);
    // Capture the metadata (the payload's first bytes) as it streams by, for resuming later.
    this.metadata = resume === undefined ? new Uint8Array(metadataSizeBytes) : undefined;
    const result = await applyDelta({
      payload: this.payload(),
      source,
      target: this.target(),
      verifier: o.verifier,
      expectedTargetRootHash: o.image.verity.rootHash,
      expectedSourceRootHash: o.delta.sourceRootHash,
      expectedTargetSizeBytes: o.image.sizeBytes,
      ...(resume !== undefined
        ? { resume: { checkpoint: resume.checkpoint, metadata: resume.metadata } }
        : {}),
      onCheckpoint: (checkpoint) => this.checkpoint(checkpoint),
    });
    this.checkPayloadDigest();
    await o.dataFh.datasync();
    await rm(o.metadataPath, { force: true });
    return { result, resumed: resume !== undefined, payloadDigestChecked: this.payloadHash !== undefined };
  }

  async close(): Promise<void> {
    await this.payloadIt?.return?.(undefined).catch(() => {});
    await this.srcFh?.close();
  }

  /** The payload from `startByte`, bounded by the offered size, hashed, its failures remembered. */
  private async *download(startByte: number): AsyncGenerator<Uint8Array> {
    const { o } = this;
    try {
      for await (const chunk of o.source.openBlob(o.delta.digest, o.delta.sizeBytes, startByte, o.signal)) {
        if (o.signal?.aborted) throw abortError(o.signal);
        this.payloadSeen += chunk.byteLength;
        if (this.payloadSeen > o.delta.sizeBytes) {
          throw new ClientError(
            'ERR_HTTP_TOO_LARGE',
            `${this.where}: longer than the offered ${o.delta.sizeBytes} bytes`,
          );
        }
        this.payloadHash?.update(chunk);
        o.onDownloaded?.(chunk.byteLength);
        this.collect(chunk.byteLength);
        yield chunk;
      }
    } catch (e) {
      this.seen.payloadError ??= e;
      throw e;
    }
  }

  /** The delta's header: from the resume point, or decoded from the payload's first bytes. */
  private async readHeader(): Promise<{ header: DeltaHeader; metadataSizeBytes: number }> {
    const decoded =
      this.resume !== undefined
        ? { header: this.resume.header, metadataSizeBytes: this.resume.checkpoint.metadataSizeBytes }
        : decodeHeader(await readPrefix(this.payloadIt!, HEADER_SIZE_BYTES, this.prefix));
    if (decoded.header.blockSize !== this.bs) {
      throw new DeltaUnusable(
        'ERR_DELTA_WRONG_TARGET',
        `${this.where}: ${decoded.header.blockSize}-byte blocks; the image's dm-verity data block size is ${this.bs}`,
      );
    }
    return decoded;
  }

  /**
   * The active slot's image, read-only, as the delta's source: sized by the header, never
   * beyond the active slot's data area.
   */
  private async openSource(header: DeltaHeader): Promise<SourceReader> {
    const { o, where, seen } = this;
    let fh: FileHandle;
    try {
      fh = this.srcFh = await open(o.sourcePath, 'r');
    } catch (e) {
      throw new DeltaUnusable(
        'ERR_DELTA_IO',
        `${where}: cannot open the active slot's ${o.sourcePath} for reading: ${(e as Error).message}`,
        { cause: e },
      );
    }
    const deviceBytes = (await deviceInfo(fh)).sizeBytes;
    const dataAreaBytes = Math.min(deviceBytes, o.sourceLimitBytes ?? Number.POSITIVE_INFINITY);
    if (header.source.sizeBytes > dataAreaBytes) {
      throw new DeltaUnusable(
        'ERR_DELTA_WRONG_SOURCE',
        `${where}: made from a ${header.source.sizeBytes}-byte source; the active slot's ${o.imageName} data area on ${o.sourcePath} has ${dataAreaBytes} bytes`,
      );
    }
    return {
      sizeBytes: header.source.sizeBytes,
      async read(offset, into) {
        try {
          const n = await readAt(fh, into, into.byteLength, offset);
          if (n !== into.byteLength)
            throw new Error(`end of device after ${n} of ${into.byteLength} bytes at byte ${offset}`);
        } catch (e) {
          seen.sourceError ??= e;
          throw e;
        }
      },
    };
  }

  /** The whole payload for applyDelta: the header prefix replayed, then the rest, the metadata captured. */
  private async *payload(): AsyncGenerator<Uint8Array> {
    const it = this.payloadIt!;
    try {
      for (const chunk of this.prefix) {
        this.captureMetadata(chunk);
        yield chunk;
      }
      for (;;) {
        const next = await it.next();
        if (next.done) return;
        this.captureMetadata(next.value);
        yield next.value;
      }
    } finally {
      await it.return?.(undefined);
    }
  }

  private captureMetadata(chunk: Uint8Array): void {
    const { metadata } = this;
    if (metadata === undefined || this.metadataFill >= metadata.byteLength) return;
    const n = Math.min(chunk.byteLength, metadata.byteLength - this.metadataFill);
    metadata.set(chunk.subarray(0, n), this.metadataFill);
    this.metadataFill += n;
  }

  private target(): TargetWriter {
    return {
      write: async (offset, data) => {
        try {
          await writeFully(this.o.dataFh, data, offset, `slot ${this.where} block ${offset / this.bs}`);
        } catch (e) {
          this.seen.localError ??= e;
          throw e;
        }
        this.bytesSinceCheckpoint += data.byteLength;
        this.writtenEnd = Math.max(this.writtenEnd, offset + data.byteLength);
        // applyDelta's brotli output and op-data reads are fresh Buffers: collect them as the
        // full path does per decoded byte (buffer-gc.ts), or they pile up as external memory.
        this.collect(data.byteLength);
      },
    };
  }

  /** After every op: a durable checkpoint every checkpointBytes, and progress. */
  private async checkpoint(checkpoint: DeltaCheckpoint): Promise<void> {
    try {
      if (this.o.signal?.aborted) throw abortError(this.o.signal);
      if (this.bytesSinceCheckpoint >= this.o.checkpointBytes) await this.durable(checkpoint);
      await this.o.onBytes?.(this.writtenEnd);
    } catch (e) {
      this.seen.localError ??= e;
      throw e;
    }
  }

  /** fdatasync the slot, keep the metadata (once, when complete), then journal the checkpoint. */
  private async durable(checkpoint: DeltaCheckpoint): Promise<void> {
    const { metadata } = this;
    await this.o.dataFh.datasync();
    if (!this.metadataSaved && metadata !== undefined && this.metadataFill === metadata.byteLength) {
      await writeFileAtomic(this.o.metadataPath, metadata);
      this.metadataSaved = true;
    }
    // Ops tile the target in order, so everything below the end of the last op is written.
    if (this.metadataSaved) await this.o.onCheckpoint(checkpoint, this.writtenEnd / this.bs);
    this.bytesSinceCheckpoint = 0;
  }

  /** An uninterrupted run saw the whole payload: its size and sha256 must be the offered ones. */
  private checkPayloadDigest(): void {
    if (this.payloadHash === undefined) return;
    const { delta } = this.o;
    const actual = `sha256:${this.payloadHash.digest('hex')}`;
    if (this.payloadSeen !== delta.sizeBytes || actual !== delta.digest) {
      throw new DeltaUnusable(
        'ERR_INSTALL_DELTA_DIGEST_MISMATCH',
        `${this.where}: the payload is ${this.payloadSeen} bytes with digest ${actual}; the offer says ${delta.sizeBytes} bytes, ${delta.digest}`,
      );
    }
  }
}

/** Map a failure to: an interruption (resume), the slot's/journal's own error, or DeltaUnusable. */
function classify(
  e: unknown,
  seen: { payloadError: unknown; localError: unknown; sourceError: unknown },
  where: string,
  signal: AbortSignal | undefined,
): unknown {
  if (signal?.aborted)
    return isClientError(seen.payloadError, 'ERR_ABORTED') ? seen.payloadError : abortError(signal);
  if (e instanceof DeltaUnusable) return e;
  const local = seen.localError;
  if (local !== undefined) return local;
  const payload = seen.payloadError;
  if (payload !== undefined) {
    if (isClientError(payload, 'ERR_ABORTED') || isTransient(payload)) return payload;
    const code = (payload as { code?: unknown }).code;
    return new DeltaUnusable(
      typeof code === 'string' ? code : 'ERR_DELTA_IO',
      `${where}: downloading the delta failed: ${(payload as Error).message}`,
      { cause: payload },
    );
  }
  if (seen.sourceError !== undefined) {
    return new DeltaUnusable(
      'ERR_DELTA_IO',
      `${where}: reading the active slot failed: ${(seen.sourceError as Error).message}`,
      { cause: seen.sourceError },
    );
  }
  if (e instanceof DeltaError) return new DeltaUnusable(e.code, e.message, { cause: e });
  return new DeltaUnusable('ERR_DELTA_IO', `${where}: ${(e as Error).message}`, { cause: e });
}

/** Exactly `n` bytes from the front of `it`, keeping every chunk read in `into` (replayed later). */
async function readPrefix(it: AsyncIterator<Uint8Array>, n: number, into: Uint8Array[]): Promise<Uint8Array> {
  let have = 0;
  while (have < n) {
    const next = await it.next();
    if (next.done) break;
    into.push(next.value);
    have += next.value.byteLength;
  }
  const out = new Uint8Array(Math.min(n, have));
  let filled = 0;
  for (const chunk of into) {
    if (filled >= out.byteLength) break;
    const take = Math.min(chunk.byteLength, out.byteLength - filled);
    out.set(chunk.subarray(0, take), filled);
    filled += take;
  }
  return out; // shorter than n: decodeHeader reports the truncation
}

/**
 * The resume point of a checkpoint, if the metadata file is intact and the checkpoint's op
 * boundary matches the journal's durable block count; undefined means "start at op 0".
 */
async function loadResumePoint(
  metadataPath: string,
  checkpoint: DeltaCheckpoint,
  blocksDone: number,
): Promise<{ checkpoint: DeltaCheckpoint; metadata: Uint8Array; header: DeltaHeader } | undefined> {
  let metadata: Uint8Array;
  try {
    metadata = await readFile(metadataPath);
  } catch {
    return undefined;
  }
  if (
    metadata.byteLength !== checkpoint.metadataSizeBytes ||
    createHash('sha256').update(metadata).digest('hex') !== checkpoint.metadataSha256
  ) {
    return undefined;
  }
  try {
    const { header, ops } = decodeMetadata(metadata);
    let blocks = 0;
    for (let i = 0; i < checkpoint.nextOp && i < ops.length; i++) blocks += ops[i]!.blockCount;
    if (checkpoint.nextOp > ops.length || blocks !== blocksDone) return undefined;
    return { checkpoint, metadata, header };
  } catch {
    return undefined;
  }
}
