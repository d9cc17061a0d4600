// Test fixtures for the uefi backend: a directory standing in for efivarfs with a factory image's
// variables, and a directory ESP with the slots' UKIs.
import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { writeLoaderString } from '../src/bootctl/bls.js';
import {
  EFI_GLOBAL_GUID,
  encodeLoadOption,
  encodeUint16Array,
  LOAD_OPTION_ACTIVE,
  type LoadOption,
} from '../src/bootctl/efivar-formats.js';
import { EfiVarStore } from '../src/bootctl/efivarfs.js';

const run = promisify(execFile);

export const ESP_PARTUUID = '11111111-2222-3333-4444-555555555555';
export const BOOT_A_PARTUUID = '5bd5a3c4-9f0e-4b8b-a0a1-7d5c3b2e1f01';
export const BOOT_B_PARTUUID = '5bd5a3c4-9f0e-4b8b-a0a1-7d5c3b2e1f02';

export function slotOption(slot: 'A' | 'B'): LoadOption {
  return {
    attributes: LOAD_OPTION_ACTIVE,
    description: `abota ${slot}`,
    devicePath: [
      {
        kind: 'hd',
        partitionNumber: slot === 'A' ? 2 : 3,
        startLba: slot === 'A' ? 0x8800n : 0x28800n,
        sizeLba: 0x20000n,
        partitionGuid: slot === 'A' ? BOOT_A_PARTUUID : BOOT_B_PARTUUID,
      },
      { kind: 'file', path: '\\EFI\\BOOT\\BOOTX64.EFI' },
    ],
    optionalData: new Uint8Array(0),
  };
}

/**
 * A FAT image of `sizeBytes` (mkfs.vfat, mtools) holding `files` (path in the image → content),
 * as `abota release build --boot-format uki` lays out a UKI boot image. `fatBits` forces the type.
 */
export async function makeFatImage(
  path: string,
  sizeBytes: number,
  files: Record<string, Uint8Array | string>,
  fatBits?: 12 | 16 | 32,
): Promise<void> {
  await writeFile(path, Buffer.alloc(0));
  await run('truncate', ['-s', String(sizeBytes), path]);
  await run('mkfs.vfat', [...(fatBits ? ['-F', String(fatBits)] : []), '-n', 'TEST', path]);
  const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' };
  const dirs = new Set<string>();
  for (const file of Object.keys(files)) {
    const parts = file.split('/').filter((p) => p !== '');
    for (let i = 1; i < parts.length; i++) dirs.add(`/${parts.slice(0, i).join('/')}`);
  }
  for (const dir of [...dirs].sort()) await run('mmd', ['-i', path, `::${dir}`], { env });
  for (const [file, content] of Object.entries(files)) {
    const local = `${path}.content`;
    await writeFile(local, content);
    await run('mcopy', ['-o', '-i', path, local, `::${file}`], { env });
  }
  await rm(`${path}.content`, { force: true });
}

/** Mark a variable immutable as the kernel does for EFI_GLOBAL_VARIABLE ones (where chattr works). */
export async function makeImmutable(path: string): Promise<boolean> {
  return run('chattr', ['+i', path]).then(
    () => true,
    () => false,
  );
}

/** Clear the immutable flags under `dir` so the temp directory can be removed. */
export async function unlockTree(dir: string): Promise<void> {
  await run('chattr', ['-R', '-i', dir]).catch(() => {});
}

/**
 * A factory image's variables: Boot0000 = slot A, Boot0001 = slot B, Boot0002 = an EFI shell
 * (someone else's entry, kept at the end of BootOrder), BootOrder = A, shell. Immutable like
 * efivarfs makes them.
 */
export async function provisionFirmwareEfivars(root: string): Promise<string> {
  await mkdir(root, { recursive: true });
  const store = new EfiVarStore({ root });
  await store.set('Boot0000', EFI_GLOBAL_GUID, encodeLoadOption(slotOption('A')));
  await store.set('Boot0001', EFI_GLOBAL_GUID, encodeLoadOption(slotOption('B')));
  await store.set(
    'Boot0002',
    EFI_GLOBAL_GUID,
    encodeLoadOption({
      attributes: LOAD_OPTION_ACTIVE,
      description: 'EFI Internal Shell',
      devicePath: [{ kind: 'file', path: '\\EFI\\tools\\shell.efi' }],
      optionalData: new Uint8Array(0),
    }),
  );
  await store.set('BootOrder', EFI_GLOBAL_GUID, encodeUint16Array([0, 2]));
  for (const name of ['Boot0000', 'Boot0001', 'Boot0002', 'BootOrder']) {
    await makeImmutable(store.path(name, EFI_GLOBAL_GUID));
  }
  return root;
}

/**
 * A factory ESP for systemd-boot mode: slot A's UKI blessed and default, slot B's marked bad
 * (abota-b+0.efi, as markBad leaves it before an install).
 */
export async function provisionSystemdBootEsp(dir: string): Promise<{ efivars: string; esp: string }> {
  const efivars = join(dir, 'efivars');
  const esp = join(dir, 'esp');
  await mkdir(efivars, { recursive: true });
  await mkdir(join(esp, 'EFI', 'Linux'), { recursive: true });
  await writeFile(join(esp, 'EFI', 'Linux', 'abota-a.efi'), 'UKI of slot A, release 1\n');
  await writeFile(join(esp, 'EFI', 'Linux', 'abota-b+0.efi'), 'UKI of slot B, nothing yet\n');
  await writeLoaderString(new EfiVarStore({ root: efivars }), 'LoaderEntryDefault', 'abota-a.efi');
  return { efivars, esp };
}
