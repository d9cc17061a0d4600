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
import { describeWithTool, startNode, withTempDir } from '@abota/testkit';
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
import { EfiVarStore } from './efivarfs.js';
import { emulateFirmwareBoot, emulateSystemdBootSlot, UefiBootControl } from './uefi.js';

const CHILD = fileURLToPath(new URL('../../test/uefi-kill-child.ts', import.meta.url));
const PACKAGE_DIR = fileURLToPath(new URL('../..', import.meta.url));
const KILLS = 6;

function seeded(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

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
          const booted = await boot();
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
          // A new agent takes over: its calls succeed and the device ends on A (an install cut
          // short before its UKI reached the ESP is done again first, as the journal makes it).
          const control = new UefiBootControl({ mode, efivars, espPath: esp, bootedSlot: 'A' });
          if (mode === 'systemd-boot') {
            const names = await readdir(join(esp, 'EFI', 'Linux'));
            const bytes = await readFile(bootImage);
            const image = {
              sizeBytes: bytes.length,
              read: async (p: number, n: number) => bytes.subarray(p, p + n),
            };
            for (const slot of ['A', 'B'] as const) {
              if (!names.some((n) => n.startsWith(`abota-${slot.toLowerCase()}`))) {
                await control.installBootImage(slot, image, `slot ${slot} boot image`);
              }
            }
          }
          await control.setPrimary('A');
          await control.markGood('A');
          expect(
            mode === 'firmware' ? await emulateFirmwareBoot(store) : await emulateSystemdBootSlot(store, esp),
          ).toBe('A');
        } finally {
          await unlockTree(dir);
        }
      });
    },
    240_000,
  );
});
