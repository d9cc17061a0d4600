// The abota delta payload layout (packages/delta/FORMAT.md): a fixed header, an operation table
// ordered by target position, a metadata digest, then each op's data in op order. Modelled on
// Android's payload.bin (docs/formats.md §4.2): everything needed to find an op's data is in
// the metadata, so an applier can stream and resume with an HTTP Range request.
import { createHash } from 'node:crypto';
import { DeltaError } from './errors.js';

export const DELTA_MAGIC = 'ABOTADLT';
export const DELTA_VERSION = 1;
export const HEADER_SIZE_BYTES = 256;
export const OP_ENTRY_SIZE_BYTES = 64;
export const METADATA_DIGEST_SIZE_BYTES = 32;
export const MAX_ROOT_HASH_BYTES = 64;

/** Hard limits an applier enforces on untrusted payloads (FORMAT.md "Limits"). */
export const LIMITS = {
  /** Metadata ≤ 8 MiB keeps the op table well inside the apply memory budget. */
  maxOps: 131_072,
  /** Largest target span of one data-carrying op (PATCH/REPLACE). */
  maxDataOpTargetBytes: 1024 * 1024,
  /** Largest compressed data of one op. */
  maxOpDataBytes: 4 * 1024 * 1024,
  /** Largest decoded (decompressed) data of one op. */
  maxOpDecodedBytes: 6 * 1024 * 1024,
} as const;

export enum OpKind {
  /** Write zeros; no data. */
  Zero = 1,
  /** Copy `blockCount` blocks from the source starting at `sourceStartBlock`; no data. */
  SourceCopy = 2,
  /** Data = brotli(raw target bytes). */
  Replace = 3,
  /** Data = brotli(patch program): copies from any source byte range plus literals (patch.ts). */
  Patch = 4,
}

export interface DeltaImageIdentity {
  sizeBytes: number;
  /** SHA-256 of the whole image, hex. */
  sha256: string;
  /** dm-verity root hash (hex) when the producer knew it; '' otherwise. */
  rootHash: string;
}

export interface DeltaHeader {
  version: number;
  blockSize: number;
  source: DeltaImageIdentity;
  target: DeltaImageIdentity;
  opCount: number;
  dataSizeBytes: number;
}

/** Op flag: this data op starts a new brotli stream (a "segment", FORMAT.md). */
export const OP_FLAG_SEGMENT_START = 1;
/** Largest brotli window (log2 bytes) an applier accepts: bounds the decoder's ring buffer. */
export const MAX_BROTLI_LGWIN = 22;

export interface DeltaOp {
  kind: OpKind;
  /** OP_FLAG_* bits; only data ops carry OP_FLAG_SEGMENT_START. */
  flags: number;
  targetStartBlock: number;
  blockCount: number;
  /** SourceCopy only; 0 otherwise. */
  sourceStartBlock: number;
  /** Bytes of data in the data area; 0 for Zero/SourceCopy. */
  dataLength: number;
  /** Exact decompressed length of the data; 0 for Zero/SourceCopy. */
  decodedLength: number;
  /** SHA-256 of the data (32 bytes); all zero for Zero/SourceCopy. */
  dataSha256: Uint8Array;
}

export function metadataSizeBytes(opCount: number): number {
  return HEADER_SIZE_BYTES + opCount * OP_ENTRY_SIZE_BYTES + METADATA_DIGEST_SIZE_BYTES;
}

function writeU64(view: DataView, offset: number, value: number): void {
  view.setBigUint64(offset, BigInt(value), true);
}

function readU64(view: DataView, offset: number, field: string): number {
  const v = view.getBigUint64(offset, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new DeltaError('ERR_DELTA_MALFORMED', `${field} at byte ${offset} is ${v}, beyond 2^53`);
  }
  return Number(v);
}

function hexToBytes(hex: string, field: string): Uint8Array {
  if (!/^([0-9a-f]{2})*$/.test(hex) || hex.length / 2 > MAX_ROOT_HASH_BYTES) {
    throw new DeltaError('ERR_DELTA_INPUT_INVALID', `${field} must be lower-case hex of at most 64 bytes`);
  }
  return Buffer.from(hex, 'hex');
}

