// Power cuts at every write step of an A→B update through the uefi backend, on a directory
// standing in for efivarfs (file semantics only: a variable is the old or the new value, as
// SetVariable() guarantees on real firmware) and a directory ESP. After each cut the device
// boots (the emulated firmware / systemd-boot), then the agent resumes from its journal's phase
// as abota-agent does. In systemd-boot mode the install step copies slot B's UKI out of its FAT
// boot image onto the ESP (installBootImage), so its writes, unlinks and rename are cut too.
// Checked: no boot ever ends in rescue, slot B only boots once its image (systemd-boot: the UKI
// on the ESP, byte for byte) is complete, and every run ends committed on B or rolled back to A. The same with real firmware
// and a SIGKILLed agent is h18-vm's VM scenario (npm run test:vm).
import { randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeWithTool, withTempDir } from '@abota/testkit';
import { beforeAll, expect, it } from 'vitest';
import {
  makeFatImage,
  provisionFirmwareEfivars,
  provisionSystemdBootEsp,
  unlockTree,
} from '../../test/uefi-fixtures.js';
import type { SlotName } from './bootcontrol.js';
import { EfiVarStore } from './efivarfs.js';
import { emulateFirmwareBoot, emulateSystemdBootSlot, type UefiMode, UefiBootControl } from './uefi.js';

class PowerCut extends Error {}

/** The agent's phases, as its install journal keeps them (only advanced after a step completes). */
type Phase = 'verified' | 'writing' | 'written' | 'boot-pending' | 'armed' | 'committed' | 'rolled-back';

interface Outcome {
  outcome: 'committed' | 'rolled-back';
  cut: boolean;
  boots: (SlotName | 'rescue')[];
}

/** Slot B's boot image (systemd-boot mode: a FAT image with the UKI, as release build makes it). */
const UKI_B = randomBytes(2_500_000);
let bootImageB: Buffer = Buffer.from('boot image of slot B, release 2\n');

async function espFileOf(esp: string, stem: string): Promise<Buffer> {
  const files = (await readdir(join(esp, 'EFI', 'Linux'))).filter((f) => f.startsWith(stem));
  expect(files).toHaveLength(1);
  return readFile(join(esp, 'EFI', 'Linux', files[0]!));
}

