// The A/B behaviour every BootControl backend must show, driven through the pure bootloader
// emulations (grubSelectSlot / ubootSelectSlot / fileSelectSlot) on real files.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTempDir } from '@abota/testkit';
import { describe, expect, it } from 'vitest';
import { type BootControl, bootedSlotFromCmdline, readBootedSlot, type SlotName } from './bootcontrol.js';
import { emulateFileBoot, FileBootControl, initialBootState, writeBootStateFile } from './file.js';
import { emulateGrubBoot, GrubBootControl } from './grub.js';
import { createGrubEnvFile } from './grubenv.js';
import { emulateUBootBoot, UBootBootControl, type UBootConvention, ubootInitialEnv } from './uboot.js';
import { formatUBootEnv, type UBootEnvConfig } from './ubootenv.js';
import { provisionFirmwareEfivars, provisionSystemdBootEsp, unlockTree } from '../../test/uefi-fixtures.js';
import { EfiVarStore } from './efivarfs.js';
import { emulateFirmwareBoot, emulateSystemdBootSlot, UefiBootControl } from './uefi.js';

interface Device {
  control: BootControl;
  /** Power-cycle: the bootloader chooses, the kernel cmdline names the choice. */
  boot(): Promise<SlotName | 'rescue'>;
}

type Provision = (dir: string, cmdlinePath: string) => Promise<Device>;

async function withCmdline(
  cmdlinePath: string,
  emulate: () => Promise<SlotName | 'rescue'>,
): Promise<SlotName | 'rescue'> {
  const slot = await emulate();
  await writeFile(
    cmdlinePath,
    slot === 'rescue' ? 'console=ttyS0 rescue\n' : `console=ttyS0 abota.slot=${slot} ro\n`,
  );
  return slot;
}

const grub: Provision = async (dir, cmdlinePath) => {
  const envPath = join(dir, 'grubenv');
  await createGrubEnvFile(envPath);
  const control = new GrubBootControl({ envPath, cmdlinePath });
  await control.setPrimary('A');
  return { control, boot: () => withCmdline(cmdlinePath, () => emulateGrubBoot(envPath)) };
};

function uboot(convention: UBootConvention, redundant: boolean): Provision {
  return async (dir, cmdlinePath) => {
    const path = join(dir, 'env.bin');
    const env: UBootEnvConfig = redundant
      ? {
          copies: [
            { path, offsetBytes: 0, sizeBytes: 0x2000 },
            { path, offsetBytes: 0x2000, sizeBytes: 0x2000 },
          ],
        }
      : { copies: [{ path, offsetBytes: 0, sizeBytes: 0x2000 }] };
    await formatUBootEnv(env, ubootInitialEnv(convention, 'A'));
    const control = new UBootBootControl({ env, convention, cmdlinePath });
    return { control, boot: () => withCmdline(cmdlinePath, () => emulateUBootBoot(env, convention)) };
  };
}

const file: Provision = async (dir, cmdlinePath) => {
  const statePath = join(dir, 'boot-state.json');
  await writeBootStateFile(statePath, initialBootState('A'));
  const control = new FileBootControl({ statePath, cmdlinePath });
  return { control, boot: () => withCmdline(cmdlinePath, () => emulateFileBoot(statePath)) };
};

const uefiFirmware: Provision = async (dir, cmdlinePath) => {
  const efivars = await provisionFirmwareEfivars(join(dir, 'efivars'));
  const control = new UefiBootControl({ mode: 'firmware', efivars, cmdlinePath });
  const store = new EfiVarStore({ root: efivars });
  return { control, boot: () => withCmdline(cmdlinePath, () => emulateFirmwareBoot(store)) };
};

const uefiSystemdBoot: Provision = async (dir, cmdlinePath) => {
  const { efivars, esp } = await provisionSystemdBootEsp(dir);
  const control = new UefiBootControl({ mode: 'systemd-boot', efivars, espPath: esp, cmdlinePath });
  const store = new EfiVarStore({ root: efivars });
  return { control, boot: () => withCmdline(cmdlinePath, () => emulateSystemdBootSlot(store, esp)) };
};

const backends: [string, Provision][] = [
  ['UEFI firmware (Boot####, BootNext, AbotaTrial)', uefiFirmware],
  ['UEFI systemd-boot (BLS type #2, +N counters, LoaderEntryOneShot)', uefiSystemdBoot],
  ['GRUB (RAUC ORDER/OK/TRY)', grub],
  ['U-Boot bootcount, redundant env', uboot({ kind: 'bootcount' }, true)],
  [
    'U-Boot bootcount, single env, Mender-style selector',
    uboot(
      { kind: 'bootcount', selectorVariable: 'mender_boot_part', selectorValues: { A: '2', B: '3' } },
      false,
    ),
  ],
  ['U-Boot RAUC BOOT_ORDER/LEFT, redundant env', uboot({ kind: 'rauc' }, true)],
  ['file backend', file],
];

