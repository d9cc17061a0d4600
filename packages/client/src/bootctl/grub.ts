// GRUB boot control with RAUC's ORDER / <slot>_OK / <slot>_TRY scheme (docs/formats.md §2.3): the
// OS side that `rauc status mark-*` implements, and a pure model of the grub.cfg selection
// script so the simulator can play GRUB's part.
import {
  type BootControl,
  type BootedSlotSource,
  readBootedSlot,
  SLOT_NAMES,
  type SlotName,
  type SlotState,
  assertSlotName,
} from './bootcontrol.js';
import { editGrubEnvFile, type GrubEnvEdit, readGrubEnvFile } from './grubenv.js';

/** RAUC's default location (docs/formats.md §2.3); keep it outside the A/B root filesystems. */
export const DEFAULT_GRUBENV_PATH = '/boot/grub/grubenv';
/** What the grub.cfg script persists with `save_env`, in that order (docs/formats.md §2.3 step 4). */
export const GRUB_SAVED_VARIABLES = ['A_TRY', 'A_OK', 'B_TRY', 'B_OK', 'ORDER'] as const;

const DEFAULT_ORDER = 'A B';

/** GRUB's `[ "$X" -eq 1 ]` reads a leading decimal number; anything else counts as 0. */
function grubInt(value: string | undefined): number {
  const m = /^\s*([+-]?\d+)/.exec(value ?? '');
  return m?.[1] === undefined ? 0 : Number.parseInt(m[1], 10);
}

function orderOf(env: ReadonlyMap<string, string>): string[] {
  return (env.get('ORDER') ?? DEFAULT_ORDER).split(/\s+/).filter((n) => n !== '');
}

/**
 * One run of RAUC's grub.cfg selection script over `env` (the variables `load_env` reads):
 * defaults ORDER="A B", *_OK=0, *_TRY=0; for each slot in ORDER set its TRY=1 and pick the
 * first that was OK=1, TRY=0; if none was picked, reset TRY of every OK slot and boot rescue;
 * then `save_env A_TRY A_OK B_TRY B_OK ORDER`. `newEnv` is the file's content after save_env.
 * Unknown names in ORDER are skipped, as the script does.
 */
export function grubSelectSlot(env: ReadonlyMap<string, string>): {
  slot: SlotName | 'rescue';
  newEnv: Map<string, string>;
} {
  const mem = new Map<string, string>([
    ['ORDER', DEFAULT_ORDER],
    ['A_OK', '0'],
    ['B_OK', '0'],
    ['A_TRY', '0'],
    ['B_TRY', '0'],
  ]);
  for (const [k, v] of env) mem.set(k, v);
  let selected: SlotName | undefined;
  for (const name of orderOf(mem)) {
    if (name !== 'A' && name !== 'B') continue;
    const ok = grubInt(mem.get(`${name}_OK`));
    const tried = grubInt(mem.get(`${name}_TRY`));
    mem.set(`${name}_TRY`, '1');
    if (ok === 1 && tried === 0) {
      selected = name;
      break;
    }
  }
  if (selected === undefined) {
    // A good-but-unconfirmed slot gets another chance next time instead of staying dead.
    for (const s of SLOT_NAMES) {
      if (grubInt(mem.get(`${s}_OK`)) === 1 && grubInt(mem.get(`${s}_TRY`)) === 1) mem.set(`${s}_TRY`, '0');
    }
  }
  const newEnv = new Map(env);
  for (const name of GRUB_SAVED_VARIABLES) newEnv.set(name, mem.get(name)!);
  return { slot: selected ?? 'rescue', newEnv };
}

/**
 * Play GRUB at boot against a grubenv file: select with `grubSelectSlot` and persist like
 * `save_env` (set the five variables in place, same block size). For the simulator and tests.
 */
export async function emulateGrubBoot(envPath: string): Promise<SlotName | 'rescue'> {
  let slot: SlotName | 'rescue' = 'rescue';
  await editGrubEnvFile(envPath, (vars) => {
    const r = grubSelectSlot(vars);
    slot = r.slot;
    return GRUB_SAVED_VARIABLES.map((name): GrubEnvEdit => ({ op: 'set', name, value: r.newEnv.get(name)! }));
  });
  return slot;
}

export interface GrubBootControlOptions extends BootedSlotSource {
  /** grubenv file; default /boot/grub/grubenv. It must exist (`grub-editenv FILE create`). */
  envPath?: string;
}

/**
 * BootControl over a grubenv, writing exactly what RAUC writes (docs/formats.md §2.3). setTryOnce
 * and setPrimary write the same thing (`X_OK=1 X_TRY=0 ORDER="X …"`): the trial comes from the
 * grub.cfg script, which persists X_TRY=1 before booting X, so an unconfirmed boot falls back.
 * The running slot must be marked good on every healthy boot (the script sets its TRY=1 each time).
 */
export class GrubBootControl implements BootControl {
  readonly envPath: string;
  readonly #source: BootedSlotSource;

  constructor(options: GrubBootControlOptions = {}) {
    this.envPath = options.envPath ?? DEFAULT_GRUBENV_PATH;
    this.#source = options;
  }

  getBootedSlot(): Promise<SlotName> {
    return readBootedSlot(this.#source);
  }

  async getPrimarySlot(): Promise<SlotName | undefined> {
    // RAUC's "primary" (first in ORDER with OK=1 and TRY=0) is exactly what the script picks.
    const { slot } = grubSelectSlot(await this.#read());
    return slot === 'rescue' ? undefined : slot;
  }

  async getSlotState(slot: SlotName): Promise<SlotState> {
    assertSlotName(slot);
    const env = await this.#read();
    const good =
      orderOf(env).includes(slot) &&
      grubInt(env.get(`${slot}_OK`)) === 1 &&
      grubInt(env.get(`${slot}_TRY`)) === 0;
    return { bootable: good, good };
  }

  async markGood(slot: SlotName): Promise<void> {
    assertSlotName(slot);
    await this.#edit([
      [`${slot}_OK`, '1'],
      [`${slot}_TRY`, '0'],
    ]);
  }

  async markBad(slot: SlotName): Promise<void> {
    assertSlotName(slot);
    await this.#edit([
      [`${slot}_OK`, '0'],
      [`${slot}_TRY`, '0'],
    ]);
  }

  async setTryOnce(slot: SlotName): Promise<void> {
    await this.setPrimary(slot);
  }

  async setPrimary(slot: SlotName): Promise<void> {
    assertSlotName(slot);
    // ORDER is computed from the file inside the same locked read–modify–write.
    await this.#edit((env) => [
      [`${slot}_OK`, '1'],
      [`${slot}_TRY`, '0'],
      ['ORDER', [slot, ...orderOf(env).filter((n) => n !== slot)].join(' ')],
    ]);
  }

  async #read(): Promise<Map<string, string>> {
    return (await readGrubEnvFile(this.envPath)).vars;
  }

  async #edit(
    pairs:
      | readonly (readonly [string, string])[]
      | ((env: ReadonlyMap<string, string>) => [string, string][]),
  ): Promise<void> {
    await editGrubEnvFile(this.envPath, (env) =>
      (typeof pairs === 'function' ? pairs(env) : pairs).map(
        ([name, value]): GrubEnvEdit => ({ op: 'set', name, value }),
      ),
    );
  }
}
