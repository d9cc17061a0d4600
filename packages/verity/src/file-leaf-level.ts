// A verified hash tree whose leaf level stays in a file (BlockVerifier.fromHashFileHandle): only
// the bytes before the leaf level (superblock, upper levels) are held in memory. The leaf level
// (1/128 of the data for sha256/4096) is streamed once to check it against level 1, then read
// back one hash block at a time and re-checked against level 1 on every read, because the file
// lies outside this process and may change after the first pass.
import { readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { VerityError } from './errors.js';
import type { TreeGeometry } from './geometry.js';
import { BlockHasher } from './hashing.js';
import { readFully } from './io.js';
import type { LeafLevel } from './leaf-level.js';
import type { VerityParams } from './params.js';
import { checkTop, firstDifference, leafPaddingError, mismatchError, packDigests } from './tree-check.js';

/** Leaf level read per step while checking it (64 hash blocks of 4 KiB), into one reused buffer. */
const CHECK_CHUNK_BYTES = 256 * 1024;
/** Pieces hashFile() hands out, from one reused buffer. */
const HASH_FILE_PIECE_BYTES = 1024 * 1024;

/**
 * Check the hash file in `fh` exactly as BlockVerifier.fromHashFile checks bytes (same order,
 * same errors) and return its leaf level, read from the file on demand.
 */
export async function checkedFileLeafLevel(
  fh: FileHandle,
  params: VerityParams,
  geometry: TreeGeometry,
  root: Buffer,
): Promise<LeafLevel> {
  const hbs = params.hashBlockSize;
  const { levels } = geometry;
  const fileSizeBytes = (await fh.stat()).size;
  if (levels > 0 && fileSizeBytes < geometry.hashFileSizeBytes) {
    throw new VerityError(
      'ERR_VERITY_HASH_TOO_SHORT',
      `hash file is ${fileSizeBytes} bytes but the hash tree ends at byte ${geometry.hashFileSizeBytes}`,
    );
  }
  // Held: everything before the leaf level; with one level the whole tree (one block); without
  // a tree (a single data block) what there is of the superblock.
  const heldBytes =
    levels >= 2 ? geometry.levelStartBlocks[0]! * hbs : Math.min(fileSizeBytes, geometry.hashFileSizeBytes);
  const held = Buffer.alloc(heldBytes);
  await readFully(fh, held, heldBytes, 0);
  const level = (i: number): Buffer => {
    const start = geometry.levelStartBlocks[i]! * hbs;
    return held.subarray(start, start + geometry.levelSizes[i]! * hbs);
  };
  const hasher = new BlockHasher(params.algorithm, params.hashType, params.salt);
  if (levels > 0) checkTop(hasher, level(levels - 1), root);
  for (let i = levels - 1; i >= 2; i--) {
    const expected = packDigests(hasher, level(i - 1), hbs, geometry, geometry.levelSizes[i]!);
    const at = firstDifference(expected, level(i));
    if (at >= 0) throw mismatchError(params, geometry, i, Math.floor(at / hbs), at % hbs);
  }
  if (levels === 1) {
    const bad = leafPaddingError(params, geometry, 0, level(0));
    if (bad !== undefined) throw bad;
    return new FileLeafLevel(fh, params, geometry, held, fileSizeBytes, level(0));
  }
  if (levels >= 2) await checkLeafLevel(fh, params, geometry, hasher, level(1));
  return new FileLeafLevel(fh, params, geometry, held, fileSizeBytes, undefined);
}

/** Level 1 against the digests of the leaf blocks in the file, then the leaf padding (fromHashFile's order). */
async function checkLeafLevel(
  fh: FileHandle,
  params: VerityParams,
  geometry: TreeGeometry,
  hasher: BlockHasher,
  level1: Buffer,
): Promise<void> {
  const hbs = params.hashBlockSize;
  const { hashesPerBlock: perBlock, slotSizeBytes: slot } = geometry;
  const leafStart = geometry.levelStartBlocks[0]! * hbs;
  const leafBlocks = geometry.levelSizes[0]!;
  const perChunk = Math.max(1, Math.floor(CHECK_CHUNK_BYTES / hbs));
  const chunk = Buffer.alloc(Math.min(perChunk, leafBlocks) * hbs);
  const expected = Buffer.alloc(level1.length);
  let padding: VerityError | undefined;
  for (let first = 0; first < leafBlocks; first += perChunk) {
    const count = Math.min(perChunk, leafBlocks - first);
    await readFully(fh, chunk, count * hbs, leafStart + first * hbs);
    for (let j = 0; j < count; j++) {
      const k = first + j;
      const block = chunk.subarray(j * hbs, (j + 1) * hbs);
      hasher.digestInto(block, expected, Math.floor(k / perBlock) * hbs + (k % perBlock) * slot);
      padding ??= leafPaddingError(params, geometry, k, block);
    }
  }
  const at = firstDifference(expected, level1);
  if (at >= 0) throw mismatchError(params, geometry, 1, Math.floor(at / hbs), at % hbs);
  if (padding !== undefined) throw padding;
}

class FileLeafLevel implements LeafLevel {
  private readonly hbs: number;
  private readonly leafStart: number;
  private readonly hasher: BlockHasher;
  /** The last two leaf blocks read (sequential use needs one; two absorb a step back). */
  private readonly cache: { index: number; bytes: Buffer }[];

  constructor(
    private readonly fh: FileHandle,
    params: VerityParams,
    private readonly geometry: TreeGeometry,
    /** Verified bytes [0, held.length) of the file. */
    private readonly held: Buffer,
    private readonly fileSizeBytes: number,
    /** The only leaf block, when the tree has one level (it is in `held`). */
    private readonly singleLeaf: Buffer | undefined,
  ) {
    this.hbs = params.hashBlockSize;
    this.leafStart = geometry.levels > 0 ? geometry.levelStartBlocks[0]! * this.hbs : 0;
    this.hasher = new BlockHasher(params.algorithm, params.hashType, params.salt);
    const withTree = geometry.levels >= 2;
    this.cache = [0, 1].map(() => ({ index: -1, bytes: Buffer.alloc(withTree ? this.hbs : 0) }));
  }

  block(k: number): Buffer | VerityError {
    if (this.singleLeaf !== undefined) return this.singleLeaf;
    for (const entry of this.cache) if (entry.index === k) return entry.bytes;
    const entry = this.cache[k % 2]!;
    entry.index = -1;
    const problem = this.load(k, entry.bytes);
    if (problem !== undefined) return problem;
    entry.index = k;
    return entry.bytes;
  }

  /**
   * Read leaf block `k` into `into` and check it against its slot in level 1 (held in memory).
   * A synchronous pread, so that verifyBlock/assertBlock stay synchronous for their callers (the
   * image writer's batches, @abota/delta's apply): it is one hash block (4 KiB) per
   * `hashesPerBlock` data blocks (512 KiB of image for sha256/4096) in sequential use, from a
   * file on the local data partition that was just written, so mostly from the page cache —
   * microseconds, against the milliseconds the data itself takes to hash and write.
   */
  private load(k: number, into: Buffer): VerityError | undefined {
    const position = this.leafStart + k * this.hbs;
    let got = 0;
    try {
      while (got < this.hbs) {
        const n = readSync(this.fh.fd, into, got, this.hbs - got, position + got);
        if (n === 0) break;
        got += n;
      }
    } catch (err) {
      return new VerityError(
        'ERR_VERITY_IO',
        `reading leaf hash block ${k} at byte ${position} of the hash file failed: ${(err as Error).message}`,
        { position, blockIndex: k, level: 0 },
      );
    }
    if (got < this.hbs) return this.changed(k, `only ${got} of its ${this.hbs} bytes are left in the file`);
    if (!this.matchesLevel1(k, into)) return this.changed(k, 'its digest no longer matches tree level 1');
    return undefined;
  }

  private matchesLevel1(k: number, block: Buffer): boolean {
    const { hashesPerBlock: perBlock, slotSizeBytes: slot, digestSizeBytes: size } = this.geometry;
    const at = this.geometry.levelStartBlocks[1]! * this.hbs + Math.floor(k / perBlock) * this.hbs;
    const slotAt = at + (k % perBlock) * slot;
    return this.hasher.digest(block).equals(this.held.subarray(slotAt, slotAt + size));
  }

  private changed(k: number, why: string): VerityError {
    const position = this.leafStart + k * this.hbs;
    return new VerityError(
      'ERR_VERITY_TREE_CORRUPT',
      `leaf hash block ${k} (byte position ${position} of the hash file) changed after the tree was verified: ${why}`,
      { position, blockIndex: k, level: 0 },
    );
  }

  async *hashFile(): AsyncGenerator<Uint8Array> {
    if (this.held.length > 0) yield this.held;
    const hbs = this.hbs;
    const perPiece = Math.max(1, Math.floor(HASH_FILE_PIECE_BYTES / hbs));
    let tailStart = this.held.length;
    const buf = Buffer.alloc(Math.min(perPiece * hbs, Math.max(0, this.fileSizeBytes - tailStart)));
    if (this.geometry.levels >= 2) {
      const leafBlocks = this.geometry.levelSizes[0]!;
      for (let first = 0; first < leafBlocks; first += perPiece) {
        const count = Math.min(perPiece, leafBlocks - first);
        await readFully(this.fh, buf, count * hbs, this.leafStart + first * hbs);
        for (let j = 0; j < count; j++) {
          const k = first + j;
          if (!this.matchesLevel1(k, buf.subarray(j * hbs, (j + 1) * hbs)))
            throw this.changed(k, 'its digest no longer matches tree level 1');
        }
        yield buf.subarray(0, count * hbs);
      }
      tailStart = this.geometry.hashFileSizeBytes;
    }
    // After the tree (nothing in what veritysetup writes): not covered by the tree.
    for (let at = tailStart; at < this.fileSizeBytes; at += buf.length) {
      const n = Math.min(buf.length, this.fileSizeBytes - at);
      await readFully(this.fh, buf, n, at);
      yield buf.subarray(0, n);
    }
  }
}
