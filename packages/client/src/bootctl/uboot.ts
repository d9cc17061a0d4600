// U-Boot boot control over the U-Boot environment (docs/formats.md §3.4), in the two conventions
// devices ship with: bootcount/upgrade_available/bootlimit/altbootcmd with a slot selector
// variable (SWUpdate/Mender style), or RAUC's BOOT_ORDER/BOOT_<slot>_LEFT boot script.
// Also a pure model of U-Boot's side of each, for the simulator.
import { ClientError } from '../errors.js';
import {
  type BootControl,
  type BootedSlotSource,
  assertSlotName,
  otherSlot,
  readBootedSlot,
  type SlotName,
  type SlotState,
} from './bootcontrol.js';
import { editUBootEnv, readUBootEnv, type UBootEnvConfig } from './ubootenv.js';

export type UBootConvention =
  | {
      kind: 'bootcount';
      /** Variable the boot script reads to pick the slot; default `boot_slot`. */
      selectorVariable?: string;
      /** Selector value for each slot; default A → "A", B → "B" (Mender uses partition numbers). */
      selectorValues?: { A: string; B: string };
      /** `bootlimit` written by setTryOnce: boots allowed before altbootcmd; default 1 (try once). */
      bootLimit?: number;
    }
  | {
      kind: 'rauc';
      /** BOOT_<slot>_LEFT after markGood / setPrimary and when the script resets; default 3. */
      attempts?: number;
      /** BOOT_<slot>_LEFT written by setTryOnce; default 1. */
      tryAttempts?: number;
    };

interface BootcountSettings {
  selector: string;
  values: { A: string; B: string };
  bootLimit: number;
}

function bootcountSettings(c: Extract<UBootConvention, { kind: 'bootcount' }>): BootcountSettings {
  return {
    selector: c.selectorVariable ?? 'boot_slot',
    values: c.selectorValues ?? { A: 'A', B: 'B' },
    bootLimit: c.bootLimit ?? 1,
  };
}

function raucAttempts(c: Extract<UBootConvention, { kind: 'rauc' }>): {
  attempts: number;
  tryAttempts: number;
} {
  return { attempts: c.attempts ?? 3, tryAttempts: c.tryAttempts ?? 1 };
}

/** U-Boot's env_get_ulong(name, 10, 0): leading decimal digits, anything else is 0. */
function ulong10(value: string | undefined): number {
  const m = /^\s*(\d+)/.exec(value ?? '');
  return m?.[1] === undefined ? 0 : Number.parseInt(m[1], 10);
}

/** RAUC's counters are hex (`setexpr` output; RAUC writes `%x`), docs/formats.md §3.4. */
function hexCount(value: string | undefined): number {
  const m = /^\s*(?:0x)?([0-9a-f]+)/i.exec(value ?? '');
  return m?.[1] === undefined ? 0 : Number.parseInt(m[1], 16);
}

function selectedSlot(env: ReadonlyMap<string, string>, s: BootcountSettings): SlotName | undefined {
  const v = env.get(s.selector);
  if (v === s.values.A) return 'A';
  if (v === s.values.B) return 'B';
  return undefined;
}

function raucOrder(env: ReadonlyMap<string, string>): string[] {
  const raw = env.get('BOOT_ORDER');
  return (raw === undefined || raw === '' ? 'A B' : raw).split(/\s+/).filter((n) => n !== '');
}

function raucLeft(env: ReadonlyMap<string, string>, slot: SlotName, attempts: number): number {
  const raw = env.get(`BOOT_${slot}_LEFT`);
  return raw === undefined || raw === '' ? attempts : hexCount(raw);
}

/**
 * U-Boot's side of one boot, as a pure function of the environment it loads.
 *
 * bootcount: U-Boot increments `bootcount` (saved only while `upgrade_available` ≠ 0); when
 * `bootlimit` ≠ 0 and bootcount > bootlimit it runs `altbootcmd` instead of `bootcmd`. The
 * altbootcmd is modelled as the conventional script (switch the selector to the other slot,
 * `upgrade_available=0`, saveenv, boot) — its text is not interpreted; with no altbootcmd U-Boot
 * stays at its prompt ('rescue'). A selector naming no slot also ends in 'rescue'.
 *
 * rauc: defaults BOOT_ORDER="A B", BOOT_<slot>_LEFT=attempts; the first slot in BOOT_ORDER with
 * LEFT > 0 is decremented (hex), saved and booted; if none is left all counters are reset to
 * `attempts`, saved, and the board resets ('rescue').
 */
