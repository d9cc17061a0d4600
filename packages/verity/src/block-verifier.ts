// Per-block verification for installers (docs/CONTRACTS.md): the whole hash tree is checked
// once against the trusted root hash; after that each data block costs one digest and a
// compare with its leaf slot. An installer that has written the tree to the slot's hash area can
// drop the leaf level from memory (withLeavesOnDisk): each leaf hash block is then read back when
// first needed and accepted only if it matches its digest in level 1, which stays in memory.
import { VerityError } from './errors.js';
import type { TreeGeometry } from './geometry.js';
import { treeGeometry } from './geometry.js';
import { BlockHasher } from './hashing.js';
import type { VerityParams } from './params.js';
import { firstDifference, mismatchError } from './tree-check.js';
import { parseRootHash } from './verify.js';

/**
 * Reads `into.length` bytes of the hash file (as veritysetup writes it, byte 0 = start of the
 * hash area) at `hashFileOffset` into `into`, synchronously (a leaf block is needed in the middle
 * of a block check). Throws on a short read.
 */
export type HashBlockReader = (hashFileOffset: number, into: Uint8Array) => void;

interface LeavesOnDisk {
  read: HashBlockReader;
  /** Level 1: the digests of the leaf hash blocks, checked against the root at construction. */
  parents: Buffer;
  /** The leaf hash block last read and checked, and its index in level 0 (-1: none). */
  block: Buffer;
  blockIndex: number;
}

export class BlockVerifier {
  readonly params: VerityParams;
  readonly geometry: TreeGeometry;
  private readonly hasher: BlockHasher;
  private readonly leaves: Buffer | undefined;
  private readonly root: Buffer;
  /** Level 1, kept (a copy: 1/128 of the leaves) so that the leaves can later live on disk. */
  private readonly parents: Buffer | undefined;
  private readonly onDisk: LeavesOnDisk | undefined;

  private constructor(
    params: VerityParams,
    geometry: TreeGeometry,
    leaves: Buffer | undefined,
    root: Buffer,
    parents?: Buffer,
    onDisk?: LeavesOnDisk,
  ) {
    this.params = params;
    this.geometry = geometry;
    this.hasher = new BlockHasher(params.algorithm, params.hashType, params.salt);
    this.leaves = leaves;
    this.root = root;
    this.parents = parents;
    this.onDisk = onDisk;
  }

  /**
   * The same verifier without the leaf level in memory (−0.8 % of the image: 4 MiB for 512 MiB):
   * leaf hash block k is read with `read` when a data block under it is checked, and used only
   * if its digest equals its slot in level 1 (ERR_VERITY_TREE_CORRUPT otherwise). The caller
   * must have written this verified hash file where `read` reads it. A tree of one level (one
   * leaf block, checked against the root itself) keeps its leaves: nothing to gain.
   */
  withLeavesOnDisk(read: HashBlockReader): BlockVerifier {
    if (this.parents === undefined) return this;
    const onDisk: LeavesOnDisk = {
      read,
      parents: this.parents,
      block: Buffer.alloc(this.params.hashBlockSize),
      blockIndex: -1,
    };
    return new BlockVerifier(this.params, this.geometry, undefined, this.root, this.parents, onDisk);
  }

  /**
   * `bytes` is the hash file as `veritysetup format` writes it (from byte 0 of the hash device).
   * Checks the top block against `rootHash`, then every level down to the leaves, including
   * the zero padding of every block; throws ERR_VERITY_ROOT_HASH_MISMATCH, ERR_VERITY_TREE_CORRUPT
   * or ERR_VERITY_PADDING_NOT_ZERO.
   */
  static fromHashFile(bytes: Uint8Array, params: VerityParams, rootHash: string): BlockVerifier {
    const geometry = treeGeometry(params);
    const root = parseRootHash(rootHash, params.algorithm);
    if (geometry.levels > 0 && bytes.length < geometry.hashFileSizeBytes) {
      throw new VerityError(
        'ERR_VERITY_HASH_TOO_SHORT',
        `hash file is ${bytes.length} bytes but the hash tree ends at byte ${geometry.hashFileSizeBytes}`,
      );
    }
    const file = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    const hbs = params.hashBlockSize;
    const level = (i: number): Buffer => {
      const start = geometry.levelStartBlocks[i]! * hbs;
      return file.subarray(start, start + geometry.levelSizes[i]! * hbs);
    };
    const hasher = new BlockHasher(params.algorithm, params.hashType, params.salt);
    if (geometry.levels === 0) return new BlockVerifier(params, geometry, undefined, root);
    const top = level(geometry.levels - 1);
    const topDigest = hasher.digest(top);
    if (!topDigest.equals(root)) {
      throw new VerityError(
        'ERR_VERITY_ROOT_HASH_MISMATCH',
        `Verification of root hash failed: the hash tree's root hash is ${topDigest.toString('hex')}, expected ${root.toString('hex')}`,
      );
    }
    // Top-down: each level must hold exactly the packed digests of the level below.
    for (let i = geometry.levels - 1; i >= 1; i--) {
      const expected = packDigests(hasher, level(i - 1), hbs, geometry, geometry.levelSizes[i]!);
      const at = firstDifference(expected, level(i));
      if (at >= 0) throw mismatchError(params, geometry, i, Math.floor(at / hbs), at % hbs);
    }
    checkLeafPadding(params, geometry, level(0));
    const parents = geometry.levels >= 2 ? Buffer.from(level(1)) : undefined;
    return new BlockVerifier(params, geometry, level(0), root, parents);
  }

