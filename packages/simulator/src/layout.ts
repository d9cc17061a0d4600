// Where everything of a simulated VM lives inside its directory. One place, so the VM, the
// agent config it writes and the tests agree on every path.
import { join } from 'node:path';
import type { SlotName } from '@abota/client';

export interface SlotPaths {
  /** The boot partition of the slot (kernel + initrd stand-in). */
  boot: string;
  /** Its dm-verity hash area (a separate file, like a separate hash partition). */
  bootHash: string;
  /** The root filesystem partition of the slot. */
  rootfs: string;
  /** Its dm-verity hash area. */
  rootfsHash: string;
}

export interface VmPaths {
  dir: string;
  slots: Record<SlotName, SlotPaths>;
  /** The GRUB environment block on the (simulated) ESP, outside both slots. */
  grubenv: string;
  /** What the kernel command line of the current boot says (the agent reads abota.slot= here). */
  cmdline: string;
  /** The persistent data partition: the agent's journal, state and device key. */
  dataDir: string;
  /** The trust root baked into the (verity-protected) root filesystem. */
  trustRoot: string;
  deviceKey: string;
  agentConfig: string;
  /** Simulator bookkeeping that is not part of the device (boot id, boot log, fault switches). */
  simDir: string;
  bootId: string;
  bootLog: string;
  /** Per slot: the root hash the signed boot artifact gives the kernel (see boot-artifacts.ts). */
  bootArtifacts: string;
  /** Touched by the agent's reboot command; the simulator reboots when it appears. */
  rebootRequest: string;
}

export function vmPaths(dir: string): VmPaths {
  const disk = join(dir, 'disk');
  const slot = (s: SlotName): SlotPaths => ({
    boot: join(disk, `boot${s}.img`),
    bootHash: join(disk, `boot${s}.verity`),
    rootfs: join(disk, `rootfs${s}.img`),
    rootfsHash: join(disk, `rootfs${s}.verity`),
  });
  const simDir = join(dir, 'sim');
  return {
    dir,
    slots: { A: slot('A'), B: slot('B') },
    grubenv: join(dir, 'efi', 'grubenv'),
    cmdline: join(dir, 'proc', 'cmdline'),
    dataDir: join(dir, 'data'),
    trustRoot: join(dir, 'etc', 'abota', 'root.json'),
    deviceKey: join(dir, 'data', 'device-key.json'),
    agentConfig: join(dir, 'etc', 'abota', 'agent.json'),
    simDir,
    bootId: join(simDir, 'boot-id'),
    bootLog: join(simDir, 'boot-log.jsonl'),
    bootArtifacts: join(simDir, 'boot-artifacts.json'),
    rebootRequest: join(simDir, 'reboot-requested'),
  };
}

/** The file a health check looks for: present = the slot's system is unhealthy. */
export function unhealthyMarker(paths: VmPaths, slot: SlotName): string {
  return join(paths.simDir, `unhealthy-${slot}`);
}
