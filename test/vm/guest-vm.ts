// One boot of the full guest under the QEMU harness (qemu.ts): SSH forwarded from 127.0.0.1,
// the update server reached through the guestfwd, and what the guest's console says about the
// boot (slot GRUB chose, init done, the agent's peak memory printed at shutdown).
import { mkdir } from 'node:fs/promises';
import { CONSOLE_MARKERS } from './guest/init-scripts.js';
import { Vm } from './qemu.js';

export const BOOT_TIMEOUT_MS = 300_000;

export interface GuestBootOptions {
  disk: string;
  /** Directory of this boot's serial log and OVMF vars. */
  dir: string;
  serverPort: number;
  sshPort: number;
  /** false: a reboot ends QEMU (the test restarts it, e.g. after editing the disk). */
  allowReboot: boolean;
  /** The VM's own OVMF varstore (GRUBless disks: their boot entries); default a fresh copy. */
  vars?: string | undefined;
  /** The Secure Boot firmware (the disk's varstore enrols the key that signed its UKIs). */
  secureBoot?: boolean | undefined;
}

export async function bootGuest(o: GuestBootOptions): Promise<Vm> {
  await mkdir(o.dir, { recursive: true });
  return Vm.start({
    disk: o.disk,
    dir: o.dir,
    serverPort: o.serverPort,
    hostForwards: [{ hostPort: o.sshPort, guestPort: 22 }],
    allowReboot: o.allowReboot,
    ...(o.vars === undefined ? {} : { vars: o.vars }),
    ...(o.secureBoot === true ? { secureBoot: true } : {}),
  });
}

/** The slot GRUB boots next after position `from` of the console. */
export async function slotBooted(vm: Vm, from = 0): Promise<'A' | 'B'> {
  const m = await vm.waitFor(/abota: booting slot ([AB])/, BOOT_TIMEOUT_MS, from);
  return m[1] as 'A' | 'B';
}

/**
 * The slot the firmware boots next after `from` (GRUBless disks: the Boot#### it starts; with
 * Secure Boot, after it checked the UKI's signature, which takes minutes on a loaded TCG host).
 */
export async function firmwareSlotBooted(vm: Vm, from = 0, timeoutMs = BOOT_TIMEOUT_MS): Promise<'A' | 'B'> {
  const m = await vm.waitFor(/BdsDxe: starting Boot000[12] "abota ([AB])"/, timeoutMs, from);
  return m[1] as 'A' | 'B';
}

/** Seconds from QEMU's start until the guest's rcS finished (network up, agent next). */
export async function secondsToInit(vm: Vm, from = 0, timeoutMs = BOOT_TIMEOUT_MS): Promise<number> {
  await vm.waitFor(new RegExp(CONSOLE_MARKERS.rcsDone), timeoutMs, from);
  return (performance.now() - vm.startedAt) / 1000;
}

/** The agent's VmHWM (KiB) rcK printed at each orderly shutdown so far. */
export function agentPeaksKiB(consoleOutput: string): number[] {
  const re = new RegExp(`${CONSOLE_MARKERS.agentPeak} VmHWM: (\\d+) kB`, 'g');
  return [...consoleOutput.matchAll(re)].map((m) => Number(m[1]));
}
