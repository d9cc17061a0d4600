// A boot-control backend kept in a small JSON file, for the simulator and tests: the same
// transitions as the bootloader backends (primary, try-once with a remaining-tries counter,
// good, bad) without a bootloader. `fileSelectSlot` plays the bootloader's part.
import * as v from 'valibot';
import { ClientError } from '../errors.js';
import { BOOT_STATE_WRITE, readSmallFile, writeFileAtomic } from '../atomic-file.js';
import { withPathLock } from './pathlock.js';
import {
  type BootControl,
  type BootedSlotSource,
  assertSlotName,
  otherSlot,
  readBootedSlot,
  type SlotName,
  type SlotState,
} from './bootcontrol.js';

const slotSchema = v.picklist(['A', 'B']);
const slotStatusSchema = v.object({
  /** good = confirmed; try = boot it while triesLeft > 0, unconfirmed; bad = never boot. */
  status: v.picklist(['good', 'try', 'bad']),
  triesLeft: v.pipe(v.number(), v.safeInteger(), v.minValue(0), v.maxValue(255)),
});
export const bootStateSchema = v.object({
  format: v.literal('abota-boot-state'),
  version: v.literal(1),
  /** Slots in boot priority order; each listed once. */
  order: v.pipe(v.array(slotSchema), v.minLength(1), v.maxLength(2)),
  slots: v.object({ A: slotStatusSchema, B: slotStatusSchema }),
});
export type BootState = v.InferOutput<typeof bootStateSchema>;

const STATE_MAX_BYTES = 64 * 1024;

/** A fresh device: `primary` good and first, the other slot empty (bad) until installed. */
export function initialBootState(primary: SlotName = 'A'): BootState {
  assertSlotName(primary);
  const other = otherSlot(primary);
  return {
    format: 'abota-boot-state',
    version: 1,
    order: [primary, other],
    slots: {
      [primary]: { status: 'good', triesLeft: 0 },
      [other]: { status: 'bad', triesLeft: 0 },
    } as BootState['slots'],
  };
}

/**
 * The bootloader's decision for a state file: the first slot in `order` that is good, or on
 * trial with tries left (one try is consumed and persisted before booting it, so a boot that is
 * never confirmed cannot be retried forever); none → 'rescue'.
 */
export function fileSelectSlot(state: BootState): { slot: SlotName | 'rescue'; newState: BootState } {
  const newState: BootState = structuredClone(state);
  for (const slot of newState.order) {
    const s = newState.slots[slot];
    if (s.status === 'good') return { slot, newState };
    if (s.status === 'try' && s.triesLeft > 0) {
      s.triesLeft -= 1;
      return { slot, newState };
    }
  }
  return { slot: 'rescue', newState };
}

function slotStateOf(state: BootState, slot: SlotName): SlotState {
  const s = state.slots[slot];
  const listed = state.order.includes(slot);
  return {
    bootable: listed && (s.status === 'good' || (s.status === 'try' && s.triesLeft > 0)),
    good: listed && s.status === 'good',
  };
}

export async function readBootStateFile(path: string): Promise<BootState> {
  const bytes = await readSmallFile(
    path,
    STATE_MAX_BYTES,
    (size) =>
      new ClientError(
        'ERR_BOOTCTL_STATE_INVALID',
        `boot state ${path} is ${size} bytes; expected a small JSON file`,
      ),
  );
  if (bytes === undefined) {
    throw new ClientError(
      'ERR_BOOTCTL_STATE_MISSING',
      `boot state ${path} does not exist; create it with "abota-agent init" (library: writeBootStateFile(path, initialBootState()))`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new ClientError('ERR_BOOTCTL_STATE_INVALID', `boot state ${path} is not JSON: ${String(e)}`, {
      cause: e,
    });
  }
  const parsed = v.safeParse(bootStateSchema, json);
  if (!parsed.success) {
    const issue = parsed.issues[0];
    throw new ClientError(
      'ERR_BOOTCTL_STATE_INVALID',
      `boot state ${path} is invalid at ${v.getDotPath(issue) ?? '(root)'}: ${issue.message}`,
    );
  }
  if (new Set(parsed.output.order).size !== parsed.output.order.length) {
    throw new ClientError('ERR_BOOTCTL_STATE_INVALID', `boot state ${path} lists a slot twice in order`);
  }
  return parsed.output;
}

export async function writeBootStateFile(path: string, state: BootState): Promise<void> {
  await writeFileAtomic(
    path,
    new TextEncoder().encode(`${JSON.stringify(v.parse(bootStateSchema, state), null, 2)}\n`),
    BOOT_STATE_WRITE,
  );
}

/** Play the bootloader against a state file; for the simulator and tests. */
export async function emulateFileBoot(path: string): Promise<SlotName | 'rescue'> {
  return withPathLock(path, async () => {
    const { slot, newState } = fileSelectSlot(await readBootStateFile(path));
    await writeBootStateFile(path, newState);
    return slot;
  });
}

export interface FileBootControlOptions extends BootedSlotSource {
  statePath: string;
  /** Boots allowed by setTryOnce before falling back; default 1. */
  tryBoots?: number;
}

/** BootControl over a JSON state file written atomically (temp + fsync + rename + fsync dir). */
export class FileBootControl implements BootControl {
  readonly statePath: string;
  readonly #options: FileBootControlOptions;

  constructor(options: FileBootControlOptions) {
    this.statePath = options.statePath;
    this.#options = options;
  }

  getBootedSlot(): Promise<SlotName> {
    return readBootedSlot(this.#options);
  }

  async getPrimarySlot(): Promise<SlotName | undefined> {
    const { slot } = fileSelectSlot(await readBootStateFile(this.statePath));
    return slot === 'rescue' ? undefined : slot;
  }

  async getSlotState(slot: SlotName): Promise<SlotState> {
    assertSlotName(slot);
    return slotStateOf(await readBootStateFile(this.statePath), slot);
  }

  markGood(slot: SlotName): Promise<void> {
    return this.#update(slot, (state) => {
      state.slots[slot] = { status: 'good', triesLeft: 0 };
    });
  }

  markBad(slot: SlotName): Promise<void> {
    return this.#update(slot, (state) => {
      state.slots[slot] = { status: 'bad', triesLeft: 0 };
    });
  }

  setTryOnce(slot: SlotName): Promise<void> {
    return this.#update(slot, (state) => {
      state.slots[slot] = { status: 'try', triesLeft: this.#options.tryBoots ?? 1 };
      state.order = [slot, otherSlot(slot)];
    });
  }

  setPrimary(slot: SlotName): Promise<void> {
    return this.#update(slot, (state) => {
      state.slots[slot] = { status: 'good', triesLeft: 0 };
      state.order = [slot, otherSlot(slot)];
    });
  }

  async #update(slot: SlotName, change: (state: BootState) => void): Promise<void> {
    assertSlotName(slot);
    await withPathLock(this.statePath, async () => {
      const state = await readBootStateFile(this.statePath);
      const before = JSON.stringify(state);
      change(state);
      if (JSON.stringify(state) !== before) await writeBootStateFile(this.statePath, state);
    });
  }
}
