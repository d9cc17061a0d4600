// The real GRUB choosing slots from the grubenv the agent writes: slot B (a second release)
// boots when GrubBootControl.setTryOnce('B') armed it, and when B's rootfs then fails dm-verity
// the one try is spent and GRUB falls back to A, leaving B_TRY=1 for the agent to see.
import { spawnSync } from 'node:child_process';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { GrubBootControl, readGrubEnvFile } from '@abota/client';
import { describeWithTool, makeTempDir } from '@abota/testkit';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { abota, minimalRelease, TEST_SIZES, type TestRelease, testKeys, vmKernel } from './fixture.js';
import { Vm } from './qemu.js';

const BOOT_TIMEOUT_MS = 300_000;
// Up to the end of the line: the console delivers a line in pieces.
const READY = /abota-guest: ready slot=(\w) label=(\S+) uptime=\S+\r?\n/;

/** Run `edit` on the grubenv inside the disk's ESP (mtools on the partition's offset, no mount). */
async function editGrubEnvOnDisk(
  disk: string,
  espOffset: number,
  dir: string,
  edit: (path: string) => Promise<void>,
): Promise<void> {
  const local = join(dir, 'grubenv');
  const image = `${disk}@@${espOffset}`;
  const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' };
  await rm(local, { force: true });
  expect(spawnSync('mcopy', ['-i', image, '::/EFI/abota/grubenv', local], { env }).status).toBe(0);
  await edit(local);
  expect(spawnSync('mcopy', ['-o', '-i', image, local, '::/EFI/abota/grubenv'], { env }).status).toBe(0);
}

describeWithTool(
  'qemu-system-x86_64',
  'qemu-system-x86',
  'GRUB slot selection and fallback under QEMU',
  () => {
    let dir: string;
    let disk: string;
    let v1: TestRelease;
    let v2: TestRelease;
    let partitions: { name: string; offsetBytes: number }[];
    let vm: Vm | undefined;
    const offsetOf = (name: string): number => partitions.find((p) => p.name === name)!.offsetBytes;

    beforeAll(async () => {
      dir = await makeTempDir('abota-vm-slots-');
      const keys = await testKeys(dir);
      const kernel = await vmKernel();
      v1 = await minimalRelease(dir, keys, kernel, '1.0.0', 'v1');
      v2 = await minimalRelease(dir, keys, kernel, '2.0.0', 'v2');
      disk = join(dir, 'disk.raw');
      const summary = await abota([
        'image',
        'disk',
        '--release',
        v1.dir,
        '--release-b',
        v2.dir,
        '--out',
        disk,
        ...TEST_SIZES,
      ]);
      partitions = summary['partitions'] as typeof partitions;
    });

    afterEach(async () => {
      await vm?.stop();
      vm = undefined;
    });

    afterAll(async () => {
      if (process.env['ABOTA_VM_KEEP'] !== '1' && dir !== undefined)
        await rm(dir, { recursive: true, force: true });
    });

    it('B armed by the agent boots B through verity; B corrupted afterwards: its try is spent and GRUB falls back to A', async () => {
      await editGrubEnvOnDisk(disk, offsetOf('ESP'), dir, (envPath) =>
        new GrubBootControl({ envPath, bootedSlot: 'A' }).setTryOnce('B'),
      );
      await mkdir(join(dir, 'vm-b'));
      vm = await Vm.start({ disk, dir: join(dir, 'vm-b') });
      const b = await vm.waitFor(READY, BOOT_TIMEOUT_MS);
      expect([b[1], b[2]]).toEqual(['B', 'v2']);
      expect((await vm.run('cat /run/abota/root.table')).output).toContain(` ${v2.rootHash} `);
      expect((await vm.run('cat /proc/mounts')).output).toMatch(/^\/dev\/mapper\/abota-root \/ erofs ro/m);
      await vm.run('sync');
      await vm.stop();

      // A byte of B's rootfs changed on the host (e.g. a bad write): block 0 no longer verifies.
      const fh = await open(disk, 'r+');
      const byte = Buffer.alloc(1);
      const at = offsetOf('RootFSB') + 1024;
      await fh.read(byte, 0, 1, at);
      byte[0] = byte[0]! ^ 0xff;
      await fh.write(byte, 0, 1, at);
      await fh.close();

      await mkdir(join(dir, 'vm-fallback'));
      vm = await Vm.start({ disk, dir: join(dir, 'vm-fallback') });
      const a = await vm.waitFor(READY, 2 * BOOT_TIMEOUT_MS);
      expect([a[1], a[2]]).toEqual(['A', 'v1']);
      // B was tried first (GRUB said so), the kernel refused its block, and the reset moved on.
      const log = vm.output;
      expect(log.indexOf('abota: booting slot B')).toBeGreaterThanOrEqual(0);
      expect(log).toMatch(/verity.*(corrupted|metadata block|data block)/i);
      expect(log.indexOf('abota: booting slot A')).toBeGreaterThan(log.indexOf('abota: booting slot B'));
      expect((await vm.run('cat /run/abota/root.table')).output).toContain(` ${v1.rootHash} `);
      await vm.run('sync');
      await vm.stop();
      await editGrubEnvOnDisk(disk, offsetOf('ESP'), dir, async (envPath) => {
        const env = (await readGrubEnvFile(envPath)).vars;
        expect(Object.fromEntries(env)).toMatchObject({
          ORDER: 'B A',
          B_OK: '1',
          B_TRY: '1',
          A_OK: '1',
          A_TRY: '0',
        });
        // What the agent concludes: B is not good, A is the slot GRUB boots.
        const control = new GrubBootControl({ envPath, bootedSlot: 'A' });
        expect(await control.getPrimarySlot()).toBe('A');
        expect((await control.getSlotState('B')).good).toBe(false);
      });
    });
  },
);
