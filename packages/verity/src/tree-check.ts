// Turning "the bytes on disk differ from what the tree should hold" into the error veritysetup
// reports (docs/formats.md §1.6): a digest mismatch names the data position (level 0) or the hash
// block below, a non-zero padding byte names the start of that padding run. Also the two checks
// a tree held by an installer gets (block-verifier.ts): packed digests and leaf padding.
import { VerityError } from './errors.js';
import type { TreeGeometry } from './geometry.js';
import type { BlockHasher } from './hashing.js';
import type { VerityParams } from './params.js';

/** Index of the first byte where `a` and `b` differ, or -1 when equal. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (Buffer.from(a.buffer, a.byteOffset, a.length).equals(b)) return -1;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

/**
 * The error for the first wrong byte in hash block `blockInLevel` of `level` at `byteInBlock`.
 * veritysetup walks each hash block in byte order (digest, slot padding, next digest, …, tail),
 * so the first differing byte is the failure it reports.
 */
export function mismatchError(
  params: VerityParams,
  geometry: TreeGeometry,
  level: number,
  blockInLevel: number,
  byteInBlock: number,
): VerityError {
  const hbs = params.hashBlockSize;
  const { hashesPerBlock: perBlock, slotSizeBytes: slot, digestSizeBytes: digest } = geometry;
  const sourceCount = level === 0 ? params.dataBlocks : geometry.levelSizes[level - 1]!;
  const used = Math.min(perBlock, sourceCount - blockInLevel * perBlock);
  const blockAt = (geometry.levelStartBlocks[level]! + blockInLevel) * hbs;
  const s = Math.floor(byteInBlock / slot);
  if (s < used && byteInBlock % slot < digest) {
    const source = blockInLevel * perBlock + s;
    const digestAt = blockAt + s * slot;
    if (level === 0) {
      const position = source * params.dataBlockSize;
      return new VerityError(
        'ERR_VERITY_DATA_CORRUPT',
        `Verification failed at position ${position}: data block ${source} does not match its digest ` +
          `at byte ${digestAt} of the hash file (the data block or that leaf digest is corrupted)`,
        { position, blockIndex: source, level: 0 },
      );
    }
    const position = (geometry.levelStartBlocks[level - 1]! + source) * hbs;
    return new VerityError(
      'ERR_VERITY_TREE_CORRUPT',
      `Verification failed at position ${position}: hash block ${source} of tree level ${level - 1} ` +
        `does not match its digest at byte ${digestAt} (tree level ${level})`,
      { position, blockIndex: source, level: level - 1 },
    );
  }
  const position = s < used ? blockAt + s * slot + digest : blockAt + used * slot;
  return new VerityError(
    'ERR_VERITY_PADDING_NOT_ZERO',
    `Spare area is not zeroed at position ${position} (padding in hash block ${blockInLevel} of tree level ${level})`,
    { position, blockIndex: blockInLevel, level },
  );
}

/** The `blocks` hash blocks a level must hold: the packed digests of the hash blocks in `source`. */
export function packDigests(
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

/**
 * The error for the first non-zero padding byte of leaf hash block `blockInLevel` (slot padding
 * after each used digest, then the unused tail), or undefined when all padding is zero.
 */
export function leafPaddingError(
  params: VerityParams,
  geometry: TreeGeometry,
  blockInLevel: number,
  block: Uint8Array,
): VerityError | undefined {
  const hbs = params.hashBlockSize;
  const { hashesPerBlock: perBlock, slotSizeBytes: slot, digestSizeBytes: size } = geometry;
  const used = Math.min(perBlock, params.dataBlocks - blockInLevel * perBlock);
  for (let s = 0; s <= used; s++) {
    const from = s < used ? s * slot + size : used * slot;
    const to = s < used ? (s + 1) * slot : hbs;
    for (let b = from; b < to; b++) {
      if (block[b] !== 0) return mismatchError(params, geometry, 0, blockInLevel, b);
    }
  }
  return undefined;
}

/** The top level (one hash block) must hash to the trusted root. */
export function checkTop(hasher: BlockHasher, top: Buffer, root: Buffer): void {
  const topDigest = hasher.digest(top);
  if (!topDigest.equals(root)) {
    throw new VerityError(
      'ERR_VERITY_ROOT_HASH_MISMATCH',
      `Verification of root hash failed: the hash tree's root hash is ${topDigest.toString('hex')}, expected ${root.toString('hex')}`,
    );
  }
}