/** Serialise header + op table + metadata digest. */
export function encodeMetadata(header: DeltaHeader, ops: readonly DeltaOp[]): Uint8Array {
  const size = metadataSizeBytes(ops.length);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out.set(Buffer.from(DELTA_MAGIC, 'latin1'), 0);
  view.setUint32(8, DELTA_VERSION, true);
  view.setUint32(12, header.blockSize, true);
  writeU64(view, 16, header.source.sizeBytes);
  writeU64(view, 24, header.target.sizeBytes);
  out.set(Buffer.from(header.source.sha256, 'hex'), 32);
  out.set(Buffer.from(header.target.sha256, 'hex'), 64);
  const srcRoot = hexToBytes(header.source.rootHash, 'source root hash');
  const tgtRoot = hexToBytes(header.target.rootHash, 'target root hash');
  out[96] = srcRoot.length;
  out[97] = tgtRoot.length;
  out.set(srcRoot, 100);
  out.set(tgtRoot, 164);
  view.setUint32(228, ops.length, true);
  writeU64(view, 232, header.dataSizeBytes);
  let p = HEADER_SIZE_BYTES;
  for (const op of ops) {
    out[p] = op.kind;
    out[p + 1] = op.flags;
    view.setUint32(p + 4, op.blockCount, true);
    writeU64(view, p + 8, op.targetStartBlock);
    writeU64(view, p + 16, op.sourceStartBlock);
    view.setUint32(p + 24, op.dataLength, true);
    view.setUint32(p + 28, op.decodedLength, true);
    out.set(op.dataSha256, p + 32);
    p += OP_ENTRY_SIZE_BYTES;
  }
  out.set(createHash('sha256').update(out.subarray(0, p)).digest(), p);
  return out;
}

/**
 * Parse the fixed 256-byte header. Returns the header and the metadata size so a streaming
 * reader knows how many more bytes to wait for. Checks everything that can be checked alone.
 */
