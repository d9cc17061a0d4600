// What makes an image reproducible: one timestamp (SOURCE_DATE_EPOCH, default 0) for every
// file and superblock, and UUIDs derived from a name instead of drawn at random.
import { createHash } from 'node:crypto';
import { readdir, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageError } from './errors.js';

/** SOURCE_DATE_EPOCH from the environment (whole seconds), 0 when unset. */
export function sourceDateEpoch(env: NodeJS.ProcessEnv = process.env): number {
  const text = env['SOURCE_DATE_EPOCH'];
  if (text === undefined || text === '') return 0;
  if (!/^\d{1,11}$/.test(text)) {
    throw new ImageError('ERR_IMAGE_USAGE', `SOURCE_DATE_EPOCH=${text}: expected whole seconds since 1970`);
  }
  return Number(text);
}

/** A version-4-shaped UUID that is a function of `name` (same name → same UUID). */
export function stableUuid(name: string): string {
  const h = createHash('sha256').update(name).digest();
  h[6] = (h[6]! & 0x0f) | 0x40;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

export interface TreeEntry {
  /** Path inside the tree, starting with '/'. */
  path: string;
  isDirectory: boolean;
  sizeBytes: number;
}

/** Every entry under `root` in sorted order (the root itself excluded). */
export async function walkTree(root: string, prefix = ''): Promise<TreeEntry[]> {
  const out: TreeEntry[] = [];
  const names = (await readdir(join(root, prefix))).sort();
  for (const name of names) {
    const path = `${prefix}/${name}`;
    const info = await lstat(join(root, path));
    out.push({ path, isDirectory: info.isDirectory(), sizeBytes: info.isFile() ? info.size : 0 });
    if (info.isDirectory()) out.push(...(await walkTree(root, path)));
  }
  return out;
}

export const BLOCK = 4096;

export function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}
