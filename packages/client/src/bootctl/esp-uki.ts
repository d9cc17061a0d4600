// systemd-boot mode's install step: a slot's unified kernel image copied out of the slot's
// verified boot image (a FAT image in BootEFIA/B) onto the ESP as a Boot Loader Specification
// type #2 entry. Crash-safe: the copy is written under a name systemd-boot ignores, made durable,
// and renamed to `<name>+0.efi` — an entry with no tries left, listed last and never chosen while
// the running slot's entry is the default — so a power cut at any point leaves the old entry set
// bootable; setTryOnce then gives the entry its tries. README "The `uefi` backend".
import { open, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ClientError } from '../errors.js';
import type { VerifiedImageReader } from './bootcontrol.js';
import { type FatFile, findFatFile } from './fat.js';

/** Where the UKI is inside a release's UKI boot image (the UEFI removable-media path). */
export const UKI_PATH_IN_BOOT_IMAGE = '/EFI/BOOT/BOOTX64.EFI';

/** Bytes copied per read of the verified image (each read checks whole 4 KiB blocks). */
const COPY_CHUNK_BYTES = 1024 * 1024;

export type EspStep = 'esp-write' | 'esp-rename' | 'esp-unlink';

export interface EspUkiInstall {
  /** <ESP>/EFI/Linux */
  linuxDir: string;
  /** The slot's UKI name without counter and `.efi` (abota-b). */
  stem: string;
  /** The slot's files in linuxDir now (any counter). */
  slotFiles: string[];
  image: VerifiedImageReader;
  /** Names the image in messages (slot B boot image /dev/disk/by-partlabel/BootEFIB). */
  where: string;
  beforeStep?: ((step: EspStep, target: string) => void | Promise<void>) | undefined;
}

/** The temporary name of a copy: not `*.efi`, so systemd-boot never lists it. */
export function ukiTempName(stem: string): string {
  return `.${stem}.efi.partial`;
}

/**
 * Copy the UKI of `o.image` to `<linuxDir>/<stem>+0.efi`: the slot's old names removed (they
 * are marked bad before an install), the copy written to the temp name, fsynced, renamed, and
 * the file and the directory fsynced. Returns the name it was installed as.
 */
export async function installUkiOnEsp(o: EspUkiInstall): Promise<string> {
  const uki = await findFatFile(o.image, UKI_PATH_IN_BOOT_IMAGE, o.where);
  const temp = ukiTempName(o.stem);
  const target = `${o.stem}+0.efi`;
  const present = [...o.slotFiles];
  if (await exists(join(o.linuxDir, temp))) present.push(temp);
  await refuseCrossLinked(o.linuxDir, present);
  for (const file of present) {
    await o.beforeStep?.('esp-unlink', file);
    await espIo(`remove ${file}`, o.linuxDir, () => unlink(join(o.linuxDir, file)));
  }
  await syncDir(o.linuxDir);
  await copyTo(o, uki, join(o.linuxDir, temp));
  await o.beforeStep?.('esp-rename', `${temp} -> ${target}`);
  await espIo(`rename ${temp} to ${target}`, o.linuxDir, () =>
    rename(join(o.linuxDir, temp), join(o.linuxDir, target)),
  );
  // On FAT the new name is metadata of the renamed file: fsync it, then the directory.
  await syncFile(join(o.linuxDir, target));
  await syncDir(o.linuxDir);
  return target;
}

async function copyTo(o: EspUkiInstall, uki: FatFile, path: string): Promise<void> {
  const fh = await espIo(`create ${path}`, o.linuxDir, () => open(path, 'w', 0o600));
  try {
    let at = 0;
    for (const e of uki.extents) {
      for (let done = 0; done < e.lengthBytes; ) {
        const n = Math.min(COPY_CHUNK_BYTES, e.lengthBytes - done);
        const bytes = await o.image.read(e.offsetBytes + done, n);
        await o.beforeStep?.('esp-write', `${path} at ${at}`);
        await espIo(`write ${path}`, o.linuxDir, () => fh.write(bytes, 0, n, at));
        done += n;
        at += n;
      }
    }
    await espIo(`fsync ${path}`, o.linuxDir, () => fh.sync());
  } finally {
    await fh.close();
  }
}

/**
 * A rename cut short on FAT leaves two names on one cluster chain; removing both would free the
 * chain twice. Two of the slot's names with the same bytes are taken for that and refused.
 */
async function refuseCrossLinked(dir: string, files: string[]): Promise<void> {
  if (files.length < 2) return;
  const sizes = await Promise.all(files.map(async (f) => (await stat(join(dir, f))).size));
  for (let i = 0; i < files.length; i++) {
    for (let j = i + 1; j < files.length; j++) {
      if (sizes[i] !== sizes[j] || !(await sameBytes(join(dir, files[i]!), join(dir, files[j]!)))) continue;
      throw new ClientError(
        'ERR_BOOTCTL_ESP_DUPLICATE',
        `${dir} has ${files[i]} and ${files[j]} with the same bytes: a rename cut short on FAT can leave two names on ` +
          'one cluster chain; run fsck.fat on the ESP, then delete the extra name',
      );
    }
  }
}

async function sameBytes(a: string, b: string): Promise<boolean> {
  const [x, y] = [await open(a, 'r'), await open(b, 'r')];
  try {
    const bx = Buffer.alloc(COPY_CHUNK_BYTES);
    const by = Buffer.alloc(COPY_CHUNK_BYTES);
    for (let at = 0; ; at += COPY_CHUNK_BYTES) {
      const [{ bytesRead: n }, { bytesRead: m }] = [
        await x.read(bx, 0, bx.length, at),
        await y.read(by, 0, by.length, at),
      ];
      if (n !== m || !bx.subarray(0, n).equals(by.subarray(0, m))) return false;
      if (n === 0) return true;
    }
  } finally {
    await x.close();
    await y.close();
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function syncFile(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  await syncFile(dir);
}

/** An ESP write that failed (full, read-only, gone): the install fails with where and why. */
async function espIo<T>(what: string, dir: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (e) {
    throw new ClientError(
      'ERR_BOOTCTL_ESP_IO',
      `cannot ${what} on the ESP (${dir}): ${(e as Error).message}`,
      {
        cause: e,
      },
    );
  }
}
