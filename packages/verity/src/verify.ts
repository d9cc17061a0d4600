// `veritysetup verify` (docs/formats.md §1.6): recompute every level from the leaves up, compare
// with the hash file byte for byte (digests and zero padding), then the root hash.
import type { FileHandle } from 'node:fs/promises';
import { VerityError } from './errors.js';
import type { TreeGeometry } from './geometry.js';
import { treeGeometry } from './geometry.js';
import { BlockHasher, hashUpperLevels } from './hashing.js';
import { asVerityError, openForRead, readFully, sizeOf } from './io.js';
import { defaultThreads, hashDataLevel } from './parallel.js';
import type { VerityParams } from './params.js';
import { digestSizeOf, resolveParams, SUPERBLOCK_SIZE } from './params.js';
import { parseSuperblock } from './superblock.js';
import { firstDifference, mismatchError } from './tree-check.js';

export interface VerifyOptions {
  dataPath: string;
  hashPath: string;
  /** The trusted root hash, hex. */
  rootHash: string;
  /**
   * With a superblock (the default) only `hashOffset` is used and the rest comes from the
   * superblock, as veritysetup does. With `superblock: false` these are the format parameters
   * (salt defaults to none, data blocks to the whole data file).
   */
  params?: Partial<VerityParams>;
  /** Hashing threads for the data level (default 1: see defaultThreads in parallel.ts). */
  threads?: number;
  minParallelBytes?: number;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface VerifyResult {
  params: VerityParams;
  geometry: TreeGeometry;
}

/** Parse a root hash given as hex; veritysetup: "Invalid root hash string specified." */
export function parseRootHash(rootHash: string, algorithm: string): Buffer {
  const size = digestSizeOf(algorithm);
  if (!/^[0-9a-fA-F]*$/.test(rootHash) || rootHash.length !== size * 2) {
    throw new VerityError(
      'ERR_VERITY_INVALID_ROOT_HASH',
      `invalid root hash "${rootHash}": expected ${size * 2} hex digits for ${algorithm}`,
    );
  }
  return Buffer.from(rootHash, 'hex');
}

/** Read the superblock at `hashOffset` and return the parameters it describes. */
export async function readParamsFromHashFile(
  hash: FileHandle,
  hashPath: string,
  hashOffset: number,
): Promise<VerityParams> {
  const sb = Buffer.alloc(SUPERBLOCK_SIZE);
  const { bytesRead } = await hash.read(sb, 0, SUPERBLOCK_SIZE, hashOffset);
  const fields = parseSuperblock(sb.subarray(0, bytesRead), `${hashPath} at byte ${hashOffset}`);
  return { ...fields, hashOffset, superblock: true };
}

/** Throws VerityError (exit 1: header / root hash / short file; exit 2: data or tree corrupted). */
export async function verifyVerity(o: VerifyOptions): Promise<VerifyResult> {
  try {
    return await verifyUnchecked(o);
  } catch (err) {
    throw asVerityError(err, `verifying ${o.dataPath} against ${o.hashPath}`);
  }
}

async function verifyUnchecked(o: VerifyOptions): Promise<VerifyResult> {
  const hash = await openForRead(o.hashPath, 'hash file');
  try {
    const data = await openForRead(o.dataPath, 'data file');
    try {
      const dataSize = await sizeOf(data, o.dataPath);
      const hashOffset = o.params?.hashOffset ?? 0;
      let params: VerityParams;
      if (o.params?.superblock === false) {
        params = resolveParams({ salt: new Uint8Array(0), ...o.params, superblock: false }, dataSize);
      } else {
        if (hashOffset % 512 !== 0) resolveParams({ hashOffset }, dataSize);
        params = await readParamsFromHashFile(hash, o.hashPath, hashOffset);
      }
      const expectedRoot = parseRootHash(o.rootHash, params.algorithm);
      const geometry = treeGeometry(params);
      const dataBytes = params.dataBlocks * params.dataBlockSize;
      if (dataSize < dataBytes) {
        throw new VerityError(
          'ERR_VERITY_DATA_TOO_SHORT',
          `Verification of data area failed: ${o.dataPath} is ${dataSize} bytes but ${params.dataBlocks} data blocks need ${dataBytes}`,
        );
      }
      const hashSize = await sizeOf(hash, o.hashPath);
      const treeEnd = geometry.levels > 0 ? geometry.hashFileSizeBytes : 0;
      if (hashSize < treeEnd) {
        throw new VerityError(
          'ERR_VERITY_HASH_TOO_SHORT',
          `Verification of data area failed: ${o.hashPath} is ${hashSize} bytes but the hash tree ends at byte ${treeEnd}`,
        );
      }
      await checkTree(o, data, hash, params, geometry, expectedRoot, dataBytes);
      return { params, geometry };
    } finally {
      await data.close();
    }
  } finally {
    await hash.close();
  }
}

async function checkTree(
  o: VerifyOptions,
  data: FileHandle,
  hash: FileHandle,
  params: VerityParams,
  geometry: TreeGeometry,
  expectedRoot: Buffer,
  dataBytes: number,
): Promise<void> {
  const hbs = params.hashBlockSize;
  const hasher = new BlockHasher(params.algorithm, params.hashType, params.salt);
  // Chunks of a level may arrive out of order (workers); keep the earliest mismatch.
  let first: { level: number; block: number; byte: number } | undefined;
  const compareAt = (level: number) => async (firstBlock: number, expected: Uint8Array) => {
    const actual = Buffer.alloc(expected.length);
    await readFully(hash, actual, actual.length, (geometry.levelStartBlocks[level]! + firstBlock) * hbs);
    const at = firstDifference(expected, actual);
    if (at < 0) return;
    const block = firstBlock + Math.floor(at / hbs);
    if (first === undefined || block < first.block || (block === first.block && at % hbs < first.byte)) {
      first = { level, block, byte: at % hbs };
    }
  };
  const failIfMismatch = (): void => {
    if (first !== undefined) throw mismatchError(params, geometry, first.level, first.block, first.byte);
  };
  let root: Buffer;
  if (geometry.levels === 0) {
    const block = Buffer.alloc(params.dataBlockSize);
    await readFully(data, block, block.length, 0);
    root = hasher.digest(block);
    o.onProgress?.(dataBytes, dataBytes);
  } else {
    await hashDataLevel({
      dataPath: o.dataPath,
      data,
      params,
      geometry,
      hasher,
      threads: o.threads ?? defaultThreads(),
      ...(o.minParallelBytes === undefined ? {} : { minParallelBytes: o.minParallelBytes }),
      sink: compareAt(0),
      onProgress: (done) => o.onProgress?.(done * params.dataBlockSize, dataBytes),
    });
    failIfMismatch();
    await hashUpperLevels({
      source: hash,
      geometry,
      hashBlockSize: hbs,
      hasher,
      sink: compareAt,
      afterLevel: failIfMismatch,
    });
    const top = Buffer.alloc(hbs);
    await readFully(hash, top, hbs, geometry.levelStartBlocks[geometry.levels - 1]! * hbs);
    root = hasher.digest(top);
  }
  if (!root.equals(expectedRoot)) {
    throw new VerityError(
      'ERR_VERITY_ROOT_HASH_MISMATCH',
      `Verification of root hash failed: the tree's root hash is ${root.toString('hex')}, expected ${expectedRoot.toString('hex')}`,
    );
  }
}
