// Per-block verification for installers (docs/CONTRACTS.md): the whole hash tree is checked
// once against the trusted root hash; after that each data block costs one digest and a
// compare with its leaf slot. The tree is held in memory (fromHashFile) or, to keep an
// installer's memory flat in the image size, in a file (fromHashFileHandle, file-leaf-level.ts).
import type { FileHandle } from 'node:fs/promises';
import { VerityError } from './errors.js';
import { checkedFileLeafLevel } from './file-leaf-level.js';
import type { LeafLevel } from './leaf-level.js';
import type { TreeGeometry } from './geometry.js';
import { treeGeometry } from './geometry.js';
import { BlockHasher } from './hashing.js';
import type { VerityParams } from './params.js';
import { checkTop, firstDifference, leafPaddingError, mismatchError, packDigests } from './tree-check.js';
import { parseRootHash } from './verify.js';

/** Pieces the in-memory hash file is handed out in. */
const HASH_FILE_PIECE_BYTES = 1024 * 1024;

export class BlockVerifier {
  readonly params: VerityParams;
  readonly geometry: TreeGeometry;
  private readonly hasher: BlockHasher;
  private readonly leaves: LeafLevel;
  private readonly root: Buffer;

  private constructor(params: VerityParams, geometry: TreeGeometry, leaves: LeafLevel, root: Buffer) {
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
   * or ERR_VERITY_PADDING_NOT_ZERO. The verifier keeps `bytes` (do not change them afterwards).
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
    if (geometry.levels > 0) {
      checkTop(hasher, level(geometry.levels - 1), root);
      // Top-down: each level must hold exactly the packed digests of the level below.
      for (let i = geometry.levels - 1; i >= 1; i--) {
        const expected = packDigests(hasher, level(i - 1), hbs, geometry, geometry.levelSizes[i]!);
        const at = firstDifference(expected, level(i));
        if (at >= 0) throw mismatchError(params, geometry, i, Math.floor(at / hbs), at % hbs);
      }
      const leaves = level(0);
      for (let k = 0; k * hbs < leaves.length; k++) {
        const bad = leafPaddingError(params, geometry, k, leaves.subarray(k * hbs, (k + 1) * hbs));
        if (bad !== undefined) throw bad;
      }
    }
    const leaves = geometry.levels > 0 ? level(0) : Buffer.alloc(0);
    return new BlockVerifier(params, geometry, memoryLeafLevel(file, leaves, hbs), root);
  }

  /**
   * Like fromHashFile for a hash file in a file (an installer's scratch copy), with the same
   * checks and errors, holding only what lies before the leaf level in memory (superblock and
   * upper levels: ~40 KiB for a 512 MiB sha256/4096 image instead of the 4 MiB tree). The leaf
   * level is streamed once to check it, then read back one hash block at a time, and re-checked
   * against the verified level above on every read: verifyBlock fails (assertBlock throws
   * ERR_VERITY_TREE_CORRUPT) if the file changed. `fh` must stay open while the verifier is
   * used; the caller closes it. Not for files something else writes while this runs.
   */
  static async fromHashFileHandle(
    fh: FileHandle,
    params: VerityParams,
    rootHash: string,
  ): Promise<BlockVerifier> {
    const geometry = treeGeometry(params);
    const root = parseRootHash(rootHash, params.algorithm);
    const leaves = await checkedFileLeafLevel(fh, params, geometry, root);
    return new BlockVerifier(params, geometry, leaves, root);
  }

  /**
   * Is `data` the correct content of data block `blockIndex`? One digest; for a file-backed
   * verifier one hash-block read per `hashesPerBlock` data blocks in sequential use.
   */
  verifyBlock(blockIndex: number, data: Uint8Array): boolean {
    if (!Number.isInteger(blockIndex) || blockIndex < 0 || blockIndex >= this.params.dataBlocks) return false;
    if (data.length !== this.params.dataBlockSize) return false;
    const digest = this.hasher.digest(data);
    if (this.geometry.levels === 0) return digest.equals(this.root);
    const { hashesPerBlock: perBlock, slotSizeBytes: slot, digestSizeBytes: size } = this.geometry;
    const leaf = this.leaves.block(Math.floor(blockIndex / perBlock));
    if (leaf instanceof VerityError) return false;
    const at = (blockIndex % perBlock) * slot;
    return digest.equals(leaf.subarray(at, at + size));
  }

  /**
   * Like verifyBlock, but throws ERR_VERITY_DATA_CORRUPT naming the block and byte position (or
   * the error of a leaf hash block that can no longer be trusted: ERR_VERITY_TREE_CORRUPT, _IO).
   */
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
      if (this.geometry.levels > 0) {
        const leaf = this.leaves.block(Math.floor(blockIndex / this.geometry.hashesPerBlock));
        if (leaf instanceof VerityError) throw leaf;
      }
      const position = blockIndex * dataBlockSize;
      throw new VerityError(
        'ERR_VERITY_DATA_CORRUPT',
        `data block ${blockIndex} (byte position ${position}) does not match the verity hash tree`,
        { position, blockIndex, level: 0 },
      );
    }
  }

  /**
   * The hash file this verifier was made from, from byte 0, in pieces of at most 1 MiB, each
   * valid only until the next is requested (to write it to the hash device). Tree blocks come
   * from memory or are re-checked as they are read: a file changed since it was verified
   * throws ERR_VERITY_TREE_CORRUPT. Bytes after the tree (none in what veritysetup writes) are
   * not covered by the tree and come as they are.
   */
  hashFile(): AsyncGenerator<Uint8Array> {
    return this.leaves.hashFile();
  }
}

function memoryLeafLevel(file: Buffer, leaves: Buffer, hbs: number): LeafLevel {
  return {
    block: (k) => leaves.subarray(k * hbs, (k + 1) * hbs),
    async *hashFile() {
      for (let at = 0; at < file.length; at += HASH_FILE_PIECE_BYTES)
        yield file.subarray(at, at + HASH_FILE_PIECE_BYTES);
    },
  };
}