describe.each(backends)('%s', (_name, provision) => {
  async function running(fn: (d: Device) => Promise<void>): Promise<void> {
    await withTempDir(async (dir) => {
      try {
        const device = await provision(dir, join(dir, 'cmdline'));
        // Fresh device: boots A, the agent confirms it.
        expect(await device.boot()).toBe('A');
        await device.control.markGood('A');
        await fn(device);
      } finally {
        await unlockTree(dir); // the uefi fixtures' immutable variables
      }
    });
  }

  /** Boot `times` times; the running slot is confirmed after each boot if `confirm` says so. */
  async function bootSeveral(d: Device, times: number, confirm: (s: SlotName) => boolean): Promise<string[]> {
    const seen: string[] = [];
    for (let i = 0; i < times; i++) {
      const slot = await d.boot();
      seen.push(slot);
      if (slot !== 'rescue') {
        expect(await d.control.getBootedSlot()).toBe(slot);
        if (confirm(slot)) await d.control.markGood(slot);
      }
    }
    return seen;
  }

  it('boots the try-once slot with its attempt used up, then falls back to A when not confirmed', async () => {
    await running(async (d) => {
      await d.control.setTryOnce('B');
      expect(await d.control.getPrimarySlot()).toBe('B');
      expect(await d.boot()).toBe('B');
      expect(await d.control.getBootedSlot()).toBe('B');
      // The trial is in progress: a reset now must not come back to B.
      expect(await d.control.getSlotState('B')).toEqual({ bootable: false, good: false });
      expect(await d.control.getPrimarySlot()).toBe('A');
      // Never confirmed → A, and A keeps booting (confirmed on each boot as the agent does).
      expect(await bootSeveral(d, 3, (s) => s === 'A')).toEqual(['A', 'A', 'A']);
      expect(await d.control.getSlotState('A')).toEqual({ bootable: true, good: true });
    });
  });

  it('stays on the try-once slot once it is confirmed with markGood', async () => {
    await running(async (d) => {
      await d.control.setTryOnce('B');
      expect(await d.boot()).toBe('B');
      await d.control.markGood('B');
      expect(await d.control.getSlotState('B')).toEqual({ bootable: true, good: true });
      expect(await d.control.getPrimarySlot()).toBe('B');
      expect(await bootSeveral(d, 3, () => true)).toEqual(['B', 'B', 'B']);
    });
  });

  it('never selects a slot marked bad', async () => {
    await running(async (d) => {
      await d.control.setTryOnce('B');
      expect(await d.boot()).toBe('B');
      await d.control.markBad('B'); // health check failed on B
      expect(await d.control.getSlotState('B')).toEqual({ bootable: false, good: false });
      expect(await d.control.getPrimarySlot()).toBe('A');
      expect(await bootSeveral(d, 4, (s) => s === 'A')).toEqual(['A', 'A', 'A', 'A']);
    });
  });

  it('setPrimary switches for good and a later try-once goes back the other way', async () => {
    await running(async (d) => {
      await d.control.setPrimary('B');
      expect(await bootSeveral(d, 2, () => true)).toEqual(['B', 'B']);
      await d.control.setTryOnce('A');
      expect(await d.boot()).toBe('A');
      expect(await bootSeveral(d, 2, (s) => s === 'B')).toEqual(['B', 'B']);
    });
  });
});

describe('booted slot from the kernel command line', () => {
  it.each([
    ['BOOT_IMAGE=/vmlinuz root=/dev/dm-0 abota.slot=B quiet', 'B'],
    ['rauc.slot=A console=ttyS0', 'A'],
    ['abota.slot=A rauc.slot=A', 'A'],
    ['abota.slot="B"', 'B'],
    ['root=/dev/sda2 quiet', undefined],
  ])('%j → %s', (cmdline, slot) => {
    expect(bootedSlotFromCmdline(cmdline)).toBe(slot);
  });

  it.each(['abota.slot=A rauc.slot=B', 'abota.slot=C', 'rauc.slot=system0'])(
    'refuses %j rather than guess',
    (cmdline) => {
      expect(() => bootedSlotFromCmdline(cmdline)).toThrow(
        expect.objectContaining({ code: 'ERR_BOOTCTL_BOOTED_SLOT_UNKNOWN' }),
      );
    },
  );

  it('reads the configured cmdline file, prefers a configured slot, and fails with an actionable error', async () => {
    await withTempDir(async (dir) => {
      const cmdlinePath = join(dir, 'cmdline');
      await expect(readBootedSlot({ cmdlinePath })).rejects.toMatchObject({
        code: 'ERR_BOOTCTL_BOOTED_SLOT_UNKNOWN',
        message: expect.stringContaining('does not exist'),
      });
      await writeFile(cmdlinePath, 'quiet\n');
      await expect(readBootedSlot({ cmdlinePath })).rejects.toMatchObject({
        message: expect.stringContaining('abota.slot=A|B'),
      });
      await writeFile(cmdlinePath, 'quiet abota.slot=B\n');
      expect(await readBootedSlot({ cmdlinePath })).toBe('B');
      expect(await readBootedSlot({ cmdlinePath, bootedSlot: 'A' })).toBe('A');
      await expect(readBootedSlot({ bootedSlot: 'C' as SlotName })).rejects.toMatchObject({
        code: 'ERR_BOOTCTL_UNKNOWN_SLOT',
      });
    });
  });
});
