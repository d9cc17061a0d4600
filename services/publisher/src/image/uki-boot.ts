// The boot image of a release in UKI format (`release build --boot-format uki`): a small FAT
// filesystem holding one unified kernel image (./uki.ts) at /EFI/BOOT/BOOTX64.EFI, written
// into BootEFIA or BootEFIB like any slot image (data, then its dm-verity hash area). UEFI
// firmware reads FAT, so a Boot#### entry points straight at the file in the slot's partition,
// and the removable-media path makes the disk bootable even without boot entries.
//
// The UKI's command line is signed with it, so it cannot name the slot or the disk's hash area
// offset (the same image goes to either slot, on any disk): it says `abota.slot=efi
// abota.hashoffset=layout` and the initramfs takes the slot from the partition it was loaded
// from and the offset from the layout rule (docs/image.md "Unified kernel images").
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UKI_PATH_IN_BOOT_IMAGE } from '@abota/client';
import { type BootImageOptions, releaseCmdline, sniffRootfsType } from './bootimg.js';
import { ImageError } from './errors.js';
import { buildInitramfs } from './initramfs.js';
import { requireTools, runTool } from './tools.js';
import { buildUki, type PeImage, type SecureBootKey, sbsignInPlace } from './uki.js';

export const BOOT_FORMATS = ['grub', 'uki'] as const;
export type BootFormat = (typeof BOOT_FORMATS)[number];

/** Where the UKI is inside the boot image (the UEFI removable-media path); the agent copies it from there. */
export { UKI_PATH_IN_BOOT_IMAGE };

export interface UkiBootImageOptions extends BootImageOptions {
  stub: string;
  /** Console words for the signed command line, e.g. "console=ttyS0,115200". */
  console: string;
  /** Sign the UKI for Secure Boot (sbsign), else it is left unsigned. */
  sign?: SecureBootKey | undefined;
}

export interface UkiBootImageSummary {
  sizeBytes: number;
  ukiBytes: number;
  initramfsBytes: number;
  kernelVersion: string;
  modules: string[];
  cmdline: string;
  signed: boolean;
  sections: { name: string; virtualAddress: number; sizeBytes: number }[];
}

export async function checkUkiInputs(stub: string, sign: SecureBootKey | undefined): Promise<void> {
  await requireTools([
    'objcopy',
    'mkfs.vfat',
    'mmd',
    'mcopy',
    ...(sign ? (['sbsign', 'sbverify'] as const) : []),
  ]);
  await stat(stub).catch(() => {
    throw new ImageError(
      'ERR_IMAGE_TOOL_MISSING',
      `--uki-stub ${stub} not found: apt-get install systemd-boot-efi (or give the stub's path)`,
    );
  });
}

/** The .osrel section: what systemd-boot shows for a type #2 entry. */
export function ukiOsRelease(product: string, version: string): string {
  return [
    'NAME="abota"',
    'ID=abota',
    `PRETTY_NAME="${product} ${version}"`,
    `VERSION_ID=${version}`,
    `IMAGE_ID=${product}`,
    `IMAGE_VERSION=${version}`,
    '',
  ].join('\n');
}

const MIB = 1024 * 1024;

/** A FAT image just large enough for `file` at `path`, reproducible for a given epoch. */
async function fatImageWith(file: string, out: string, epoch: number): Promise<number> {
  const bytes = (await stat(file)).size;
  // FAT16 with 2 KiB clusters: tables, root directory and a 1/32 margin fit in the extra MiB.
  const sizeBytes = Math.ceil((bytes * 1.03 + MIB) / MIB) * MIB;
  const fh = await open(out, 'w');
  await fh.truncate(sizeBytes);
  await fh.close();
  const env = { SOURCE_DATE_EPOCH: String(epoch), MTOOLS_SKIP_CHECK: '1' };
  await runTool('mkfs.vfat', ['--invariant', '-i', '41b07a01', '-n', 'ABOTA-UKI', out], { env });
  await runTool('mmd', ['-i', out, '::/EFI', '::/EFI/BOOT'], { env });
  await runTool('mcopy', ['-i', out, file, `::${UKI_PATH_IN_BOOT_IMAGE}`], { env });
  return sizeBytes;
}

export async function buildUkiBootImage(o: UkiBootImageOptions): Promise<UkiBootImageSummary> {
  const fstype = await sniffRootfsType(o.rootfsPath);
  const cmdline =
    `${releaseCmdline(o.rootfs, fstype)} abota.slot=efi abota.hashoffset=layout ${o.console}`.trim();
  const initramfs = await buildInitramfs(o.modulesDir, o.epoch);
  const uki = join(o.scratch, 'abota.efi');
  const pe: PeImage = await buildUki({
    stub: o.stub,
    kernel: o.kernel,
    initrd: initramfs.bytes,
    cmdline,
    osRelease: ukiOsRelease(o.product, o.version),
    scratch: o.scratch,
    out: uki,
  });
  if (o.sign !== undefined) await sbsignInPlace(uki, o.sign);
  const sizeBytes = await fatImageWith(uki, o.out, o.epoch);
  return {
    sizeBytes,
    ukiBytes: (await readFile(uki)).length,
    initramfsBytes: initramfs.bytes.length,
    kernelVersion: initramfs.modules.version,
    modules: initramfs.modules.load.map((rel) => rel.split('/').pop()!),
    cmdline,
    signed: o.sign !== undefined,
    sections: pe.sections.map((s) => ({
      name: s.name,
      virtualAddress: s.virtualAddress,
      sizeBytes: s.virtualSize,
    })),
  };
}
