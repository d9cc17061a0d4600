// Child process of src/bootctl/uefi-kill.test.ts: what the agent asks of the boot control after
// a boot (confirm and commit the running slot) and then for A→B→A updates in a loop, without
// rebooting, until the parent SIGKILLs it. In systemd-boot mode each install copies the UKI out of
// the boot image file given as the 5th argument onto the ESP. Prints "ready" once loaded.
import { readFile } from 'node:fs/promises';
import { otherSlot, type SlotName } from '../src/bootctl/bootcontrol.js';
import { UefiBootControl, type UefiMode } from '../src/bootctl/uefi.js';

const [mode, efivars, espPath, booted, bootImage] = process.argv.slice(2) as [
  UefiMode,
  string,
  string,
  SlotName,
  string,
];
const bytes = await readFile(bootImage);
const image = { sizeBytes: bytes.length, read: async (p: number, n: number) => bytes.subarray(p, p + n) };
const control = new UefiBootControl({ mode, efivars, espPath, bootedSlot: booted });
process.stdout.write('ready\n');
// After the boot: the running slot is confirmed (a trial that came up is committed; after a
// rollback this abandons the trial slot), as the agent's afterBoot does.
await control.markGood(booted);
await control.setPrimary(booted);
for (let target = otherSlot(booted); ; target = otherSlot(target)) {
  await control.markBad(target); // the installer, before writing
  await control.installBootImage(target, image, `slot ${target} boot image`); // after writing
  await control.setTryOnce(target); // armed
  await control.markGood(target); // the trial came up healthy (as if booted)
  await control.setPrimary(target); // commit
}
