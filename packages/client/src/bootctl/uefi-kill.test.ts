// The uefi backend's writes killed with SIGKILL at seeded random moments (a real process death,
// between any two system calls — chattr, write, rename, unlink): afterwards every variable still
// decodes, the emulated firmware / systemd-boot boots a slot (never rescue), and a new agent
// process's calls succeed (systemd-boot mode: each install also copies a UKI onto the ESP, so the
// kills land in those writes too). On a directory standing in for efivarfs: the order of the steps and
// the file semantics; the firmware's own atomicity is the VM scenario's (h18-vm).
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeWithTool, seeded, startNode, withTempDir } from '@abota/testkit';
import { expect, it } from 'vitest';
import {
  makeFatImage,
  provisionFirmwareEfivars,
  provisionSystemdBootEsp,
  unlockTree,
} from '../../test/uefi-fixtures.js';
import {
  decodeUtf16z,
  decodeLoadOption,
  decodeUint16Array,
  EFI_GLOBAL_GUID,
  SYSTEMD_LOADER_GUID,
} from './efivar-formats.js';
import { otherSlot, type SlotName } from './bootcontrol.js';
import { EfiVarStore } from './efivarfs.js';
import { emulateFirmwareBoot, emulateSystemdBootSlot, UefiBootControl } from './uefi.js';

const CHILD = fileURLToPath(new URL('../../test/uefi-kill-child.ts', import.meta.url));
const PACKAGE_DIR = fileURLToPath(new URL('../..', import.meta.url));
const KILLS = 6;

async function decodeAll(store: EfiVarStore): Promise<void> {
  for (const name of await store.names(EFI_GLOBAL_GUID)) {
    const v = (await store.get(name, EFI_GLOBAL_GUID))!;
    if (name.startsWith('Boot0')) decodeLoadOption(v.data);
    else decodeUint16Array(v.data, name);
  }
  for (const name of await store.names(SYSTEMD_LOADER_GUID)) {
    decodeUtf16z((await store.get(name, SYSTEMD_LOADER_GUID))!.data, 0, name);
  }
}

describeWithTool('mcopy', 'mtools', 'SIGKILL', () => {
  it.each(['firmware', 'systemd-boot'] as const)(
    '%s: SIGKILL at random moments leaves decodable variables and a bootable slot',
    async (mode) => {
      const seed = Number(process.env['ABOTA_CRASH_SEED'] ?? Date.now() % 1_000_000);
      const random = seeded(seed);
      await withTempDir(async (dir) => {
        try {
          let efivars: string;
          let esp = join(dir, 'esp');
          if (mode === 'firmware') efivars = await provisionFirmwareEfivars(join(dir, 'efivars'));
          else ({ efivars, esp } = await provisionSystemdBootEsp(dir));
          const store = new EfiVarStore({ root: efivars });
          const bootImage = join(dir, 'boot-efi.img');
          const uki = randomBytes(1_500_000);
          await makeFatImage(bootImage, 4 * 1024 * 1024, { '/EFI/BOOT/BOOTX64.EFI': uki });
          const boot = () =>
            mode === 'firmware' ? emulateFirmwareBoot(store) : emulateSystemdBootSlot(store, esp);
          // The slot the device runs: after each kill it "reboots" into whatever the loader picks,
          // and the next agent process starts there (it never installs into the slot it runs).
          expect(await boot(), 'the factory state boots A').toBe('A');
          let booted: SlotName = 'A';
          for (let kill = 0; kill < KILLS; kill++) {
            const child = startNode(
              '--conditions=@abota/source',
              ['--import', 'tsx', CHILD, mode, efivars, esp, booted, bootImage],
              { cwd: PACKAGE_DIR, env: { NODE_OPTIONS: '' } },
            );
            await child.waitFor(/^ready$/, 60_000);
            const delay = Math.floor(random() * 400);
            await new Promise((r) => setTimeout(r, delay));
            child.child.kill('SIGKILL');
            expect(await child.exited, `seed ${seed}: ${child.output().stderr}`).toBe(null);
            await decodeAll(store);
            const slot =
              mode === 'firmware'
                ? await emulateFirmwareBoot(store)
                : await emulateSystemdBootSlot(store, esp);
            expect(slot, `seed ${seed}, kill ${kill} after ${delay} ms`).not.toBe('rescue');
            if (slot !== 'rescue') booted = slot;
            if (mode === 'systemd-boot') {
              // At most one UKI per slot (a copy killed half-way leaves its slot without one, never
              // a second name), and whatever is an entry is a whole UKI.
              const names = (await readdir(join(esp, 'EFI', 'Linux'))).filter((f) => !f.startsWith('.'));
              for (const stem of ['abota-a', 'abota-b'])
                expect(names.filter((n) => n.startsWith(stem)).length, `seed ${seed}: ${names}`).toBeLessThan(
                  2,
                );
              for (const name of names) {
                const bytes = await readFile(join(esp, 'EFI', 'Linux', name));
                expect(
                  bytes.equals(uki) || bytes.length < 100,
                  `${name} is a whole UKI or a factory file`,
                ).toBe(true);
              }
            }
          }
          // A new agent takes over on the slot the loader chose: it confirms that slot, then
          // updates the other one again from the start (whatever the kills left there is marked
          // bad and replaced, as the journal makes it): the trial boots, is committed, and stays.
          const target = otherSlot(booted);
          const bytes = await readFile(bootImage);
          const image = {
            sizeBytes: bytes.length,
            read: async (p: number, n: number) => bytes.subarray(p, p + n),
          };
          const control = new UefiBootControl({ mode, efivars, espPath: esp, bootedSlot: booted });
          await control.markGood(booted);
          await control.setPrimary(booted);
          await control.markBad(target);
          await control.installBootImage(target, image, `slot ${target} boot image`);
          await control.setTryOnce(target);
          expect(await boot(), `seed ${seed}: the trial boots`).toBe(target);
          const after = new UefiBootControl({ mode, efivars, espPath: esp, bootedSlot: target });
          await after.markGood(target);
          await after.setPrimary(target);
          expect(await boot(), `seed ${seed}: the committed slot boots`).toBe(target);
          expect(await boot(), `seed ${seed}: and again`).toBe(target);
        } finally {
          await unlockTree(dir);
        }
      });
    },
    240_000,
  );
});
