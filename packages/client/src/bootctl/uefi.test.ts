// The uefi backend beyond the shared contract (bootcontrol.test.ts): nothing written by a
// per-boot markGood, the booted slot from the firmware's variables, the trial counter with more
// than one try (re-armed, then abandoned), and systemd-boot's UKI files around an install.
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTempDir } from '@abota/testkit';
import { describe, expect, it } from 'vitest';
import { provisionFirmwareEfivars, provisionSystemdBootEsp, unlockTree } from '../../test/uefi-fixtures.js';
import { readLoaderString } from './bls.js';
import { ABOTA_VENDOR_GUID, decodeUint16Array, EFI_GLOBAL_GUID } from './efivar-formats.js';
import { EfiVarStore } from './efivarfs.js';
import {
  ABOTA_TRIAL_VARIABLE,
  emulateFirmwareBoot,
  emulateSystemdBootSlot,
  UefiBootControl,
} from './uefi.js';

async function snapshot(dirs: string[]): Promise<string> {
  const out: string[] = [];
  for (const d of dirs) {
    for (const f of (await readdir(d)).sort()) {
      const p = join(d, f);
      out.push(`${p} ${(await stat(p)).mtimeMs} ${(await readFile(p)).toString('hex')}`);
    }
  }
  return out.join('\n');
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    try {
      await fn(dir);
    } finally {
      await unlockTree(dir);
    }
  });
}

describe('firmware mode', () => {
  async function device(dir: string, tryBoots?: number) {
    const efivars = await provisionFirmwareEfivars(join(dir, 'efivars'));
    const cmdlinePath = join(dir, 'cmdline');
    await writeFile(cmdlinePath, 'console=ttyS0\n'); // no abota.slot=: BootCurrent tells
    const store = new EfiVarStore({ root: efivars });
    const control = new UefiBootControl({
      mode: 'firmware',
      efivars,
      cmdlinePath,
      ...(tryBoots ? { tryBoots } : {}),
    });
    return { efivars, store, control, boot: () => emulateFirmwareBoot(store) };
  }

  it('reads the booted slot from BootCurrent, and a per-boot markGood writes nothing', async () => {
    await withDir(async (dir) => {
      const d = await device(dir);
      expect(await d.boot()).toBe('A');
      expect(await d.control.getBootedSlot()).toBe('A');
      const before = await snapshot([d.efivars]);
      await d.control.markGood('A');
      await d.control.markGood('A');
      expect(await snapshot([d.efivars])).toBe(before);
    });
  });

  it('gives a trial tryBoots boots: re-armed by markGood of the fallback, then abandoned', async () => {
    await withDir(async (dir) => {
      const d = await device(dir, 2);
      expect(await d.boot()).toBe('A');
      await d.control.setTryOnce('B');
      const trial = async () => (await d.store.get(ABOTA_TRIAL_VARIABLE, ABOTA_VENDOR_GUID))?.data;
      expect(await trial()).toEqual(new Uint8Array([1, 0x42, 1])); // armed once, one more left
      expect(await d.boot()).toBe('B'); // the trial dies before anyone confirms it
      expect(await d.boot()).toBe('A');
      expect(await d.control.getSlotState('B')).toEqual({ bootable: true, good: false });
      await d.control.markGood('A'); // the fallback is healthy: the trial gets its second try
      expect(await trial()).toEqual(new Uint8Array([1, 0x42, 0]));
      expect(await d.boot()).toBe('B');
      expect(await d.boot()).toBe('A');
      await d.control.markGood('A'); // no tries left: B is abandoned
      expect(await trial()).toBeUndefined();
      expect(await d.control.getSlotState('B')).toEqual({ bootable: false, good: false });
      expect(decodeUint16Array((await d.store.get('BootOrder', EFI_GLOBAL_GUID))!.data)).toEqual([0, 2]);
      expect(await d.boot()).toBe('A');
    });
  });

  it('keeps other entries in BootOrder and puts the committed slot first', async () => {
    await withDir(async (dir) => {
      const d = await device(dir);
      expect(await d.boot()).toBe('A');
      await d.control.setTryOnce('B');
      expect(await d.boot()).toBe('B');
      await d.control.markGood('B');
      await d.control.setPrimary('B');
      expect(decodeUint16Array((await d.store.get('BootOrder', EFI_GLOBAL_GUID))!.data)).toEqual([1, 0, 2]);
      await d.control.markBad('A');
      expect(decodeUint16Array((await d.store.get('BootOrder', EFI_GLOBAL_GUID))!.data)).toEqual([1, 2]);
    });
  });
});

