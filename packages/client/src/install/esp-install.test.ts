// The installer with the uefi backend in systemd-boot mode: after the boot image (a FAT image
// holding the UKI, as `release build --boot-format uki` makes it) is written into slot B's
// BootEFIB, the UKI reaches the ESP only through a read back of the slot, each block checked
// against the signed tree — never from the download — and the trial is armed on that copy.
import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeWithTool, withTempDir } from '@abota/testkit';
import { beforeAll, expect, it } from 'vitest';
import { configOf, makeDevice, makeRelease, makeTrust, type Trust } from '../../test/release-fixture.js';
import { makeFatImage, provisionSystemdBootEsp } from '../../test/uefi-fixtures.js';
import { readLoaderString } from '../bootctl/bls.js';
import { EfiVarStore } from '../bootctl/efivarfs.js';
import { UefiBootControl } from '../bootctl/uefi.js';
import type { BootControl } from '../bootctl/bootcontrol.js';
import { Installer } from './installer.js';
import { DirectoryReleaseSource } from './release-source.js';

let trust: Trust;
beforeAll(async () => {
  trust = await makeTrust();
});

async function setUp(root: string) {
  const dev = await makeDevice(join(root, 'device'), trust);
  const { efivars, esp } = await provisionSystemdBootEsp(root);
  const uki = randomBytes(1_200_000);
  const bootImage = join(root, 'boot.img');
  await makeFatImage(bootImage, 3 * 1024 * 1024, { '/EFI/BOOT/BOOTX64.EFI': uki });
  const rel = await makeRelease({
    dir: join(root, 'rel'),
    trust,
    version: '2.0.0',
    bootImagePath: bootImage,
  });
  const bootEfi = { A: join(root, 'bootefi-a.img'), B: join(root, 'bootefi-b.img') };
  for (const path of Object.values(bootEfi)) await writeFile(path, Buffer.alloc(4 * 1024 * 1024));
  const slot = (s: 'A' | 'B') => ({
    ...dev.configInput.slots[s],
    boot: { path: bootEfi[s], hashOffsetBytes: 3 * 1024 * 1024 + 4096 * 4 },
  });
  const config = configOf(dev, {
    slots: { A: slot('A'), B: slot('B') },
    bootControl: { backend: 'uefi', mode: 'systemd-boot', efivarsPath: efivars, espPath: esp },
  });
  const control = new UefiBootControl({ mode: 'systemd-boot', efivars, espPath: esp, bootedSlot: 'A' });
  const installer = (bootControl: BootControl) =>
    new Installer({
      config,
      bootControl,
      trustRoot: trust.root,
      clock: () => new Date(),
      deviceFacts: async () => ({
        product: config.product,
        hardware: config.hardware,
        currentVersion: '1.0.0',
        securityVersionFloor: 0,
      }),
      bootId: async () => 'boot-1',
    });
  const linux = join(esp, 'EFI', 'Linux');
  return { rel, uki, bootEfi, control, installer, linux, store: new EfiVarStore({ root: efivars }) };
}

describeWithTool('mcopy', 'mtools', 'systemd-boot install step', () => {
  it('copies the UKI out of the verified slot onto the ESP as abota-b+1.efi and arms it', async () => {
    await withTempDir(async (root) => {
      const t = await setUp(root);
      const j = await t.installer(t.control).install(new DirectoryReleaseSource(t.rel.dir));
      expect(j.phase).toBe('boot-pending');
      expect((await readdir(t.linux)).sort()).toEqual(['abota-a.efi', 'abota-b+1.efi']);
      expect((await readFile(join(t.linux, 'abota-b+1.efi'))).equals(t.uki)).toBe(true);
      expect(await readLoaderString(t.store, 'LoaderEntryOneShot')).toBe('abota-b+1.efi');
      expect(await readLoaderString(t.store, 'LoaderEntryDefault')).toBe('abota-a.efi');
    });
  }, 60_000);

  it('a slot block changed after it was written fails the install (ERR_INSTALL_BLOCK_CORRUPT); A stays the default', async () => {
    await withTempDir(async (root) => {
      const t = await setUp(root);
      // Between the write and the copy, one byte of the UKI's clusters on BootEFIB changes
      // (a bad sector, another writer): the read back must refuse it.
      const c = t.control;
      const corrupting: BootControl = {
        getBootedSlot: () => c.getBootedSlot(),
        getPrimarySlot: () => c.getPrimarySlot(),
        getSlotState: (s) => c.getSlotState(s),
        markGood: (s) => c.markGood(s),
        markBad: (s) => c.markBad(s),
        setTryOnce: (s) => c.setTryOnce(s),
        setPrimary: (s) => c.setPrimary(s),
        installBootImage: async (slot, image, where) => {
          const fh = await open(t.bootEfi.B, 'r+');
          await fh.write(Buffer.from([0x55]), 0, 1, 1024 * 1024);
          await fh.close();
          return c.installBootImage(slot, image, where);
        },
      };
      await expect(
        t.installer(corrupting).install(new DirectoryReleaseSource(t.rel.dir)),
      ).rejects.toMatchObject({
        code: 'ERR_INSTALL_BLOCK_CORRUPT',
        message: expect.stringMatching(
          /^slot B boot image .*bootefi-b\.img: data block 256 read back from the slot/,
        ),
      });
      const names = await readdir(t.linux);
      expect(names.filter((n) => n.startsWith('abota-b') && n.endsWith('.efi') && !n.includes('+0'))).toEqual(
        [],
      );
      expect(await t.control.getSlotState('B')).toMatchObject({ bootable: false });
      expect(await t.control.getPrimarySlot()).toBe('A');
      expect(await readLoaderString(t.store, 'LoaderEntryOneShot')).toBeUndefined();
    });
  }, 60_000);

  it('a boot image that is not a UKI boot image fails the install (ERR_BOOTCTL_BOOT_IMAGE_INVALID) before arming', async () => {
    await withTempDir(async (root) => {
      const t = await setUp(root);
      const rel = await makeRelease({
        dir: join(root, 'rel-grub'),
        trust,
        version: '2.0.1',
        bootSizeBytes: 1 << 20,
      });
      await expect(t.installer(t.control).install(new DirectoryReleaseSource(rel.dir))).rejects.toMatchObject(
        {
          code: 'ERR_BOOTCTL_BOOT_IMAGE_INVALID',
          message: expect.stringMatching(/^slot B boot image .*: not a FAT filesystem/),
        },
      );
      expect(await readLoaderString(t.store, 'LoaderEntryOneShot')).toBeUndefined();
      expect(await t.control.getPrimarySlot()).toBe('A');
    });
  }, 60_000);
});