export function decodeHeader(bytes: Uint8Array): { header: DeltaHeader; metadataSizeBytes: number } {
  if (bytes.length < HEADER_SIZE_BYTES) {
    throw new DeltaError(
      'ERR_DELTA_TRUNCATED',
      `delta header needs ${HEADER_SIZE_BYTES} bytes, the payload has ${bytes.length}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE_BYTES);
  const magic = Buffer.from(bytes.subarray(0, 8)).toString('latin1');
  if (magic !== DELTA_MAGIC) {
    throw new DeltaError(
      'ERR_DELTA_MAGIC',
      `not an abota delta: expected magic "${DELTA_MAGIC}" at byte 0, found ${JSON.stringify(magic)}`,
    );
  }
  const version = view.getUint32(8, true);
  if (version !== DELTA_VERSION) {
    throw new DeltaError(
      'ERR_DELTA_MAGIC',
      `unsupported delta version ${version} (this reader knows ${DELTA_VERSION})`,
    );
  }
  const blockSize = view.getUint32(12, true);
  if (blockSize < 512 || blockSize > 65536 || (blockSize & (blockSize - 1)) !== 0) {
    throw new DeltaError(
      'ERR_DELTA_MALFORMED',
      `block size ${blockSize} at byte 12 is not a power of two in 512..65536`,
    );
  }
  const sourceSizeBytes = readU64(view, 16, 'source size');
  const targetSizeBytes = readU64(view, 24, 'target size');
  for (const [name, size] of [
    ['source', sourceSizeBytes],
    ['target', targetSizeBytes],
  ] as const) {
    if (size % blockSize !== 0 || size / blockSize > 0xffff_ffff) {
      throw new DeltaError(
        'ERR_DELTA_MALFORMED',
        `${name} size ${size} is not a multiple of ${blockSize} below 2^32 blocks`,
      );
    }
  }
  const srcRootLen = bytes[96]!;
  const tgtRootLen = bytes[97]!;
  if (srcRootLen > MAX_ROOT_HASH_BYTES || tgtRootLen > MAX_ROOT_HASH_BYTES) {
    throw new DeltaError(
      'ERR_DELTA_MALFORMED',
      `root hash length ${Math.max(srcRootLen, tgtRootLen)} exceeds 64 bytes`,
    );
  }
  for (const [from, to] of [
    [98, 100],
    [100 + srcRootLen, 164],
    [164 + tgtRootLen, 228],
    [240, 256],
  ] as const) {
    if (bytes.subarray(from, to).some((b) => b !== 0)) {
      throw new DeltaError('ERR_DELTA_MALFORMED', `reserved header bytes ${from}..${to - 1} are not zero`);
    }
  }
  const opCount = view.getUint32(228, true);
  if (opCount > LIMITS.maxOps) {
    throw new DeltaError('ERR_DELTA_TOO_LARGE', `op count ${opCount} exceeds the limit of ${LIMITS.maxOps}`);
  }
  const targetBlocks = targetSizeBytes / blockSize;
  if (opCount > targetBlocks || (opCount === 0 && targetBlocks > 0)) {
    throw new DeltaError(
      'ERR_DELTA_MALFORMED',
      `op count ${opCount} cannot cover ${targetBlocks} target blocks`,
    );
  }
  const dataSizeBytes = readU64(view, 232, 'data size');
  if (dataSizeBytes > opCount * LIMITS.maxOpDataBytes) {
    throw new DeltaError(
      'ERR_DELTA_MALFORMED',
      `data size ${dataSizeBytes} exceeds ${opCount} ops of at most ${LIMITS.maxOpDataBytes} bytes`,
    );
  }
  const hex = (from: number, len: number) => Buffer.from(bytes.subarray(from, from + len)).toString('hex');
  return {
    header: {
      version,
      blockSize,
      source: { sizeBytes: sourceSizeBytes, sha256: hex(32, 32), rootHash: hex(100, srcRootLen) },
      target: { sizeBytes: targetSizeBytes, sha256: hex(64, 32), rootHash: hex(164, tgtRootLen) },
      opCount,
      dataSizeBytes,
    },
    metadataSizeBytes: metadataSizeBytes(opCount),
  };
}

/**
 * Parse and check the whole metadata (header, op table, digest): ops must tile the target
 * in order, stay inside the source, respect the limits and sum to the data size.
 */
export function decodeMetadata(bytes: Uint8Array): {
  header: DeltaHeader;
  ops: DeltaOp[];
  metadataSizeBytes: number;
} {
  const { header, metadataSizeBytes: size } = decodeHeader(bytes);
  if (bytes.length < size) {
    throw new DeltaError('ERR_DELTA_TRUNCATED', `delta metadata needs ${size} bytes, have ${bytes.length}`);
  }
  const tableEnd = size - METADATA_DIGEST_SIZE_BYTES;
  const digest = createHash('sha256').update(bytes.subarray(0, tableEnd)).digest();
  if (!digest.equals(bytes.subarray(tableEnd, size))) {
    throw new DeltaError(
      'ERR_DELTA_METADATA_DIGEST_MISMATCH',
      `delta metadata (bytes 0..${tableEnd - 1}) does not match its SHA-256 at byte ${tableEnd}: the payload is corrupt`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, size);
  const { blockSize } = header;
  const sourceBlocks = header.source.sizeBytes / blockSize;
  const targetBlocks = header.target.sizeBytes / blockSize;
  const ops: DeltaOp[] = [];
  let nextBlock = 0;
  let dataTotal = 0;
  let sawDataOp = false;
  for (let i = 0; i < header.opCount; i++) {
    const p = HEADER_SIZE_BYTES + i * OP_ENTRY_SIZE_BYTES;
    const where = `op ${i} (table byte ${p})`;
    const kind = bytes[p]!;
    if (kind < OpKind.Zero || kind > OpKind.Patch) {
      throw new DeltaError('ERR_DELTA_MALFORMED', `${where}: unknown op kind ${kind}`);
    }
    if (bytes[p + 2] !== 0 || bytes[p + 3] !== 0) {
      throw new DeltaError('ERR_DELTA_MALFORMED', `${where}: reserved bytes are not zero`);
    }
    const op: DeltaOp = {
      kind,
      flags: bytes[p + 1]!,
      blockCount: view.getUint32(p + 4, true),
      targetStartBlock: readU64(view, p + 8, `${where} target start`),
      sourceStartBlock: readU64(view, p + 16, `${where} source start`),
      dataLength: view.getUint32(p + 24, true),
      decodedLength: view.getUint32(p + 28, true),
      dataSha256: bytes.slice(p + 32, p + 64),
    };
    if (
      op.targetStartBlock !== nextBlock ||
      op.blockCount === 0 ||
      op.blockCount > targetBlocks - nextBlock
    ) {
      throw new DeltaError(
        'ERR_DELTA_MALFORMED',
        `${where}: covers target blocks ${op.targetStartBlock}+${op.blockCount}, expected to start at ${nextBlock} inside ${targetBlocks} blocks`,
      );
    }
    const carriesData = kind === OpKind.Replace || kind === OpKind.Patch;
    if ((op.flags & ~OP_FLAG_SEGMENT_START) !== 0 || (!carriesData && op.flags !== 0)) {
      throw new DeltaError(
        'ERR_DELTA_MALFORMED',
        `${where}: unknown flags 0x${op.flags.toString(16)} for ${OpKind[kind]}`,
      );
    }
    if (carriesData && !sawDataOp && (op.flags & OP_FLAG_SEGMENT_START) === 0) {
      throw new DeltaError('ERR_DELTA_MALFORMED', `${where}: the first data op must start a brotli segment`);
    }
    if (carriesData) {
      sawDataOp = true;
      if (op.blockCount * blockSize > LIMITS.maxDataOpTargetBytes) {
        throw new DeltaError(
          'ERR_DELTA_TOO_LARGE',
          `${where}: spans ${op.blockCount * blockSize} bytes, limit ${LIMITS.maxDataOpTargetBytes}`,
        );
      }
      if (
        op.dataLength === 0 ||
        op.dataLength > LIMITS.maxOpDataBytes ||
        op.decodedLength > LIMITS.maxOpDecodedBytes
      ) {
        throw new DeltaError(
          'ERR_DELTA_TOO_LARGE',
          `${where}: data ${op.dataLength} bytes decoding to ${op.decodedLength}; limits 1..${LIMITS.maxOpDataBytes} and ${LIMITS.maxOpDecodedBytes}`,
        );
      }
      if (kind === OpKind.Replace && op.decodedLength !== op.blockCount * blockSize) {
        throw new DeltaError(
          'ERR_DELTA_MALFORMED',
          `${where}: REPLACE decodes to ${op.decodedLength} bytes, must be ${op.blockCount * blockSize}`,
        );
      }
    } else if (op.dataLength !== 0 || op.decodedLength !== 0 || op.dataSha256.some((b) => b !== 0)) {
      throw new DeltaError('ERR_DELTA_MALFORMED', `${where}: ${OpKind[kind]} must carry no data`);
    }
    if (kind === OpKind.SourceCopy) {
      if (op.sourceStartBlock + op.blockCount > sourceBlocks) {
        throw new DeltaError(
          'ERR_DELTA_MALFORMED',
          `${where}: copies source blocks ${op.sourceStartBlock}+${op.blockCount}, the source has ${sourceBlocks}`,
        );
      }
    } else if (op.sourceStartBlock !== 0) {
      throw new DeltaError('ERR_DELTA_MALFORMED', `${where}: source start must be 0 for ${OpKind[kind]}`);
    }
    nextBlock += op.blockCount;
    dataTotal += op.dataLength;
    ops.push(op);
  }
  if (nextBlock !== targetBlocks) {
    throw new DeltaError(
      'ERR_DELTA_MALFORMED',
      `ops cover ${nextBlock} target blocks, the target has ${targetBlocks}`,
    );
  }
  if (dataTotal !== header.dataSizeBytes) {
    throw new DeltaError(
      'ERR_DELTA_MALFORMED',
      `op data lengths sum to ${dataTotal}, the header says ${header.dataSizeBytes}`,
    );
  }
  return { header, ops, metadataSizeBytes: size };
}

/**
 * Where apply must restart to produce op `index` onwards: the op that starts the brotli
 * segment `index` belongs to (data before it in that segment must be decoded again).
 */
export function segmentRestartOp(ops: readonly DeltaOp[], index: number): number {
  if (index >= ops.length) return index;
  for (let i = Math.min(index, ops.length - 1); i >= 0; i--) {
    if ((ops[i]!.flags & OP_FLAG_SEGMENT_START) !== 0) return i;
  }
  return index;
}

/**
 * The window size (log2 bytes) a brotli stream declares in its first bits (RFC 7932 §9.1),
 * or -1 for large-window streams. Lets apply refuse streams whose decoder would need more
 * memory than MAX_BROTLI_LGWIN allows, before decoding anything.
 */
export function brotliWindowBits(first: Uint8Array): number {
  const bits = (first[0] ?? 0) | ((first[1] ?? 0) << 8);
  if ((bits & 1) === 0) return 16;
  const n = (bits >> 1) & 7;
  if (n !== 0) return 17 + n;
  const m = (bits >> 4) & 7;
  if (m === 1) return -1;
  return m === 0 ? 17 : 8 + m;
}

/** Byte offset of op `index`'s data in the payload (FORMAT.md "Data area"). */
export function opDataOffset(metadataSize: number, ops: readonly DeltaOp[], index: number): number {
  let offset = metadataSize;
  for (let i = 0; i < index; i++) offset += ops[i]!.dataLength;
  return offset;
}