describe('systemd-boot mode', () => {
  async function device(dir: string, tryBoots?: number) {
    const { efivars, esp } = await provisionSystemdBootEsp(dir);
    const cmdlinePath = join(dir, 'cmdline');
    await writeFile(cmdlinePath, 'console=ttyS0\n'); // no abota.slot=: LoaderEntrySelected tells
    const store = new EfiVarStore({ root: efivars });
    const control = new UefiBootControl({
      mode: 'systemd-boot',
      efivars,
      espPath: esp,
      cmdlinePath,
      ...(tryBoots ? { tryBoots } : {}),
    });
    const linux = join(esp, 'EFI', 'Linux');
    const files = async () => (await readdir(linux)).sort();
    return { efivars, esp, linux, store, control, files, boot: () => emulateSystemdBootSlot(store, esp) };
  }

  it('reads the booted slot from LoaderEntrySelected, and a per-boot markGood writes nothing', async () => {
    await withDir(async (dir) => {
      const d = await device(dir);
      expect(await d.boot()).toBe('A');
      expect(await d.control.getBootedSlot()).toBe('A');
      const before = await snapshot([d.efivars, d.linux]);
      await d.control.markGood('A');
      expect(await snapshot([d.efivars, d.linux])).toBe(before);
    });
  });

  it('an install: markBad renames, the installer writes a fresh UKI, setTryOnce drops the stale one and arms +N', async () => {
    await withDir(async (dir) => {
      const d = await device(dir, 3);
      expect(await d.boot()).toBe('A');
      await d.control.markGood('A');
      await d.control.markBad('B');
      expect(await d.files()).toEqual(['abota-a.efi', 'abota-b+0.efi']);
      await writeFile(join(d.linux, 'abota-b.efi'), 'UKI of slot B, release 2\n'); // the installer
      expect(await d.control.getSlotState('B')).toEqual({ bootable: false, good: false });
      await d.control.setTryOnce('B');
      expect(await d.files()).toEqual(['abota-a.efi', 'abota-b+3.efi']);
      expect(await readLoaderString(d.store, 'LoaderEntryOneShot')).toBe('abota-b+3.efi');
      expect(await readLoaderString(d.store, 'LoaderEntryDefault')).toBe('abota-a.efi');
      expect(await d.boot()).toBe('B');
      expect(await d.files()).toEqual(['abota-a.efi', 'abota-b+2-1.efi']);
      expect(await d.control.getBootedSlot()).toBe('B');
      // Not confirmed: back to A; A's healthy boot arms the next try, until none is left.
      for (const left of [1, 0]) {
        expect(await d.boot()).toBe('A');
        await d.control.markGood('A');
        expect(await d.boot()).toBe('B');
        expect(await d.files()).toEqual(['abota-a.efi', `abota-b+${left}-${3 - left}.efi`]);
      }
      expect(await d.boot()).toBe('A');
      await d.control.markGood('A');
      expect(await readLoaderString(d.store, 'LoaderEntryOneShot')).toBeUndefined();
      expect(await d.control.getSlotState('B')).toEqual({ bootable: false, good: false });
      expect(await d.boot()).toBe('A');
    });
  });

  it('commit blesses the UKI (drops the counter) and makes it the default; markBad moves the default away', async () => {
    await withDir(async (dir) => {
      const d = await device(dir);
      expect(await d.boot()).toBe('A');
      await d.control.setTryOnce('B');
      expect(await d.boot()).toBe('B');
      await d.control.markGood('B');
      await d.control.setPrimary('B');
      expect(await d.files()).toEqual(['abota-a.efi', 'abota-b.efi']);
      expect(await readLoaderString(d.store, 'LoaderEntryDefault')).toBe('abota-b.efi');
      await d.control.markBad('B');
      expect(await readLoaderString(d.store, 'LoaderEntryDefault')).toBe('abota-a.efi');
      expect(await d.files()).toEqual(['abota-a.efi', 'abota-b+0.efi']);
      expect(await d.boot()).toBe('A');
    });
  });

  it('refuses two names with the same bytes for one slot (a FAT rename cut short) instead of deleting one', async () => {
    await withDir(async (dir) => {
      const d = await device(dir);
      await writeFile(join(d.linux, 'abota-a+1.efi'), await readFile(join(d.linux, 'abota-a.efi')));
      await expect(d.control.setTryOnce('A')).rejects.toMatchObject({
        code: 'ERR_BOOTCTL_ESP_DUPLICATE',
        message: expect.stringContaining('fsck.fat'),
      });
      expect(await d.files()).toEqual(['abota-a+1.efi', 'abota-a.efi', 'abota-b+0.efi']);
    });
  });

  it('names the missing UKI', async () => {
    await withDir(async (dir) => {
      const d = await device(dir);
      await expect(
        new UefiBootControl({
          mode: 'systemd-boot',
          efivars: d.efivars,
          espPath: d.esp,
          ukiNames: { A: 'abota-a', B: 'os-b' },
        }).setTryOnce('B'),
      ).rejects.toMatchObject({
        code: 'ERR_BOOTCTL_ENTRY_MISSING',
        message: expect.stringContaining('os-b[+N[-M]].efi'),
      });
    });
  });
});