  /** Leaf hash block `k` (level 0): from memory, or read back from disk and checked against level 1. */
  private leafBlock(k: number): Buffer {
    const hbs = this.params.hashBlockSize;
    if (this.leaves !== undefined) return this.leaves.subarray(k * hbs, (k + 1) * hbs);
    const disk = this.onDisk!;
    if (disk.blockIndex === k) return disk.block;
    disk.blockIndex = -1;
    const offset = (this.geometry.levelStartBlocks[0]! + k) * hbs;
    disk.read(offset, disk.block);
    const { hashesPerBlock: perBlock, slotSizeBytes: slot, digestSizeBytes: size } = this.geometry;
    const at = Math.floor(k / perBlock) * hbs + (k % perBlock) * slot;
    if (!this.hasher.digest(disk.block).equals(disk.parents.subarray(at, at + size))) {
      throw new VerityError(
        'ERR_VERITY_TREE_CORRUPT',
        `leaf hash block ${k} (byte ${offset} of the hash area) read back from disk does not match its digest in level 1: the hash area changed after it was written`,
      );
    }
    disk.blockIndex = k;
    return disk.block;
  }

  /** Is `data` the correct content of data block `blockIndex`? One digest, no I/O. */
  verifyBlock(blockIndex: number, data: Uint8Array): boolean {
    if (!Number.isInteger(blockIndex) || blockIndex < 0 || blockIndex >= this.params.dataBlocks) return false;
    if (data.length !== this.params.dataBlockSize) return false;
    const digest = this.hasher.digest(data);
    if (this.geometry.levels === 0) return digest.equals(this.root);
    const { hashesPerBlock: perBlock, slotSizeBytes: slot, digestSizeBytes: size } = this.geometry;
    const block = this.leafBlock(Math.floor(blockIndex / perBlock));
    const at = (blockIndex % perBlock) * slot;
    return digest.equals(block.subarray(at, at + size));
  }

  /** Like verifyBlock, but throws ERR_VERITY_DATA_CORRUPT naming the block and byte position. */
  assertBlock(blockIndex: number, data: Uint8Array): void {
    const { dataBlocks, dataBlockSize } = this.params;
    if (!Number.isInteger(blockIndex) || blockIndex < 0 || blockIndex >= dataBlocks) {
      throw new VerityError(
        'ERR_VERITY_INVALID_PARAMS',
        `data block index ${blockIndex} is out of range: the image has ${dataBlocks} blocks`,
      );
    }
    if (data.length !== dataBlockSize) {
      throw new VerityError(
        'ERR_VERITY_INVALID_PARAMS',
        `data block ${blockIndex} is ${data.length} bytes, expected ${dataBlockSize}`,
      );
    }
    if (!this.verifyBlock(blockIndex, data)) {
      const position = blockIndex * dataBlockSize;
      throw new VerityError(
        'ERR_VERITY_DATA_CORRUPT',
        `data block ${blockIndex} (byte position ${position}) does not match the verity hash tree`,
        { position, blockIndex, level: 0 },
      );
    }
  }
}

function packDigests(
  hasher: BlockHasher,
  source: Buffer,
  hbs: number,
  geometry: TreeGeometry,
  blocks: number,
): Buffer {
  const out = Buffer.alloc(blocks * hbs);
  const { hashesPerBlock: perBlock, slotSizeBytes: slot } = geometry;
  const count = source.length / hbs;
  for (let j = 0; j < count; j++) {
    hasher
      .digest(source.subarray(j * hbs, (j + 1) * hbs))
      .copy(out, Math.floor(j / perBlock) * hbs + (j % perBlock) * slot);
  }
  return out;
}

function checkLeafPadding(params: VerityParams, geometry: TreeGeometry, leaves: Buffer): void {
  const hbs = params.hashBlockSize;
  const { hashesPerBlock: perBlock, slotSizeBytes: slot, digestSizeBytes: size } = geometry;
  for (let k = 0; k * hbs < leaves.length; k++) {
    const used = Math.min(perBlock, params.dataBlocks - k * perBlock);
    const block = leaves.subarray(k * hbs, (k + 1) * hbs);
    for (let s = 0; s <= used; s++) {
      const from = s < used ? s * slot + size : used * slot;
      const to = s < used ? (s + 1) * slot : hbs;
      for (let b = from; b < to; b++) {
        if (block[b] !== 0) throw mismatchError(params, geometry, 0, k, b);
      }
    }
  }
}