async function update(mode: UefiMode, dir: string, cutAt: number): Promise<Outcome> {
  let steps = 0;
  let cut = false;
  const step = () => {
    steps += 1;
    if (steps === cutAt) {
      cut = true;
      throw new PowerCut(`cut at step ${steps}`);
    }
  };
  let efivars: string;
  let esp = join(dir, 'esp');
  if (mode === 'firmware') efivars = await provisionFirmwareEfivars(join(dir, 'efivars'));
  else ({ efivars, esp } = await provisionSystemdBootEsp(dir));
  const store = new EfiVarStore({ root: efivars });
  const control = new UefiBootControl({ mode, efivars, espPath: esp, bootedSlot: 'A', beforeStep: step });
  const imageB = join(dir, 'boot-efi-b.img');
  let imageComplete = false;
  const boots: (SlotName | 'rescue')[] = [];
  const boot = async (): Promise<SlotName | 'rescue'> => {
    const slot =
      mode === 'firmware' ? await emulateFirmwareBoot(store) : await emulateSystemdBootSlot(store, esp);
    boots.push(slot);
    expect(slot, `boot ${boots.length} after ${steps} steps`).not.toBe('rescue');
    if (slot === 'B') expect(imageComplete, 'slot B booted before its image was complete').toBe(true);
    if (slot === 'B' && mode === 'systemd-boot')
      expect((await espFileOf(esp, 'abota-b')).equals(UKI_B)).toBe(true);
    return slot;
  };

  let phase: Phase = 'verified';
  let booted: SlotName | 'rescue' = 'A';
  for (let round = 0; round < 20; round++) {
    try {
      if (phase === 'verified') {
        await control.markBad('B');
        phase = 'writing';
      }
      if (phase === 'writing') {
        imageComplete = false;
        const third = Math.ceil(bootImageB.length / 3);
        for (let at = 0; at < bootImageB.length; at += third) {
          step();
          await writeFile(imageB, bootImageB.subarray(at, at + third), { flag: at === 0 ? 'w' : 'a' });
        }
        imageComplete = true;
        phase = 'written';
      }
      if (phase === 'written') {
        const bytes = await readFile(imageB);
        const reader = {
          sizeBytes: bytes.length,
          read: async (p: number, n: number) => bytes.subarray(p, p + n),
        };
        await control.installBootImage('B', reader, 'slot B boot image');
        await control.setTryOnce('B');
        phase = 'boot-pending';
      }
      if (phase === 'boot-pending' || phase === 'armed') {
        if (phase === 'boot-pending') phase = 'armed'; // the journal says armed before the reboot
        booted = await boot();
        if (booted === 'B') {
          await control.markGood('B');
          await control.setPrimary('B');
          phase = 'committed';
        } else {
          await control.markBad('B');
          await control.markGood('A');
          phase = 'rolled-back';
        }
      }
      if (phase === 'committed' || phase === 'rolled-back') {
        // The device keeps booting the outcome.
        const expected: SlotName = phase === 'committed' ? 'B' : 'A';
        for (let i = 0; i < 2; i++) {
          expect(await boot()).toBe(expected);
          await control.markGood(expected);
        }
        expect(await control.getPrimarySlot()).toBe(expected);
        expect(await control.getSlotState(expected)).toEqual({ bootable: true, good: true });
        if (phase === 'rolled-back') expect((await control.getSlotState('B')).bootable).toBe(false);
        return { outcome: phase, cut, boots };
      }
    } catch (e) {
      if (!(e instanceof PowerCut)) throw e;
      // Power cut: the machine boots again; the agent then resumes from its journal's phase.
      booted = await boot();
      if (phase === 'armed' && booted === 'A') {
        // Booted the old slot after the trial was armed: the agent rolls back (afterBoot).
        await control.markBad('B');
        phase = 'rolled-back';
      } else if (phase === 'armed' && booted === 'B') {
        // The cut was in the commit on B and B still boots (BootOrder / default already B).
      } else if (phase === 'boot-pending') {
        phase = 'written'; // armed=false: the agent arms the trial again
      }
    }
  }
  throw new Error('no outcome after 20 rounds');
}

describeWithTool('mcopy', 'mtools', 'power cuts', () => {
  beforeAll(async () => {
    await withTempDir(async (dir) => {
      await makeFatImage(join(dir, 'boot.img'), 4 * 1024 * 1024, { '/EFI/BOOT/BOOTX64.EFI': UKI_B });
      bootImageB = await readFile(join(dir, 'boot.img'));
    });
  });

  it.each(['firmware', 'systemd-boot'] as const)(
    '%s: a power cut at any write step boots a complete slot and ends committed or rolled back',
    async (mode) => {
      const outcomes: string[] = [];
      for (let cutAt = 1; ; cutAt++) {
        const r = await withTempDir(async (dir) => {
          try {
            return await update(mode, dir, cutAt);
          } finally {
            await unlockTree(dir);
          }
        });
        if (!r.cut) {
          expect(r.outcome).toBe('committed'); // no cut at all: the plain update
          break;
        }
        outcomes.push(`${cutAt}:${r.outcome}:${r.boots.join('')}`);
      }
      // Every step was cut once; a cut in the commit before BootOrder/default moved rolls back.
      expect(outcomes.length).toBeGreaterThan(8);
      expect(outcomes.some((o) => o.includes(':committed:'))).toBe(true);
      console.log(`${mode}: ${outcomes.length} cut points: ${outcomes.join(' ')}`);
    },
    120_000,
  );
});
