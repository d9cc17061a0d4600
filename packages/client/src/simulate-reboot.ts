// `abota-agent simulate-reboot`: the reboot of a simulated device (file backend, or the uefi
// backend on a directory standing in for efivarfs), so abota can be tried without a bootloader or
// a VM. It plays the bootloader (file: fileSelectSlot on the boot state, the first good slot or a
// trial slot with a try left, which it consumes; uefi: the firmware boot manager — BootNext, then
// BootOrder — or systemd-boot — OneShot, Default, counter renames) and the kernel (the chosen slot
// as abota.slot= in the configured command-line file, a fresh boot id). It refuses a device whose
// command line or boot id are the kernel's own (/proc), or whose efivars are the firmware's (/sys).
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import type { SlotName } from './bootctl/bootcontrol.js';
import { emulateFileBoot } from './bootctl/file.js';
import { EfiVarStore } from './bootctl/efivarfs.js';
import {
  DEFAULT_BOOT_ENTRY_DESCRIPTIONS,
  DEFAULT_UKI_NAMES,
  emulateFirmwareBoot,
  emulateSystemdBootSlot,
} from './bootctl/uefi.js';
import type { AgentConfig } from './config.js';
import { ClientError } from './errors.js';

export interface SimulatedBoot {
  slot: SlotName;
  bootId: string;
}

export async function simulateReboot(config: AgentConfig): Promise<SimulatedBoot> {
  const bc = config.bootControl;
  if (bc.backend !== 'file' && bc.backend !== 'uefi') {
    throw new ClientError(
      'ERR_CONFIG_NOT_SIMULATED',
      `simulate-reboot plays the file and uefi backends' bootloaders; this device uses the ${bc.backend} backend: reboot it for real`,
    );
  }
  if (bc.backend === 'uefi' && bc.efivarsPath.startsWith('/sys/')) {
    throw new ClientError(
      'ERR_CONFIG_NOT_SIMULATED',
      `${bc.efivarsPath} holds the firmware's own variables; a simulated uefi device names a directory of its own in bootControl.efivarsPath`,
    );
  }
  const kernelFiles = [config.kernelCmdlinePath, config.bootIdPath].filter((p) => p.startsWith('/proc/'));
  if (kernelFiles.length > 0 || bc.bootedSlot !== undefined) {
    throw new ClientError(
      'ERR_CONFIG_NOT_SIMULATED',
      kernelFiles.length > 0
        ? `${kernelFiles.join(' and ')} belong to the running kernel; a simulated device names files of its own in kernelCmdlinePath and bootIdPath`
        : 'bootControl.bootedSlot fixes the booted slot, so a reboot could not change it; remove it and set kernelCmdlinePath',
    );
  }
  const slot =
    bc.backend === 'file'
      ? await emulateFileBoot(bc.statePath)
      : bc.mode === 'firmware'
        ? await emulateFirmwareBoot(
            new EfiVarStore({ root: bc.efivarsPath }),
            bc.bootEntries ?? DEFAULT_BOOT_ENTRY_DESCRIPTIONS,
          )
        : await emulateSystemdBootSlot(
            new EfiVarStore({ root: bc.efivarsPath }),
            bc.espPath,
            bc.ukiNames ?? DEFAULT_UKI_NAMES,
          );
  if (slot === 'rescue') {
    throw new ClientError(
      'ERR_BOOTCTL_STATE_INVALID',
      bc.backend === 'file'
        ? `${bc.statePath} names no bootable slot: the device would stop in rescue ("abota-agent init --force" resets it)`
        : `the ${bc.mode} boot of ${bc.efivarsPath} chose no slot: the device would stop in rescue`,
    );
  }
  const bootId = randomUUID();
  await writeFile(config.kernelCmdlinePath, `abota.slot=${slot}\n`);
  await writeFile(config.bootIdPath, `${bootId}\n`);
  return { slot, bootId };
}
