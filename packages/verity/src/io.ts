// File and block-device access for images: sizes (block devices report 0 from stat), full
// positional reads, and errors that name the file.
import type { FileHandle } from 'node:fs/promises';
import { open, readFile, stat } from 'node:fs/promises';
import { VerityError } from './errors.js';

export async function openForRead(path: string, what: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (err) {
    throw fileError(err, path, what);
  }
}

export function fileError(err: unknown, path: string, what: string): VerityError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    return new VerityError('ERR_VERITY_FILE_NOT_FOUND', `${what} ${path} does not exist`);
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new VerityError('ERR_VERITY_FILE_NOT_FOUND', `${what} ${path}: access denied`);
  }
  return new VerityError('ERR_VERITY_IO', `${what} ${path}: ${(err as Error).message}`);
}

/** Size in bytes of a regular file or a block device (from /sys, as stat says 0 for devices). */
export async function sizeOf(fh: FileHandle, path: string): Promise<number> {
  const st = await fh.stat({ bigint: true });
  if (!st.isBlockDevice()) return Number(st.size);
  const dev = st.rdev;
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  try {
    const sectors = await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
    return Number(sectors.trim()) * 512;
  } catch (err) {
    throw new VerityError(
      'ERR_VERITY_IO',
      `cannot read the size of block device ${path}: ${(err as Error).message}`,
    );
  }
}

export async function isBlockDevice(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isBlockDevice();
  } catch {
    return false;
  }
}

/** Read exactly `length` bytes at `position` or fail with ERR_VERITY_IO naming the shortfall. */
export async function readFully(
  fh: FileHandle,
  buf: Uint8Array,
  length: number,
  position: number,
): Promise<void> {
  let got = 0;
  while (got < length) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(buf, got, length - got, position + got));
    } catch (err) {
      throw new VerityError(
        'ERR_VERITY_IO',
        `read of ${length} bytes at byte ${position} failed: ${(err as Error).message}`,
      );
    }
    if (bytesRead === 0) {
      throw new VerityError(
        'ERR_VERITY_IO',
        `unexpected end of file: wanted ${length} bytes at byte ${position}, got ${got}`,
      );
    }
    got += bytesRead;
  }
}

/** Any failure as a VerityError: system errors (ENOSPC, EIO, …) become ERR_VERITY_IO naming `what`. */
export function asVerityError(err: unknown, what: string): VerityError {
  if (err instanceof VerityError) return err;
  return new VerityError('ERR_VERITY_IO', `${what}: ${(err as Error).message}`);
}
