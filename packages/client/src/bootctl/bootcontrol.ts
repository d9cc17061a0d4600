// The seam between the installer/agent and the bootloader: which slot is running, which one boots
// next, and the try-once / confirm / reject transitions of an A/B update (docs/architecture.md "The
// device side"). One interface; implementations for GRUB, U-Boot and a JSON state file.
import { ClientError } from '../errors.js';
import { readSmallFile } from '../atomic-file.js';

export type SlotName = 'A' | 'B';
export const SLOT_NAMES: readonly SlotName[] = ['A', 'B'];

export interface SlotState {
  /** The bootloader may still choose this slot (not marked bad, attempts left). */
  bootable: boolean;
  /**
   * The bootloader treats the slot as confirmed: no unconfirmed trial boot has used up its
   * attempt. Note (GRUB, RAUC U-Boot): right after `setTryOnce`, before the reboot, the
   * bootloader cannot tell an armed trial from a confirmed slot, so this reads true until
   * the trial boot consumes the attempt.
   */
  good: boolean;
}

export interface BootControl {
  /** The slot the running system was booted from (kernel cmdline or configuration, never guessed). */
  getBootedSlot(): Promise<SlotName>;
  /** The slot the bootloader will choose at the next boot; undefined if it would find none (rescue). */
  getPrimarySlot(): Promise<SlotName | undefined>;
  getSlotState(slot: SlotName): Promise<SlotState>;
  /** Confirm `slot` after a healthy boot; call on every healthy boot of the running slot. */
  markGood(slot: SlotName): Promise<void>;
  /** Never choose `slot` again until it is set primary or tried again. */
  markBad(slot: SlotName): Promise<void>;
  /** Boot `slot` once at the next boot; if that boot is not confirmed with markGood, fall back. */
  setTryOnce(slot: SlotName): Promise<void>;
  /** Make `slot` the slot to boot from now on. */
  setPrimary(slot: SlotName): Promise<void>;
  /**
   * Backends whose bootloader does not boot the slot's boot image where the installer wrote it
   * (uefi systemd-boot: UKIs on the ESP) take what they need from it here: called after the
   * image is written and before setTryOnce, with reads checked against the signed hash tree.
   */
  installBootImage?(slot: SlotName, image: VerifiedImageReader, where: string): Promise<void>;
}

/** Positional reads of an installed image; every byte returned was verified (throws otherwise). */
export interface VerifiedImageReader {
  readonly sizeBytes: number;
  read(position: number, length: number): Promise<Uint8Array>;
}

export function otherSlot(slot: SlotName): SlotName {
  return slot === 'A' ? 'B' : 'A';
}

/** Runtime check for callers outside TypeScript (config files, CLI arguments). */
export function assertSlotName(slot: unknown): asserts slot is SlotName {
  if (slot !== 'A' && slot !== 'B') {
    throw new ClientError('ERR_BOOTCTL_UNKNOWN_SLOT', `slot must be "A" or "B", got ${JSON.stringify(slot)}`);
  }
}

/** Where the booted slot comes from; shared by every BootControl implementation. */
export interface BootedSlotSource {
  /** Fixed booted slot (tests, or systems that pass it some other way); overrides the cmdline. */
  bootedSlot?: SlotName;
  /** Kernel command line file; default /proc/cmdline. */
  cmdlinePath?: string;
}

const CMDLINE_MAX_BYTES = 64 * 1024;
const CMDLINE_KEYS = ['abota.slot', 'rauc.slot'] as const;

/**
 * The booted slot named on a kernel command line by `abota.slot=` or `rauc.slot=` (the
 * bootloader scripts of docs/formats.md §2.3 / §3.4 put it there). Undefined when absent;
 * conflicting or unknown values throw.
 */
export function bootedSlotFromCmdline(cmdline: string, where = 'kernel command line'): SlotName | undefined {
  const found = new Set<string>();
  for (const token of cmdline.trim().split(/\s+/)) {
    const eq = token.indexOf('=');
    if (eq < 0) continue;
    const key = token.slice(0, eq);
    if ((CMDLINE_KEYS as readonly string[]).includes(key))
      found.add(token.slice(eq + 1).replace(/^"(.*)"$/, '$1'));
  }
  if (found.size === 0) return undefined;
  if (found.size > 1) {
    throw new ClientError(
      'ERR_BOOTCTL_BOOTED_SLOT_UNKNOWN',
      `${where} names conflicting booted slots: ${[...found].join(', ')}`,
    );
  }
  const [slot] = found;
  if (slot !== 'A' && slot !== 'B') {
    throw new ClientError(
      'ERR_BOOTCTL_BOOTED_SLOT_UNKNOWN',
      `${where} names booted slot ${JSON.stringify(slot)}; expected A or B`,
    );
  }
  return slot;
}

export async function readBootedSlot(source: BootedSlotSource): Promise<SlotName> {
  if (source.bootedSlot !== undefined) {
    assertSlotName(source.bootedSlot);
    return source.bootedSlot;
  }
  const path = source.cmdlinePath ?? '/proc/cmdline';
  const bytes = await readSmallFile(
    path,
    CMDLINE_MAX_BYTES,
    (size) =>
      new ClientError(
        'ERR_BOOTCTL_BOOTED_SLOT_UNKNOWN',
        `${path} is ${size} bytes; not a kernel command line`,
      ),
  );
  const slot = bytes === undefined ? undefined : bootedSlotFromCmdline(new TextDecoder().decode(bytes), path);
  if (slot === undefined) {
    throw new ClientError(
      'ERR_BOOTCTL_BOOTED_SLOT_UNKNOWN',
      `${bytes === undefined ? `${path} does not exist` : `${path} has no abota.slot= or rauc.slot=`}; ` +
        'make the bootloader pass abota.slot=A|B on the kernel command line, or configure bootedSlot',
    );
  }
  return slot;
}
