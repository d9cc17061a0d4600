// deltas.json of a release directory (docs/CONTRACTS.md "Deltas end to end"): the unsigned list
// of deltas beside the signed manifest — one entry per (image, sourceRootHash), each payload a
// blob under blobs/sha256/. Parsed strictly (it is read back by push and verify), written
// atomically (temp file + rename), so a reader sees the old list or the new one, never half.
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isSemver, type SlotClass } from '@abota/manifest';
import { ReleaseError } from './errors.js';
import { parseJsonFile, readSmallFile } from './release-dir.js';

export const DELTAS_JSON = 'deltas.json';
/** A few hundred bytes per entry: 1 MiB is thousands of deltas. */
export const MAX_DELTAS_JSON_BYTES = 1024 * 1024;
export const MAX_DELTAS = 4096;
const SLOTS: readonly SlotClass[] = ['rootfs', 'boot'];

export interface DeltaEntry {
  image: SlotClass;
  /** Version of the release the delta starts from. */
  sourceVersion: string;
  /** That release's dm-verity root hash of `image` (hex): what the device's active slot must hold. */
  sourceRootHash: string;
  sourceSizeBytes: number;
  /** This release's root hash of `image` (the signed manifest's). */
  targetRootHash: string;
  /** The payload blob (packages/delta FORMAT.md). */
  digest: string;
  sizeBytes: number;
}

export interface DeltasFile {
  schemaVersion: 1;
  deltas: DeltaEntry[];
}

const ENTRY_KEYS = [
  'image',
  'sourceVersion',
  'sourceRootHash',
  'sourceSizeBytes',
  'targetRootHash',
  'digest',
  'sizeBytes',
] as const;
const HEX_HASH = /^[0-9a-f]{40,128}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isSize(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
}

/** Validate a parsed deltas.json; `where` names the file in errors, with the field path. */
export function parseDeltasFile(value: unknown, where: string): DeltasFile {
  const fail = (path: string, expected: string, found: unknown): never => {
    const shown = JSON.stringify(found)?.slice(0, 80) ?? String(found);
    throw new ReleaseError(
      'ERR_RELEASE_DELTAS_INVALID',
      `${where}: ${path}: expected ${expected}, found ${shown}`,
    );
  };
  if (!isRecord(value)) return fail('(top level)', 'an object', value);
  for (const key of Object.keys(value)) {
    if (key !== 'schemaVersion' && key !== 'deltas') fail(key, 'no such field (schemaVersion, deltas)', key);
  }
  if (value['schemaVersion'] !== 1) fail('schemaVersion', '1', value['schemaVersion']);
  const list = value['deltas'];
  if (!Array.isArray(list)) return fail('deltas', 'an array', list);
  if (list.length > MAX_DELTAS) fail('deltas', `at most ${MAX_DELTAS} entries`, list.length);
  const seen = new Set<string>();
  const deltas = list.map((raw: unknown, i): DeltaEntry => {
    const at = `deltas[${i}]`;
    if (!isRecord(raw)) return fail(at, 'an object', raw);
    for (const key of Object.keys(raw)) {
      if (!(ENTRY_KEYS as readonly string[]).includes(key))
        fail(`${at}.${key}`, `no such field (${ENTRY_KEYS.join(', ')})`, key);
    }
    const { image, sourceVersion, sourceRootHash, sourceSizeBytes, targetRootHash, digest, sizeBytes } = raw;
    if (!SLOTS.includes(image as SlotClass)) fail(`${at}.image`, '"rootfs" or "boot"', image);
    if (typeof sourceVersion !== 'string' || !isSemver(sourceVersion))
      fail(`${at}.sourceVersion`, 'a semver version', sourceVersion);
    if (typeof sourceRootHash !== 'string' || !HEX_HASH.test(sourceRootHash))
      fail(`${at}.sourceRootHash`, 'lower-case hex', sourceRootHash);
    if (!isSize(sourceSizeBytes)) fail(`${at}.sourceSizeBytes`, 'a positive whole number', sourceSizeBytes);
    if (typeof targetRootHash !== 'string' || !HEX_HASH.test(targetRootHash))
      fail(`${at}.targetRootHash`, 'lower-case hex', targetRootHash);
    if (typeof digest !== 'string' || !DIGEST.test(digest)) fail(`${at}.digest`, '"sha256:<64 hex>"', digest);
    if (!isSize(sizeBytes)) fail(`${at}.sizeBytes`, 'a positive whole number', sizeBytes);
    const key = `${String(image)}/${String(sourceRootHash)}`;
    if (seen.has(key))
      fail(
        at,
        `one entry per (image, sourceRootHash); ${image} from ${sourceRootHash} is listed twice`,
        sourceVersion,
      );
    seen.add(key);
    return {
      image: image as SlotClass,
      sourceVersion: sourceVersion as string,
      sourceRootHash: sourceRootHash as string,
      sourceSizeBytes: sourceSizeBytes as number,
      targetRootHash: targetRootHash as string,
      digest: digest as string,
      sizeBytes: sizeBytes as number,
    };
  });
  return { schemaVersion: 1, deltas };
}

/** The release's deltas.json, or undefined when it has none (a release without deltas). */
export async function readDeltasFile(dir: string): Promise<DeltasFile | undefined> {
  const path = join(dir, DELTAS_JSON);
  let text: string;
  try {
    text = await readSmallFile(path, MAX_DELTAS_JSON_BYTES, 'delta list');
  } catch (err) {
    if (err instanceof ReleaseError && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
      return undefined;
    }
    if (err instanceof ReleaseError)
      throw new ReleaseError('ERR_RELEASE_DELTAS_INVALID', err.message, { cause: err });
    throw err;
  }
  let value: unknown;
  try {
    value = parseJsonFile(text, path, 'delta list');
  } catch (err) {
    throw new ReleaseError('ERR_RELEASE_DELTAS_INVALID', (err as Error).message, { cause: err });
  }
  return parseDeltasFile(value, path);
}

/** The file's text: entries in the given order, exactly the contract's fields. */
export function serializeDeltasFile(file: DeltasFile): string {
  const deltas = file.deltas.map((d) => Object.fromEntries(ENTRY_KEYS.map((k) => [k, d[k]])));
  return `${JSON.stringify({ schemaVersion: 1, deltas }, null, 2)}\n`;
}

/** Replace `dir`/deltas.json atomically: a temp file in the same directory, fsynced, renamed. */
export async function writeDeltasFileAtomic(dir: string, file: DeltasFile): Promise<void> {
  const text = serializeDeltasFile(parseDeltasFile(file, 'new delta list'));
  const temp = join(dir, `.${DELTAS_JSON}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temp, 'wx', 0o644);
    try {
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, join(dir, DELTAS_JSON));
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
