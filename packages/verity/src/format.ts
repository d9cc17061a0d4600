// `veritysetup format` (docs/formats.md §1): stream the data file through the hasher and write the
// hash file — a new file via temp + rename, or in place when the tree goes into an existing
// file at an offset (data and tree on one device), where only the superblock and tree are written.
import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { VerityError } from './errors.js';
import type { TreeGeometry } from './geometry.js';
import { treeGeometry } from './geometry.js';
import { BlockHasher, hashUpperLevels } from './hashing.js';
import { asVerityError, fileError, openForRead, readFully, sizeOf } from './io.js';
import { defaultThreads, hashDataLevel } from './parallel.js';
import type { VerityParams } from './params.js';
import { resolveParams } from './params.js';
import { serializeSuperblock } from './superblock.js';

export interface FormatOptions {
  dataPath: string;
  hashPath: string;
  params?: Partial<VerityParams>;
  /** Called as data blocks are hashed. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** Hashing threads for the data level (default 1: see defaultThreads in parallel.ts). */
  threads?: number;
  /** Data size from which workers are used (default 32 MiB). */
  minParallelBytes?: number;
}

export interface FormatResult {
  rootHash: string;
  params: VerityParams;
  geometry: TreeGeometry;
  treeOffsetBytes: number;
  treeSizeBytes: number;
  hashFileSizeBytes: number;
  /** True when the tree was written into an existing file at the hash offset. */
  inPlace: boolean;
}

async function sameFile(a: string, b: string): Promise<boolean> {
  try {
    const [sa, sb] = await Promise.all([stat(a), stat(b)]);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}

async function existingKind(path: string): Promise<'none' | 'file' | 'block'> {
  try {
    const st = await stat(path);
    return st.isBlockDevice() ? 'block' : 'file';
  } catch {
    return 'none';
  }
}

export async function formatVerity(o: FormatOptions): Promise<FormatResult> {
  try {
    return await formatUnchecked(o);
  } catch (err) {
    throw asVerityError(err, `formatting ${o.dataPath} into ${o.hashPath}`);
  }
}

async function formatUnchecked(o: FormatOptions): Promise<FormatResult> {
  const data = await openForRead(o.dataPath, 'data file');
  try {
    const dataSize = await sizeOf(data, o.dataPath);
    const params = resolveParams(o.params ?? {}, dataSize);
    const geometry = treeGeometry(params);
    const dataBytes = params.dataBlocks * params.dataBlockSize;
    const shared = await sameFile(o.dataPath, o.hashPath);
    if (shared && (params.hashOffset < dataBytes || geometry.treeOffsetBytes < dataBytes)) {
      throw new VerityError(
        'ERR_VERITY_OVERLAP',
        `Data area overlaps with hash area: data and hash are the same file, the data area is ` +
          `${dataBytes} bytes (${params.dataBlocks} blocks) but the hash area starts at byte ` +
          `${Math.min(params.hashOffset, geometry.treeOffsetBytes)}; give --data-blocks and a --hash-offset past the data`,
      );
    }
    const kind = await existingKind(o.hashPath);
    // veritysetup writes into an existing hash device in place; for a new or replaced hash file
    // we write a fresh file (zeros in the gaps) and rename it over the target at the end.
    const inPlace = shared || kind === 'block' || (kind === 'file' && params.hashOffset > 0);
    const target = inPlace
      ? o.hashPath
      : join(dirname(o.hashPath), `.${basename(o.hashPath)}.${randomBytes(6).toString('hex')}.tmp`);
    let out: FileHandle;
    try {
      out = await open(target, inPlace ? 'r+' : 'wx+', 0o644);
    } catch (err) {
      throw fileError(err, o.hashPath, 'hash file');
    }
    let rootHash: string;
    try {
      if (!inPlace) await out.truncate(geometry.hashFileSizeBytes);
      rootHash = await writeTree(o, data, out, params, geometry, dataBytes);
      await out.datasync();
      await out.close();
      if (!inPlace) await rename(target, o.hashPath);
    } catch (err) {
      await out.close().catch(() => {});
      // No partial output: the temp file goes; an in-place target keeps what was written, as
      // with veritysetup.
      if (!inPlace) await unlink(target).catch(() => {});
      throw err instanceof VerityError ? err : fileError(err, o.hashPath, 'hash file');
    }
    return {
      rootHash,
      params,
      geometry,
      treeOffsetBytes: geometry.treeOffsetBytes,
      treeSizeBytes: geometry.treeSizeBytes,
      hashFileSizeBytes: geometry.hashFileSizeBytes,
      inPlace,
    };
  } finally {
    await data.close();
  }
}

async function writeTree(
  o: FormatOptions,
  data: FileHandle,
  out: FileHandle,
  params: VerityParams,
  geometry: TreeGeometry,
  dataBytes: number,
): Promise<string> {
  const hbs = params.hashBlockSize;
  const hasher = new BlockHasher(params.algorithm, params.hashType, params.salt);
  if (params.superblock) {
    const sb = serializeSuperblock(params);
    await out.write(sb, 0, sb.length, params.hashOffset);
  }
  if (geometry.levels === 0) {
    // One data block: no tree; the root hash is its digest (docs/formats.md §1.5, §1.8 pitfall 5).
    const block = Buffer.alloc(params.dataBlockSize);
    await readFully(data, block, block.length, 0);
    o.onProgress?.(dataBytes, dataBytes);
    return hasher.digest(block).toString('hex');
  }
  const writeAt = (level: number) => async (first: number, bytes: Uint8Array) => {
    await out.write(bytes, 0, bytes.length, (geometry.levelStartBlocks[level]! + first) * hbs);
  };
  await hashDataLevel({
    dataPath: o.dataPath,
    data,
    params,
    geometry,
    hasher,
    threads: o.threads ?? defaultThreads(),
    ...(o.minParallelBytes === undefined ? {} : { minParallelBytes: o.minParallelBytes }),
    sink: writeAt(0),
    onProgress: (done) => o.onProgress?.(done * params.dataBlockSize, dataBytes),
  });
  await hashUpperLevels({ source: out, geometry, hashBlockSize: hbs, hasher, sink: writeAt });
  const top = Buffer.alloc(hbs);
  await readFully(out, top, hbs, geometry.levelStartBlocks[geometry.levels - 1]! * hbs);
  return hasher.digest(top).toString('hex');
}
