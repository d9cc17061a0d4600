// The ESP of a GRUBless disk booted through systemd-boot (`image disk --boot uefi --loader
// systemd-boot`): systemd-boot (Debian's systemd-boot-efi, signed for Secure Boot when a key is
// given) at the removable-media path and at bootctl's path, loader.conf, and each provisioned
// slot's UKI as a Boot Loader Specification type #2 entry in /EFI/Linux — blessed (no counter),
// slot A the default. The UKIs are taken from the slot's boot image on the disk (the FAT image in
// BootEFIA/B), as the agent's uefi backend copies them at each install.
import { copyFile, open, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_UKI_NAMES, UKI_PATH_IN_BOOT_IMAGE } from '@abota/client';
import { ImageError } from './errors.js';
import { runTool } from './tools.js';
import { type SecureBootKey, sbsignInPlace } from './uki.js';

export const DEFAULT_SYSTEMD_BOOT_EFI = '/usr/lib/systemd/boot/efi/systemd-bootx64.efi';
/** Where bootctl install puts systemd-boot; the varstore's "Linux Boot Manager" entry points here. */
export const SYSTEMD_BOOT_ESP_PATH = '/EFI/systemd/systemd-bootx64.efi';
export const SYSTEMD_BOOT_ENTRY_DESCRIPTION = 'Linux Boot Manager';

export interface SystemdBootEspOptions {
  out: string;
  sizeBytes: number;
  epoch: number;
  scratch: string;
  /** The disk image and the byte offset of each provisioned slot's BootEFI partition. */
  disk: string;
  slots: { slot: 'A' | 'B'; bootEfiOffsetBytes: number }[];
  systemdBoot: string;
  sign?: SecureBootKey | undefined;
}

/** loader.conf: boot the default at once, no editor (it could change a command line), no auto entries. */
export function loaderConf(defaultEntry: string): string {
  return [
    `default ${defaultEntry}`,
    'timeout 0',
    'editor no',
    'auto-entries no',
    'auto-firmware no',
    '',
  ].join('\n');
}

export async function buildSystemdBootEsp(o: SystemdBootEspOptions): Promise<{ files: string[] }> {
  await stat(o.systemdBoot).catch(() => {
    throw new ImageError(
      'ERR_IMAGE_TOOL_MISSING',
      `systemd-boot ${o.systemdBoot} not found: apt-get install systemd-boot-efi (or give --systemd-boot)`,
    );
  });
  const env = { SOURCE_DATE_EPOCH: String(o.epoch), MTOOLS_SKIP_CHECK: '1' };
  const loader = join(o.scratch, 'systemd-bootx64.efi');
  await copyFile(o.systemdBoot, loader);
  if (o.sign !== undefined) await sbsignInPlace(loader, o.sign);
  const conf = join(o.scratch, 'loader.conf');
  const defaultEntry = `${DEFAULT_UKI_NAMES.A}.efi`;
  await writeFile(conf, loaderConf(defaultEntry));
  const fh = await open(o.out, 'w');
  await fh.truncate(o.sizeBytes);
  await fh.close();
  await runTool('mkfs.vfat', ['--invariant', '-i', '41b07a00', '-n', 'ESP', o.out], { env });
  await runTool(
    'mmd',
    ['-i', o.out, '::/EFI', '::/EFI/BOOT', '::/EFI/systemd', '::/EFI/Linux', '::/EFI/abota', '::/loader'],
    { env },
  );
  const files = ['/EFI/BOOT/BOOTX64.EFI', SYSTEMD_BOOT_ESP_PATH, '/loader/loader.conf'];
  await runTool('mcopy', ['-i', o.out, loader, '::/EFI/BOOT/BOOTX64.EFI'], { env });
  await runTool('mcopy', ['-i', o.out, loader, `::${SYSTEMD_BOOT_ESP_PATH}`], { env });
  await runTool('mcopy', ['-i', o.out, conf, '::/loader/loader.conf'], { env });
  for (const { slot, bootEfiOffsetBytes } of o.slots) {
    const uki = join(o.scratch, `${DEFAULT_UKI_NAMES[slot]}.efi`);
    // mtools reads the FAT image in place on the disk (image@@offset).
    await runTool('mcopy', ['-i', `${o.disk}@@${bootEfiOffsetBytes}`, `::${UKI_PATH_IN_BOOT_IMAGE}`, uki], {
      env,
    });
    const path = `/EFI/Linux/${DEFAULT_UKI_NAMES[slot]}.efi`;
    await runTool('mcopy', ['-i', o.out, uki, `::${path}`], { env });
    files.push(path);
  }
  return { files };
}
