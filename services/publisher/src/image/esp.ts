// The EFI system partition: a FAT image (mkfs.vfat + mtools, no loop device) holding GRUB for
// x86_64 UEFI at /EFI/BOOT/BOOTX64.EFI and the grubenv at /EFI/abota/grubenv.
// grub-mkimage rather than grub-mkstandalone: mkstandalone tars its memdisk with the current
// time (two runs differ); here the memdisk tar is written with fixed metadata, so the same
// grub.cfg gives the same BOOTX64.EFI.
import { mkdir, open, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GRUB_SAVED_VARIABLES, createGrubEnv, setGrubEnv } from '@abota/client';
import { ImageError } from './errors.js';
import { ESP_GRUBENV_PATH } from './grubcfg.js';
import { runTool } from './tools.js';

export const GRUB_EFI_DIR = '/usr/lib/grub/x86_64-efi';
/** Modules built into BOOTX64.EFI: what grubcfg.ts's script uses, nothing more. */
const GRUB_MODULES = [
  'part_gpt',
  'fat',
  'ext2',
  'normal',
  'linux',
  'configfile',
  'loadenv',
  'test',
  'regexp',
  'echo',
  'sleep',
  'reboot',
  'memdisk',
  'tar',
  'efi_gop',
];

export async function assertGrubEfi(): Promise<void> {
  if (!(await stat(join(GRUB_EFI_DIR, 'linux.mod')).catch(() => undefined))) {
    throw new ImageError(
      'ERR_IMAGE_TOOL_MISSING',
      `GRUB's x86_64-efi modules are not installed (${GRUB_EFI_DIR}): apt-get install grub-efi-amd64-bin`,
    );
  }
}

/** The grubenv of a new disk: the variables the agent's GrubBootControl writes, in its format. */
export function initialGrubEnv(slotBProvisioned: boolean): Uint8Array {
  const values: Record<(typeof GRUB_SAVED_VARIABLES)[number], string> = {
    A_TRY: '0',
    A_OK: '1',
    B_TRY: '0',
    B_OK: slotBProvisioned ? '1' : '0',
    ORDER: 'A B',
  };
  return setGrubEnv(
    createGrubEnv(),
    GRUB_SAVED_VARIABLES.map((name) => [name, values[name]] as const),
  );
}

async function grubEfi(scratch: string, cfg: string, epoch: number): Promise<string> {
  const memdisk = join(scratch, 'memdisk');
  await mkdir(join(memdisk, 'boot', 'grub'), { recursive: true });
  await writeFile(join(memdisk, 'boot', 'grub', 'grub.cfg'), cfg);
  const tar = join(scratch, 'memdisk.tar');
  await runTool('tar', [
    '-C',
    memdisk,
    '--sort=name',
    `--mtime=@${epoch}`,
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '--format=ustar',
    '-cf',
    tar,
    'boot',
  ]);
  const efi = join(scratch, 'BOOTX64.EFI');
  await runTool('grub-mkimage', [
    '-O',
    'x86_64-efi',
    '-d',
    GRUB_EFI_DIR,
    '-o',
    efi,
    '-p',
    '(memdisk)/boot/grub',
    '-m',
    tar,
    ...GRUB_MODULES,
  ]);
  return efi;
}

export interface EspOptions {
  out: string;
  sizeBytes: number;
  grubCfg: string;
  slotBProvisioned: boolean;
  epoch: number;
  scratch: string;
}

export async function buildEsp(o: EspOptions): Promise<void> {
  const efi = await grubEfi(o.scratch, o.grubCfg, o.epoch);
  const envFile = join(o.scratch, 'grubenv');
  await writeFile(envFile, initialGrubEnv(o.slotBProvisioned));
  const fh = await open(o.out, 'w');
  await fh.truncate(o.sizeBytes);
  await fh.close();
  // mkfs.fat --invariant and mtools read SOURCE_DATE_EPOCH: fixed serial, times and layout.
  const env = { SOURCE_DATE_EPOCH: String(o.epoch), MTOOLS_SKIP_CHECK: '1' };
  await runTool('mkfs.vfat', ['--invariant', '-i', '41b07a00', '-n', 'ESP', o.out], { env });
  await runTool('mmd', ['-i', o.out, '::/EFI', '::/EFI/BOOT', '::/EFI/abota'], { env });
  await runTool('mcopy', ['-i', o.out, efi, '::/EFI/BOOT/BOOTX64.EFI'], { env });
  await runTool('mcopy', ['-i', o.out, envFile, `::${ESP_GRUBENV_PATH}`], { env });
}

/**
 * The ESP of a disk that boots without GRUB (--boot uefi): the firmware loads each slot's UKI
 * from BootEFIA/B, so the ESP only holds /EFI/abota for the agent's boot-control state.
 */
export async function buildUefiEsp(o: { out: string; sizeBytes: number; epoch: number }): Promise<void> {
  const fh = await open(o.out, 'w');
  await fh.truncate(o.sizeBytes);
  await fh.close();
  const env = { SOURCE_DATE_EPOCH: String(o.epoch), MTOOLS_SKIP_CHECK: '1' };
  await runTool('mkfs.vfat', ['--invariant', '-i', '41b07a00', '-n', 'ESP', o.out], { env });
  await runTool('mmd', ['-i', o.out, '::/EFI', '::/EFI/abota'], { env });
}
