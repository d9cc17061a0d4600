// The systemd-boot ESP of `image disk --loader systemd-boot` (mtools, no mount): systemd-boot at
// both paths, loader.conf, and each slot's UKI copied out of the FAT boot image on the disk.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeWithTool, withTempDir } from '@abota/testkit';
import { expect, it } from 'vitest';
import { buildSystemdBootEsp, loaderConf } from './sdboot-esp.js';

const MIB = 1024 * 1024;
const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' };

function mtools(tool: string, args: string[]): string {
  const r = spawnSync(tool, args, { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A FAT boot image holding `uki` at /EFI/BOOT/BOOTX64.EFI, as release build --boot-format uki makes it. */
async function bootImage(path: string, uki: Uint8Array): Promise<void> {
  const fh = await open(path, 'w');
  await fh.truncate(4 * MIB);
  await fh.close();
  spawnSync('mkfs.vfat', ['-n', 'UKI', path]);
  mtools('mmd', ['-i', path, '::/EFI', '::/EFI/BOOT']);
  await writeFile(`${path}.uki`, uki);
  mtools('mcopy', ['-i', path, `${path}.uki`, '::/EFI/BOOT/BOOTX64.EFI']);
}

describeWithTool('mcopy', 'mtools', 'systemd-boot ESP', () => {
  it("installs systemd-boot at both paths, loader.conf, and each slot's UKI from its BootEFI partition", async () => {
    await withTempDir(async (dir) => {
      const ukis = { A: randomBytes(700_000), B: randomBytes(600_000) };
      // A "disk" with the two boot images at 1 MiB and 6 MiB.
      const disk = join(dir, 'disk.raw');
      const bytes = Buffer.alloc(12 * MIB);
      for (const [slot, at] of [
        ['A', 1],
        ['B', 6],
      ] as const) {
        await bootImage(join(dir, `boot-${slot}.img`), ukis[slot]);
        (await readFile(join(dir, `boot-${slot}.img`))).copy(bytes, at * MIB);
      }
      await writeFile(disk, bytes);
      const loader = join(dir, 'systemd-bootx64.efi');
      await writeFile(loader, 'MZ systemd-boot stand-in');
      await mkdir(join(dir, 'scratch'));
      const esp = join(dir, 'esp.img');
      const { files } = await buildSystemdBootEsp({
        out: esp,
        sizeBytes: 16 * MIB,
        epoch: 0,
        scratch: join(dir, 'scratch'),
        disk,
        slots: [
          { slot: 'A', bootEfiOffsetBytes: 1 * MIB },
          { slot: 'B', bootEfiOffsetBytes: 6 * MIB },
        ],
        systemdBoot: loader,
      });
      expect(files).toEqual([
        '/EFI/BOOT/BOOTX64.EFI',
        '/EFI/systemd/systemd-bootx64.efi',
        '/loader/loader.conf',
        '/EFI/Linux/abota-a.efi',
        '/EFI/Linux/abota-b.efi',
      ]);
      const read = (path: string) => {
        mtools('mcopy', ['-o', '-i', esp, `::${path}`, join(dir, 'out')]);
        return readFile(join(dir, 'out'));
      };
      expect((await read('/EFI/Linux/abota-a.efi')).equals(ukis.A)).toBe(true);
      expect((await read('/EFI/Linux/abota-b.efi')).equals(ukis.B)).toBe(true);
      expect((await read('/EFI/BOOT/BOOTX64.EFI')).toString()).toBe('MZ systemd-boot stand-in');
      expect((await read('/EFI/systemd/systemd-bootx64.efi')).toString()).toBe('MZ systemd-boot stand-in');
      expect((await read('/loader/loader.conf')).toString()).toBe(loaderConf('abota-a.efi'));
      expect(loaderConf('abota-a.efi')).toBe(
        'default abota-a.efi\ntimeout 0\neditor no\nauto-entries no\nauto-firmware no\n',
      );
    });
  }, 60_000);

  it('names the Debian package when systemd-boot is missing', async () => {
    await withTempDir(async (dir) => {
      await expect(
        buildSystemdBootEsp({
          out: join(dir, 'esp.img'),
          sizeBytes: 16 * MIB,
          epoch: 0,
          scratch: dir,
          disk: join(dir, 'disk.raw'),
          slots: [],
          systemdBoot: join(dir, 'missing.efi'),
        }),
      ).rejects.toMatchObject({
        code: 'ERR_IMAGE_TOOL_MISSING',
        message: expect.stringContaining('apt-get install systemd-boot-efi'),
      });
    });
  });
});
