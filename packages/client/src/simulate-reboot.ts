// `abota-agent simulate-reboot`: the reboot of a simulated device (file backend), so abota can be
// tried without a bootloader or a VM. It plays the bootloader (fileSelectSlot on the boot state:
// the first good slot, or a trial slot with a try left, which it consumes) and the kernel (the
// chosen slot as abota.slot= in the configured command-line file, a fresh boot id). It refuses a
// device whose command line or boot id are the kernel's own (/proc).
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import type { SlotName } from './bootctl/bootcontrol.js';
import { emulateFileBoot } from './bootctl/file.js';
import type { AgentConfig } from './config.js';
import { ClientError } from './errors.js';

export interface SimulatedBoot {
  slot: SlotName;
  bootId: string;
}

export async function simulateReboot(config: AgentConfig): Promise<SimulatedBoot> {
  const bc = config.bootControl;
  if (bc.backend !== 'file') {
    throw new ClientError(
      'ERR_CONFIG_NOT_SIMULATED',
      `simulate-reboot plays the file backend's bootloader; this device uses the ${bc.backend} backend: reboot it for real`,
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
  const slot = await emulateFileBoot(bc.statePath);
  if (slot === 'rescue') {
    throw new ClientError(
      'ERR_BOOTCTL_STATE_INVALID',
      `${bc.statePath} names no bootable slot: the device would stop in rescue ("abota-agent init --force" resets it)`,
    );
  }
  const bootId = randomUUID();
  await writeFile(config.kernelCmdlinePath, `abota.slot=${slot}\n`);
  await writeFile(config.bootIdPath, `${bootId}\n`);
  return { slot, bootId };
}
