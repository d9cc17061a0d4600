// `abota verity format|verify|dump`: veritysetup-compatible dm-verity commands (docs/formats.md §1).
// Text output mirrors veritysetup's ("Root hash:\t<hex>"); exit statuses too (0 good,
// 1 bad header / root hash / short device, 2 data or tree corrupted, 4 missing device).
import type { TreeOptions } from '../cli/flags.js';
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { TreeGeometry, VerityParams } from '@abota/verity';
import {
  formatVerity,
  parseSaltHex,
  readParamsFromHashFile,
  saltToHex,
  treeGeometry,
  VerityError,
  verifyVerity,
} from '@abota/verity';
import type { Progress } from '../output.js';
import { printJson, startProgress } from '../output.js';

function threadsFrom(o: TreeOptions): { threads?: number } {
  const threads = integer('threads', o.threads);
  if (threads === undefined) return {};
  if (threads < 1 || threads > 64) {
    throw new VerityError('ERR_VERITY_INVALID_PARAMS', `--threads must be from 1 to 64, got ${threads}`);
  }
  return { threads };
}

function integer(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new VerityError(
      'ERR_VERITY_INVALID_PARAMS',
      `--${name} must be a non-negative integer, got "${text}"`,
    );
  }
  return Number(text);
}

function paramsFromOptions(o: TreeOptions): Partial<VerityParams> {
  const p: Partial<VerityParams> = { superblock: o.superblock };
  const hashType = integer('format', o.format);
  if (hashType !== undefined) {
    if (hashType !== 0 && hashType !== 1) {
      throw new VerityError('ERR_VERITY_INVALID_PARAMS', `--format must be 0 or 1, got ${hashType}`);
    }
    p.hashType = hashType;
  }
  if (o.hash !== undefined) p.algorithm = o.hash;
  if (o.salt !== undefined) p.salt = parseSaltHex(o.salt);
  if (o.uuid !== undefined) p.uuid = o.uuid;
  const fields = [
    ['data-block-size', 'dataBlockSize', o.dataBlockSize],
    ['hash-block-size', 'hashBlockSize', o.hashBlockSize],
    ['data-blocks', 'dataBlocks', o.dataBlocks],
    ['hash-offset', 'hashOffset', o.hashOffset],
  ] as const;
  for (const [name, key, text] of fields) {
    const value = integer(name, text);
    if (value !== undefined) p[key] = value;
  }
  return p;
}

function paramsJson(p: VerityParams, g: TreeGeometry): Record<string, unknown> {
  return {
    hashType: p.hashType,
    algorithm: p.algorithm,
    dataBlockSize: p.dataBlockSize,
    hashBlockSize: p.hashBlockSize,
    dataBlocks: p.dataBlocks,
    hashBlocks: g.treeBlocks,
    salt: saltToHex(p.salt),
    hashOffset: p.hashOffset,
    superblock: p.superblock,
    ...(p.uuid === undefined ? {} : { uuid: p.uuid }),
    treeStartBlock: g.treeStartBlock,
    treeOffsetBytes: g.treeOffsetBytes,
    treeSizeBytes: g.treeSizeBytes,
    hashFileSizeBytes: g.hashFileSizeBytes,
  };
}

/** The header block veritysetup prints for format and dump (same labels and tabs). */
function headerText(hashFile: string, p: VerityParams, g: TreeGeometry, rootHash?: string): string {
  const lines = [
    `VERITY header information for ${hashFile}`,
    `UUID:            \t${p.superblock ? (p.uuid ?? '') : ''}`,
    `Hash type:       \t${p.hashType}`,
    `Data blocks:     \t${p.dataBlocks}`,
    `Data block size: \t${p.dataBlockSize}`,
    `Hash blocks:     \t${g.treeBlocks}`,
    `Hash block size: \t${p.hashBlockSize}`,
    `Hash algorithm:  \t${p.algorithm}`,
    `Salt:            \t${saltToHex(p.salt)}`,
  ];
  if (rootHash !== undefined) lines.push(`Root hash:      \t${rootHash}`);
  // veritysetup prints the computed hash device size only when the hash area starts at 0.
  if (p.hashOffset === 0) lines.push(`Hash device size: \t${g.hashFileSizeBytes} [bytes]`);
  return `${lines.join('\n')}\n`;
}

