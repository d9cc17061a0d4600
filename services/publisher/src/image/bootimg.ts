// The boot image of a release: an ext4 image GRUB reads, holding `vmlinuz`, `initrd.img` (./initramfs.ts)
// and `abota/boot.cfg`, the GRUB fragment that sets the kernel command line with the dm-verity
// parameters and root hash of the rootfs of the *same* release. Slot-independent: the ESP's
// grub.cfg adds the slot, the hash area offset and the console (docs/image.md).
import { copyFile, mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ImageManifest } from '@abota/manifest';
import { ImageError } from './errors.js';
import { makeExt4 } from './ext4.js';
import { buildInitramfs } from './initramfs.js';
import { resolveModules } from './kmod.js';
import { requireTools } from './tools.js';
import type { RootfsType } from './rootfs.js';

export interface BootImageOptions {
  kernel: string;
  modulesDir: string;
  /** The rootfs image file (its filesystem type is read from its superblock). */
  rootfsPath: string;
  rootfs: ImageManifest;
  product: string;
  version: string;
  epoch: number;
  /** Scratch directory; the image is written to `out`. */
  scratch: string;
  out: string;
}

export interface BootImageSummary {
  sizeBytes: number;
  initramfsBytes: number;
  kernelVersion: string;
  modules: string[];
  cmdline: string;
}

/** The filesystem in a rootfs image, from its magic number. */
export async function sniffRootfsType(path: string): Promise<RootfsType> {
  const fh = await open(path, 'r');
  const head = Buffer.alloc(2048);
  try {
    await fh.read(head, 0, head.length, 0);
  } finally {
    await fh.close();
  }
  if (head.readUInt32LE(1024) === 0xe0f5e1e2) return 'erofs';
  if (head.toString('latin1', 0, 4) === 'hsqs') return 'squashfs';
  if (head.readUInt16LE(1024 + 0x38) === 0xef53) return 'ext4';
  throw new ImageError(
    'ERR_IMAGE_USAGE',
    `${path}: not an erofs, squashfs or ext4 image, so no boot image can mount it (build it with abota image rootfs)`,
  );
}

/** The kernel command line words the release fixes (verity of its rootfs, panic → reboot). */
export function releaseCmdline(rootfs: ImageManifest, fstype: RootfsType): string {
  const v = rootfs.verity;
  if (v.dataBlockSize !== 4096 || v.hashBlockSize !== 4096 || !v.superblock || v.hashType !== 1) {
    throw new ImageError(
      'ERR_IMAGE_USAGE',
      'the boot image supports verity format 1 with a superblock and 4096-byte blocks only',
    );
  }
  return [
    `abota.roothash=${v.rootHash}`,
    `abota.salt=${v.salt === '' ? '-' : v.salt}`,
    `abota.datablocks=${v.dataBlocks}`,
    `abota.hashalg=${v.algorithm}`,
    `abota.fstype=${fstype}`,
    'panic=5',
  ].join(' ');
}

/**
 * Everything about the boot inputs that can be checked in a moment (the kernel is a bzImage,
 * the modules the initramfs needs are there, the tools are installed), so `release build`
 * fails before hashing and compressing the rootfs.
 */
export async function checkBootInputs(kernel: string, modulesDir: string): Promise<void> {
  const head = Buffer.alloc(4);
  try {
    const fh = await open(kernel, 'r');
    try {
      await fh.read(head, 0, 4, 0x202);
    } finally {
      await fh.close();
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ImageError(
      'ERR_IMAGE_KERNEL_UNSUITABLE',
      `--kernel ${kernel}: ${code === 'ENOENT' ? 'not found' : (err as Error).message}`,
    );
  }
  if (head.toString('latin1') !== 'HdrS') {
    throw new ImageError(
      'ERR_IMAGE_KERNEL_UNSUITABLE',
      `--kernel ${kernel} is not an x86 bzImage (no "HdrS" boot header)`,
    );
  }
  await requireTools(['busybox', 'dmsetup', 'nft', 'ldd', 'mkfs.ext4', 'debugfs']);
  await resolveModules(modulesDir);
}

export async function buildBootImage(o: BootImageOptions): Promise<BootImageSummary> {
  const fstype = await sniffRootfsType(o.rootfsPath);
  const cmdline = releaseCmdline(o.rootfs, fstype);
  const initramfs = await buildInitramfs(o.modulesDir, o.epoch);
  const tree = join(o.scratch, 'boot-tree');
  await mkdir(join(tree, 'abota'), { recursive: true });
  await copyFile(o.kernel, join(tree, 'vmlinuz'));
  await writeFile(join(tree, 'initrd.img'), initramfs.bytes);
  const cfg = [
    `# abota boot config: ${o.product} ${o.version}, kernel ${initramfs.modules.version}.`,
    '# Sourced by the ESP grub.cfg, which adds abota.slot, abota.hashoffset and the console.',
    `set abota_version="${o.version}"`,
    `set abota_cmdline="${cmdline}"`,
    '',
  ].join('\n');
  await writeFile(join(tree, 'abota', 'boot.cfg'), cfg);
  const sizeBytes = await makeExt4({
    dir: tree,
    out: o.out,
    epoch: o.epoch,
    uuidName: `abota-boot:${o.product}:${o.version}`,
    label: 'abota-boot',
    journal: false,
  });
  return {
    sizeBytes,
    initramfsBytes: initramfs.bytes.length,
    kernelVersion: initramfs.modules.version,
    modules: initramfs.modules.load.map((rel) => rel.split('/').pop()!),
    cmdline,
  };
}