export function ubootSelectSlot(
  env: ReadonlyMap<string, string>,
  convention: UBootConvention,
): { slot: SlotName | 'rescue'; newEnv: Map<string, string> } {
  const newEnv = new Map(env);
  if (convention.kind === 'bootcount') {
    const s = bootcountSettings(convention);
    const upgrading = ulong10(env.get('upgrade_available')) !== 0;
    const bootcount = upgrading ? ulong10(env.get('bootcount')) + 1 : 1;
    if (upgrading) newEnv.set('bootcount', String(bootcount));
    const limit = ulong10(env.get('bootlimit'));
    const current = selectedSlot(env, s);
    if (limit !== 0 && bootcount > limit) {
      if (!env.has('altbootcmd') || current === undefined) return { slot: 'rescue', newEnv };
      const fallback = otherSlot(current);
      newEnv.set(s.selector, s.values[fallback]);
      newEnv.set('upgrade_available', '0');
      return { slot: fallback, newEnv };
    }
    return { slot: current ?? 'rescue', newEnv };
  }
  const { attempts } = raucAttempts(convention);
  if (!newEnv.get('BOOT_ORDER')) newEnv.set('BOOT_ORDER', 'A B');
  for (const slot of ['A', 'B'] as const) {
    if (!newEnv.get(`BOOT_${slot}_LEFT`)) newEnv.set(`BOOT_${slot}_LEFT`, attempts.toString(16));
  }
  for (const name of raucOrder(newEnv)) {
    if (name !== 'A' && name !== 'B') continue;
    const left = hexCount(newEnv.get(`BOOT_${name}_LEFT`));
    if (left > 0) {
      newEnv.set(`BOOT_${name}_LEFT`, (left - 1).toString(16));
      return { slot: name, newEnv };
    }
  }
  newEnv.set('BOOT_A_LEFT', attempts.toString(16));
  newEnv.set('BOOT_B_LEFT', attempts.toString(16));
  return { slot: 'rescue', newEnv };
}

/**
 * The variables a freshly provisioned device carries for `convention`, booting `primary`
 * (confirmed). For bootcount this includes a conventional `altbootcmd`; a board's own
 * `bootcmd` must boot the slot named by the selector.
 */
export function ubootInitialEnv(convention: UBootConvention, primary: SlotName = 'A'): Map<string, string> {
  assertSlotName(primary);
  if (convention.kind === 'bootcount') {
    const { selector, values, bootLimit } = bootcountSettings(convention);
    return new Map([
      [selector, values[primary]],
      ['bootcount', '0'],
      ['bootlimit', String(bootLimit)],
      ['upgrade_available', '0'],
      [
        'altbootcmd',
        `if test "\${${selector}}" = "${values.A}"; then setenv ${selector} ${values.B}; ` +
          `else setenv ${selector} ${values.A}; fi; setenv upgrade_available 0; saveenv; run bootcmd`,
      ],
    ]);
  }
  const { attempts } = raucAttempts(convention);
  return new Map([
    ['BOOT_ORDER', `${primary} ${otherSlot(primary)}`],
    ['BOOT_A_LEFT', attempts.toString(16)],
    ['BOOT_B_LEFT', attempts.toString(16)],
  ]);
}

export type BootControlAction = 'markGood' | 'markBad' | 'setTryOnce' | 'setPrimary';

/**
 * The variables the OS side writes for one BootControl action (docs/formats.md §3.4), as a pure
 * function of the current environment. Throws ERR_BOOTCTL_STATE_INVALID when the action
 * cannot be expressed safely in the convention.
 */
export function ubootTransition(
  env: ReadonlyMap<string, string>,
  convention: UBootConvention,
  action: BootControlAction,
  slot: SlotName,
): [string, string][] {
  if (convention.kind === 'rauc') {
    const { attempts, tryAttempts } = raucAttempts(convention);
    const first = [slot, ...raucOrder(env).filter((n) => n !== slot)].join(' ');
    switch (action) {
      case 'markGood':
        return [[`BOOT_${slot}_LEFT`, attempts.toString(16)]];
      case 'markBad':
        return [
          [
            'BOOT_ORDER',
            raucOrder(env)
              .filter((n) => n !== slot)
              .join(' '),
          ],
          [`BOOT_${slot}_LEFT`, '0'],
        ];
      case 'setTryOnce':
        return [
          [`BOOT_${slot}_LEFT`, tryAttempts.toString(16)],
          ['BOOT_ORDER', first],
        ];
      case 'setPrimary':
        return [
          [`BOOT_${slot}_LEFT`, attempts.toString(16)],
          ['BOOT_ORDER', first],
        ];
    }
  }
  const s = bootcountSettings(convention);
  const selected = selectedSlot(env, s);
  switch (action) {
    case 'markGood':
      if (selected !== slot) {
        throw new ClientError(
          'ERR_BOOTCTL_STATE_INVALID',
          `cannot mark slot ${slot} good: ${s.selector}=${JSON.stringify(env.get(s.selector) ?? '')} selects ` +
            `${selected ?? 'no slot'}; with the bootcount convention only the selected slot can be confirmed`,
        );
      }
      return [
        ['upgrade_available', '0'],
        ['bootcount', '0'],
      ];
    case 'markBad':
      // Only the selected slot can ever be booted; switching away from it is the rollback.
      if (selected !== slot) return [];
      return [
        [s.selector, s.values[otherSlot(slot)]],
        ['upgrade_available', '0'],
        ['bootcount', '0'],
      ];
    case 'setTryOnce':
      if (!env.has('altbootcmd')) {
        // Fail closed: without altbootcmd an unconfirmed trial would stop at the U-Boot prompt.
        throw new ClientError(
          'ERR_BOOTCTL_STATE_INVALID',
          'U-Boot environment has no altbootcmd, so a failed trial boot could not fall back; provision it first (see ubootInitialEnv)',
        );
      }
      return [
        [s.selector, s.values[slot]],
        ['upgrade_available', '1'],
        ['bootcount', '0'],
        ['bootlimit', String(s.bootLimit)],
      ];
    case 'setPrimary':
      return [
        [s.selector, s.values[slot]],
        ['upgrade_available', '0'],
        ['bootcount', '0'],
      ];
  }
}

