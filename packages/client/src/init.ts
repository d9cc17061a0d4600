// `abota-agent init`: make a new device's agent state — the data directory (mode 0700) and, for
// the file backend, the boot state (the given slot good and first, the other empty). The GRUB and
// U-Boot environments belong to the bootloader's own tools and are only checked (`doctor`). An
// existing boot state is never overwritten unless asked: it records which slot holds the system.
import { mkdir, stat } from 'node:fs/promises';
import type { SlotName } from './bootctl/bootcontrol.js';
import { initialBootState, writeBootStateFile } from './bootctl/file.js';
import type { AgentConfig } from './config.js';
import { ClientError } from './errors.js';

export interface InitOptions {
  /** The slot that holds the factory image and boots; default A. */
  primary?: SlotName;
  /** Replace an existing boot state. */
  force?: boolean;
}

export interface InitResult {
  dataDir: string;
  /** The boot state file written (file backend only). */
  bootState?: { path: string; primary: SlotName; replaced: boolean };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

export async function initDevice(config: AgentConfig, o: InitOptions = {}): Promise<InitResult> {
  const bc = config.bootControl;
  const primary = o.primary ?? 'A';
  let bootState: InitResult['bootState'];
  if (bc.backend === 'file') {
    const replaced = await exists(bc.statePath);
    if (replaced && o.force !== true) {
      throw new ClientError(
        'ERR_BOOTCTL_STATE_EXISTS',
        `boot state ${bc.statePath} already exists and says which slot holds the system; leave it, or replace it with "abota-agent init --force" (slot ${primary} becomes the only bootable slot)`,
      );
    }
    bootState = { path: bc.statePath, primary, replaced };
  }
  // The data directory first: a boot state without it would be a half-made device.
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  if (bootState !== undefined) await writeBootStateFile(bootState.path, initialBootState(primary));
  return { dataDir: config.dataDir, ...(bootState !== undefined ? { bootState } : {}) };
}