async function writeTextAtomic(path: string, text: string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(text);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw new VerityError('ERR_VERITY_IO', `cannot write root hash file ${path}: ${(err as Error).message}`);
  }
}

async function readRootHashFile(path: string): Promise<string> {
  try {
    // Bounded: a root hash is at most 128 hex digits; anything bigger is not one.
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(1024);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      return buf.subarray(0, bytesRead).toString('utf8').trim();
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw new VerityError('ERR_VERITY_FILE_NOT_FOUND', `root hash file ${path}: ${(err as Error).message}`);
  }
}

function progressReporter(
  label: string,
  json: boolean,
): { onProgress: (done: number, total: number) => void; stop: () => void } {
  let bar: Progress | undefined;
  return {
    onProgress(done, total) {
      bar ??= startProgress(label, total, { json });
      bar.update(done);
    },
    stop() {
      bar?.stop();
    },
  };
}

/** `format` */
export async function format(dataPath: string, hashPath: string, o: TreeOptions): Promise<void> {
  const json = o.json === true;
  const progress = progressReporter('Hashing', json);
  let result: Awaited<ReturnType<typeof formatVerity>>;
  try {
    result = await formatVerity({
      dataPath,
      hashPath,
      params: paramsFromOptions(o),
      ...threadsFrom(o),
      onProgress: progress.onProgress,
    });
  } finally {
    progress.stop();
  }
  if (o.rootHashFile !== undefined) await writeTextAtomic(o.rootHashFile, result.rootHash);
  if (json) {
    printJson({
      ok: true,
      hashFile: hashPath,
      rootHash: result.rootHash,
      inPlace: result.inPlace,
      ...paramsJson(result.params, result.geometry),
    });
  } else {
    process.stdout.write(headerText(hashPath, result.params, result.geometry, result.rootHash));
  }
}

/** `verify` */
export async function verify(
  dataPath: string,
  hashPath: string,
  rootHashArg: string | undefined,
  o: TreeOptions,
): Promise<void> {
  const json = o.json === true;
  let rootHash = rootHashArg;
  if (rootHash === undefined) {
    if (o.rootHashFile === undefined) {
      throw new VerityError(
        'ERR_VERITY_INVALID_ROOT_HASH',
        'give the root hash as ROOTHASH or with --root-hash-file',
      );
    }
    rootHash = await readRootHashFile(o.rootHashFile);
  }
  const progress = progressReporter('Verifying', json);
  let result: Awaited<ReturnType<typeof verifyVerity>>;
  try {
    result = await verifyVerity({
      dataPath,
      hashPath,
      rootHash,
      params: paramsFromOptions(o),
      ...threadsFrom(o),
      onProgress: progress.onProgress,
    });
  } finally {
    progress.stop();
  }
  if (json) {
    printJson({
      ok: true,
      verified: true,
      rootHash: rootHash.toLowerCase(),
      ...paramsJson(result.params, result.geometry),
    });
  } else {
    process.stdout.write(
      `Verification succeeded: data, hash tree and root hash ${rootHash.toLowerCase()} match.\n`,
    );
  }
}

/** `dump` */
export async function dump(hashPath: string, o: { hashOffset?: string; json?: boolean }): Promise<void> {
  const hashOffset = integer('hash-offset', o.hashOffset) ?? 0;
  if (hashOffset % 512 !== 0) {
    throw new VerityError(
      'ERR_VERITY_INVALID_HASH_OFFSET',
      `hash offset ${hashOffset} is not a multiple of 512 bytes`,
    );
  }
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(hashPath, 'r');
  } catch (err) {
    throw new VerityError('ERR_VERITY_FILE_NOT_FOUND', `hash file ${hashPath}: ${(err as Error).message}`);
  }
  let params: VerityParams;
  try {
    params = await readParamsFromHashFile(fh, hashPath, hashOffset);
  } finally {
    await fh.close();
  }
  const geometry = treeGeometry(params);
  if (o.json === true) printJson({ ok: true, hashFile: hashPath, ...paramsJson(params, geometry) });
  else process.stdout.write(headerText(hashPath, params, geometry));
}
