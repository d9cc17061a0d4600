// Crash-safe small-file I/O, the one module for it: the agent's journal and state, and boot state
// (grubenv, the file backend's JSON). A write either leaves the old bytes or the new bytes on
// disk, never a truncated file (docs/formats.md §2.2: grub-editenv itself truncates in place,
// which a power cut can turn into an empty grubenv).
import { randomBytes } from 'node:crypto';
import { open, readFile, realpath, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export interface WriteFileAtomicOptions {
  /**
   * Mode of the written file. Default 0600: the agent's journal and state may name private URLs.
   * 'keep': an existing target's mode, 0644 for a new one (boot state).
   */
  mode?: number | 'keep';
  /** Replace a symlink's target rather than the link, as `grub-editenv create` does (boot state). */
  followSymlink?: boolean;
}

/** How boot state files are written: their mode kept, through a symlink (grubenv on the ESP). */
export const BOOT_STATE_WRITE: WriteFileAtomicOptions = { mode: 'keep', followSymlink: true };

/**
 * Replace `path` with `data`: write a temporary file in the same directory, fsync it, rename it
 * over the target, then fsync the renamed file and the directory so the rename itself survives a
 * power cut. Every byte is written explicitly, so the result is never sparse (GRUB's `save_env`
 * refuses sparse files, docs/formats.md §2.2).
 */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: WriteFileAtomicOptions = {},
): Promise<void> {
  const target = options.followSymlink
    ? await realpath(path).catch((e: unknown) => {
        if (isNotFound(e)) return path;
        throw e;
      })
    : path;
  const mode =
    options.mode !== 'keep'
      ? (options.mode ?? 0o600)
      : await stat(target).then(
          (s) => s.mode & 0o7777,
          (e: unknown) => {
            if (isNotFound(e)) return 0o644;
            throw e;
          },
        );
  const dir = dirname(target);
  const tmp = join(dir, `.${basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', mode);
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  // FAT (the ESP's grubenv): a rename moves the file's directory entry as inode metadata of the
  // renamed file, which the directory's fsync does not write; without this fsync a power cut
  // seconds later brings the old content back (found under QEMU: a markGood lost).
  const renamed = await open(target, 'r');
  try {
    await renamed.sync();
  } finally {
    await renamed.close();
  }
  // The rename is durable only once the directory entry is on disk.
  const dirHandle = await open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}

/** Read and JSON-parse `path`; undefined when it does not exist (a parse error throws SyntaxError). */
export async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  return JSON.parse(text) as unknown;
}

/**
 * Read a whole small file, refusing one larger than `maxSizeBytes` (boot state is tiny; a
 * huge file there is a misconfiguration, not something to load into memory). Returns
 * undefined when the file does not exist. Reads to end of file instead of trusting the stat
 * size: /proc/cmdline and other pseudo files report size 0.
 */
export async function readSmallFile(
  path: string,
  maxSizeBytes: number,
  onTooLarge: (sizeBytes: number) => Error,
): Promise<Uint8Array | undefined> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
  try {
    const { size } = await fh.stat();
    if (size > maxSizeBytes) throw onTooLarge(size);
    let buf = new Uint8Array(Math.min(Math.max(size, 4096), maxSizeBytes + 1));
    let filled = 0;
    for (;;) {
      if (filled === buf.length) {
        if (filled > maxSizeBytes) throw onTooLarge(filled);
        const bigger = new Uint8Array(Math.min(buf.length * 2, maxSizeBytes + 1));
        bigger.set(buf);
        buf = bigger;
      }
      const { bytesRead } = await fh.read(buf, filled, buf.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buf.subarray(0, filled);
  } finally {
    await fh.close();
  }
}

export function isNotFound(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === 'ENOENT';
}