/** Play U-Boot at boot against a real environment (redundancy scheme included); for the simulator. */
export async function emulateUBootBoot(
  config: UBootEnvConfig,
  convention: UBootConvention,
): Promise<SlotName | 'rescue'> {
  let slot: SlotName | 'rescue' = 'rescue';
  await editUBootEnv(config, (env) => {
    const r = ubootSelectSlot(env, convention);
    slot = r.slot;
    return [
      ...r.newEnv,
      ...[...env.keys()].filter((k) => !r.newEnv.has(k)).map((k) => [k, undefined] as const),
    ];
  });
  return slot;
}

export interface UBootBootControlOptions extends BootedSlotSource {
  env: UBootEnvConfig;
  convention: UBootConvention;
}

/**
 * BootControl over a U-Boot environment. Every change is one environment write (one fw_setenv
 * call), following the redundant-copy scheme of docs/formats.md §3.2; a change that alters nothing
 * writes nothing, so marking the running slot good on each boot does not wear the flash.
 */
export class UBootBootControl implements BootControl {
  readonly #options: UBootBootControlOptions;

  constructor(options: UBootBootControlOptions) {
    this.#options = options;
  }

  getBootedSlot(): Promise<SlotName> {
    return readBootedSlot(this.#options);
  }

  async getPrimarySlot(): Promise<SlotName | undefined> {
    const { slot } = ubootSelectSlot(await this.#read(), this.#options.convention);
    return slot === 'rescue' ? undefined : slot;
  }

  async getSlotState(slot: SlotName): Promise<SlotState> {
    assertSlotName(slot);
    const env = await this.#read();
    const c = this.#options.convention;
    if (c.kind === 'rauc') {
      const good = raucOrder(env).includes(slot) && raucLeft(env, slot, raucAttempts(c).attempts) > 0;
      return { bootable: good, good };
    }
    const s = bootcountSettings(c);
    const upgrading = ulong10(env.get('upgrade_available')) !== 0;
    const limit = ulong10(env.get('bootlimit'));
    if (selectedSlot(env, s) === slot) {
      if (!upgrading) return { bootable: true, good: true };
      // On trial: bootable while the next boot stays within bootlimit.
      return { bootable: limit === 0 || ulong10(env.get('bootcount')) + 1 <= limit, good: false };
    }
    // The other slot is only reachable as altbootcmd's fallback during a trial.
    const fallback = upgrading && env.has('altbootcmd');
    return { bootable: fallback, good: fallback };
  }

  markGood(slot: SlotName): Promise<void> {
    return this.#apply('markGood', slot);
  }

  markBad(slot: SlotName): Promise<void> {
    return this.#apply('markBad', slot);
  }

  setTryOnce(slot: SlotName): Promise<void> {
    return this.#apply('setTryOnce', slot);
  }

  setPrimary(slot: SlotName): Promise<void> {
    return this.#apply('setPrimary', slot);
  }

  // ERR_UBOOTENV_NO_VALID_COPY passes through: no valid copy may mean "never provisioned" or
  // "both copies corrupt", and only the copy details in its message tell which.
  async #read(): Promise<Map<string, string>> {
    return (await readUBootEnv(this.#options.env)).vars;
  }

  async #apply(action: BootControlAction, slot: SlotName): Promise<void> {
    assertSlotName(slot);
    // One locked read–modify–write, one environment write (docs/formats.md §3.4: one fw_setenv call).
    await editUBootEnv(this.#options.env, (env) =>
      ubootTransition(env, this.#options.convention, action, slot),
    );
  }
}
