// Per-block verification for installers (docs/CONTRACTS.md): the whole hash tree is checked
// once against the trusted root hash; after that each data block costs one digest and a
// compare with its leaf slot.
import { VerityError } from './errors.js';
import type { TreeGeometry } from './geometry.js';
import { treeGeometry } from './geometry.js';
import { BlockHasher } from './hashing.js';
import type { VerityParams } from './params.js';
import { firstDifference, mismatchError } from './tree-check.js';
import { parseRootHash } from './verify.js';

export class BlockVerifier {
  readonly params: VerityParams;
  readonly geometry: TreeGeometry;
  private readonly hasher: BlockHasher;
  private readonly leaves: Buffer;
  private readonly root: Buffer;

  private constructor(params: VerityParams, geometry: TreeGeometry, leaves: Buffer, root: Buffer) {
    this.params = params;
    this.geometry = geometry;
    this.hasher = new BlockHasher(params.algorithm, params.hashType, params.salt);
    this.leaves = leaves;
    this.root = root;
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
    if (geometry.levels === 0) return new BlockVerifier(params, geometry, Buffer.alloc(0), root);
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
    return new BlockVerifier(params, geometry, level(0), root);
  }

  /** Is `data` the correct content of data block `blockIndex`? One digest, no I/O. */
  verifyBlock(blockIndex: number, data: Uint8Array): boolean {
    if (!Number.isInteger(blockIndex) || blockIndex < 0 || blockIndex >= this.params.dataBlocks) return false;
    if (data.length !== this.params.dataBlockSize) return false;
    const digest = this.hasher.digest(data);
    if (this.geometry.levels === 0) return digest.equals(this.root);
    const { hashesPerBlock: perBlock, slotSizeBytes: slot, digestSizeBytes: size } = this.geometry;
    const at = Math.floor(blockIndex / perBlock) * this.params.hashBlockSize + (blockIndex % perBlock) * slot;
    return digest.equals(this.leaves.subarray(at, at + size));
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
