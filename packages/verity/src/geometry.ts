// Hash tree geometry (docs/formats.md §1.3, §1.4): pure functions of the parameters — where the
// tree starts, how many levels it has, how big each level is and where it lies in the hash file.
import type { VerityParams } from './params.js';
import { digestSizeOf, SUPERBLOCK_SIZE } from './params.js';

export type GeometryParams = Pick<
  VerityParams,
  'hashType' | 'algorithm' | 'dataBlockSize' | 'hashBlockSize' | 'dataBlocks' | 'hashOffset' | 'superblock'
>;

export interface TreeGeometry {
  digestSizeBytes: number;
  /** Bytes one digest occupies in a hash block: next power of two for type 1, the digest for type 0. */
  slotSizeBytes: number;
  /** P = 2^floor(log2(hbs / D)) digests per hash block. */
  hashesPerBlock: number;
  /** Number of levels L (0 when there is a single data block). */
  levels: number;
  /** S_i in hash blocks, index 0 = leaf level. */
  levelSizes: number[];
  /** First hash block (from the start of the hash device) of each level, index 0 = leaf level. */
  levelStartBlocks: number[];
  /** T: the hash block where the tree (its top level) starts — the kernel's hash_start_block. */
  treeStartBlock: number;
  /** Σ S_i ("Hash blocks" in veritysetup's output). */
  treeBlocks: number;
  treeOffsetBytes: number;
  treeSizeBytes: number;
  /**
   * Size of the hash file veritysetup writes into a new empty file: (T + Σ S_i) × hbs; for a
   * single data block (no tree) see `treelessFileSize`.
   */
  hashFileSizeBytes: number;
}

export function slotSize(hashType: 0 | 1, digestSizeBytes: number): number {
  if (hashType === 0) return digestSizeBytes;
  let slot = 1;
  while (slot < digestSizeBytes) slot *= 2;
  return slot;
}

export function hashesPerBlock(hashBlockSize: number, digestSizeBytes: number): number {
  let p = 1;
  while (p * 2 <= Math.floor(hashBlockSize / digestSizeBytes)) p *= 2;
  return p;
}

/** Smallest L with P^L ≥ N, i.e. `(N − 1) >> (b·L) == 0`. */
export function levelCount(dataBlocks: number, perBlock: number): number {
  let levels = 0;
  let covered = 1;
  while (covered < dataBlocks) {
    covered *= perBlock;
    levels++;
  }
  return levels;
}

/** S_i = ceil(N / P^(i+1)), leaf level first. */
export function levelSizes(dataBlocks: number, perBlock: number): number[] {
  const sizes: number[] = [];
  const levels = levelCount(dataBlocks, perBlock);
  let blocks = dataBlocks;
  for (let i = 0; i < levels; i++) {
    blocks = Math.ceil(blocks / perBlock);
    sizes.push(blocks);
  }
  return sizes;
}

/** T (docs/formats.md §1.3): after the 512-byte superblock rounded up, or the offset rounded down. */
export function treeStartBlock(hashOffset: number, hashBlockSize: number, superblock: boolean): number {
  if (!superblock) return Math.floor(hashOffset / hashBlockSize);
  return Math.ceil((hashOffset + SUPERBLOCK_SIZE) / hashBlockSize);
}

/** Page size veritysetup writes the superblock with (x86-64). */
const SUPERBLOCK_WRITE_UNIT = 4096;

/**
 * A single data block has no tree (L = 0), so the new hash file holds only what veritysetup
 * writes for the superblock: it writes it blockwise in units of min(hbs, 4096) bytes, so the
 * file ends at the next such unit after it (hbs 16384 → 4096 bytes, not 16384). Without a
 * superblock nothing is written at all: an empty file. (Verified against veritysetup 2.6.1.)
 */
function treelessFileSize(p: GeometryParams): number {
  if (!p.superblock) return 0;
  const unit = Math.min(p.hashBlockSize, SUPERBLOCK_WRITE_UNIT);
  return Math.ceil((p.hashOffset + SUPERBLOCK_SIZE) / unit) * unit;
}

export function treeGeometry(p: GeometryParams): TreeGeometry {
  const digestSizeBytes = digestSizeOf(p.algorithm);
  const perBlock = hashesPerBlock(p.hashBlockSize, digestSizeBytes);
  const sizes = levelSizes(p.dataBlocks, perBlock);
  const start = treeStartBlock(p.hashOffset, p.hashBlockSize, p.superblock);
  // On disk the top level comes first (docs/formats.md §1.4, §1.8 pitfall 1).
  const levelStartBlocks: number[] = new Array<number>(sizes.length);
  let next = start;
  for (let i = sizes.length - 1; i >= 0; i--) {
    levelStartBlocks[i] = next;
    next += sizes[i]!;
  }
  const treeBlocks = next - start;
  return {
    digestSizeBytes,
    slotSizeBytes: slotSize(p.hashType, digestSizeBytes),
    hashesPerBlock: perBlock,
    levels: sizes.length,
    levelSizes: sizes,
    levelStartBlocks,
    treeStartBlock: start,
    treeBlocks,
    treeOffsetBytes: start * p.hashBlockSize,
    treeSizeBytes: treeBlocks * p.hashBlockSize,
    hashFileSizeBytes: sizes.length > 0 ? next * p.hashBlockSize : treelessFileSize(p),
  };
}
