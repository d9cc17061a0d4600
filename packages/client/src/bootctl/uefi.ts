// The `uefi` boot-control backend: GRUB-less A/B boot of one signed unified kernel image (UKI)
// per slot, in two modes with the same BootControl contract.
//
// firmware — no bootloader. One Boot#### load option per slot (created at image time; found by
//   its description), the trial armed with BootNext (the boot manager deletes BootNext before it
//   boots it, so a failed trial comes back on BootOrder's first entry), BootOrder changed only
//   when a slot is confirmed (markGood / setPrimary) or rejected (markBad), and a trial counter
//   the agent keeps in its own variable AbotaTrial-<ABOTA_VENDOR_GUID> (3 bytes: version 1, slot
//   'A'/'B', tries left). Algorithm and crash points: README "uefi backend".
//
// systemd-boot — Boot Loader Specification type #2 entries <ESP>/EFI/Linux/<name>.efi with
//   automatic boot assessment: the trial slot's UKI renamed to <name>+N.efi (systemd-boot renames
//   it to +(N-1)-1 before booting it), armed with LoaderEntryOneShot, the committed slot blessed
//   (counter dropped, what systemd-bless-boot does) and named in LoaderEntryDefault.
import { mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ClientError, isClientError } from '../errors.js';
import {
  type BootControl,
  type BootedSlotSource,
  assertSlotName,
  otherSlot,
  readBootedSlot,
  type SlotName,
  type SlotState,
  type VerifiedImageReader,
} from './bootcontrol.js';
import {
  type BlsName,
  blsPatternMatches,
  blsSelect,
  EFI_VARIABLE_BS_RT,
  emulateSystemdBoot,
  formatBlsName,
  listBlsEntries,
  parseBlsName,
  readLoaderString,
  writeLoaderString,
} from './bls.js';
import {
  ABOTA_VENDOR_GUID,
  bootNumberOf,
  bootVariableName,
  decodeLoadOption,
  decodeUint16,
  decodeUint16Array,
  EFI_GLOBAL_GUID,
  encodeUint16Array,
  LOAD_OPTION_ACTIVE,
  SYSTEMD_LOADER_GUID,
} from './efivar-formats.js';
import { type EfiVarStep, EfiVarStore } from './efivarfs.js';
import { type EspStep, installUkiOnEsp } from './esp-uki.js';
import { withPathLock } from './pathlock.js';

export type UefiMode = 'firmware' | 'systemd-boot';

export const DEFAULT_BOOT_ENTRY_DESCRIPTIONS: Readonly<Record<SlotName, string>> = {
  A: 'abota A',
  B: 'abota B',
};
export const DEFAULT_UKI_NAMES: Readonly<Record<SlotName, string>> = { A: 'abota-a', B: 'abota-b' };
export const DEFAULT_ESP_PATH = '/boot/efi';
export const ABOTA_TRIAL_VARIABLE = 'AbotaTrial';

export interface UefiBootControlOptions extends BootedSlotSource {
  mode: UefiMode;
  /** efivarfs mount (default /sys/firmware/efi/efivars) or a directory standing in for it. */
  efivars?: EfiVarStore | string;
  /** systemd-boot: where the ESP is mounted (UKIs in EFI/Linux). Default /boot/efi. */
  espPath?: string;
  /** firmware: the Boot#### description of each slot's load option. Default "abota A" / "abota B". */
  bootEntries?: Record<SlotName, string>;
  /** systemd-boot: each slot's UKI name in EFI/Linux without counter and .efi. Default abota-a / abota-b. */
  ukiNames?: Record<SlotName, string>;
  /** Boots a trial gets before it is abandoned (firmware: AbotaTrial counter; systemd-boot: +N). Default 1. */
  tryBoots?: number;
  /** Called before each write step — variables and ESP writes/renames/unlinks (tests: crash points). */
  beforeStep?: (step: EfiVarStep | EspStep, target: string) => void | Promise<void>;
}

// ---------------------------------------------------------------- firmware mode

interface FirmwareEntry {
  number: number;
  active: boolean;
  slot?: SlotName;
}

export interface AbotaTrial {
  slot: SlotName;
  triesLeft: number;
}

interface FirmwareState {
  entries: Map<number, FirmwareEntry>;
  slotEntry: Partial<Record<SlotName, number>>;
  bootOrder: number[];
  bootNext?: number;
  bootCurrent?: number;
  trial?: AbotaTrial;
}

export function encodeAbotaTrial(t: AbotaTrial): Uint8Array {
  return new Uint8Array([1, t.slot.charCodeAt(0), t.triesLeft]);
}

export function decodeAbotaTrial(data: Uint8Array): AbotaTrial {
  const slot = String.fromCharCode(data[1] ?? 0);
  if (data.length !== 3 || data[0] !== 1 || (slot !== 'A' && slot !== 'B')) {
    throw new ClientError(
      'ERR_EFIVAR_INVALID',
      `${ABOTA_TRIAL_VARIABLE}-${ABOTA_VENDOR_GUID} is not version 1 (3 bytes: 1, 'A'|'B', tries left): ${Buffer.from(data).toString('hex')}`,
    );
  }
  return { slot, triesLeft: data[2]! };
}

async function readFirmwareState(
  store: EfiVarStore,
  descriptions: Record<SlotName, string>,
): Promise<FirmwareState> {
  const entries = new Map<number, FirmwareEntry>();
  const slotEntry: Partial<Record<SlotName, number>> = {};
  for (const name of await store.names(EFI_GLOBAL_GUID)) {
    const number = bootNumberOf(name);
    if (number === undefined) continue;
    const v = await store.get(name, EFI_GLOBAL_GUID);
    if (v === undefined) continue;
    let option: ReturnType<typeof decodeLoadOption>;
    try {
      option = decodeLoadOption(v.data, `${name}-${EFI_GLOBAL_GUID}`);
    } catch {
      entries.set(number, { number, active: false }); // someone else's broken entry: never ours
      continue;
    }
    const slot = (['A', 'B'] as const).find((s) => descriptions[s] === option.description);
    entries.set(number, {
      number,
      active: (option.attributes & LOAD_OPTION_ACTIVE) !== 0,
      ...(slot ? { slot } : {}),
    });
    if (slot !== undefined) {
      if (slotEntry[slot] !== undefined) {
        throw new ClientError(
          'ERR_BOOTCTL_STATE_INVALID',
          `two boot entries are described "${descriptions[slot]}" (${bootVariableName(slotEntry[slot])}, ${name}): delete one (efibootmgr -b XXXX -B)`,
        );
      }
      slotEntry[slot] = number;
    }
  }
  const order = await store.get('BootOrder', EFI_GLOBAL_GUID);
  const next = await store.get('BootNext', EFI_GLOBAL_GUID);
  const current = await store.get('BootCurrent', EFI_GLOBAL_GUID);
  const trial = await store.get(ABOTA_TRIAL_VARIABLE, ABOTA_VENDOR_GUID);
  return {
    entries,
    slotEntry,
    bootOrder: order === undefined ? [] : decodeUint16Array(order.data, 'BootOrder'),
    ...(next !== undefined ? { bootNext: decodeUint16(next.data, 'BootNext') } : {}),
    ...(current !== undefined ? { bootCurrent: decodeUint16(current.data, 'BootCurrent') } : {}),
    ...(trial !== undefined ? { trial: decodeAbotaTrial(trial.data) } : {}),
  };
}

/**
 * The firmware boot manager's choice (UEFI §3.1.2): BootNext if it names an existing option,
 * else the first ACTIVE option in BootOrder. 'rescue' = an option that is not a slot, or none.
 */
export function firmwareSelect(s: Pick<FirmwareState, 'entries' | 'bootOrder' | 'bootNext'>): {
  number?: number;
  slot: SlotName | 'rescue';
} {
  const pick = (n: number): { number: number; slot: SlotName | 'rescue' } => ({
    number: n,
    slot: s.entries.get(n)?.slot ?? 'rescue',
  });
  if (s.bootNext !== undefined && s.entries.has(s.bootNext)) return pick(s.bootNext);
  for (const n of s.bootOrder) if (s.entries.get(n)?.active) return pick(n);
  return { slot: 'rescue' };
}

/**
 * Play the firmware at a (re)boot against a directory efivars: volatile variables cleared,
 * BootNext consumed (deleted before the boot, as the spec requires), BootCurrent set.
 */
export async function emulateFirmwareBoot(
  store: EfiVarStore,
  descriptions: Record<SlotName, string> = DEFAULT_BOOT_ENTRY_DESCRIPTIONS,
): Promise<SlotName | 'rescue'> {
  await clearVolatile(store);
  const s = await readFirmwareState(store, descriptions);
  if (s.bootNext !== undefined) await store.delete('BootNext', EFI_GLOBAL_GUID);
  const chosen = firmwareSelect(s);
  if (chosen.number !== undefined) {
    await store.set('BootCurrent', EFI_GLOBAL_GUID, encodeUint16Array([chosen.number]), EFI_VARIABLE_BS_RT);
  }
  return chosen.slot;
}

/** What a reset forgets: the volatile variables firmware and systemd-boot export per boot. */
async function clearVolatile(store: EfiVarStore): Promise<void> {
  await store.delete('BootCurrent', EFI_GLOBAL_GUID);
  for (const name of ['LoaderEntrySelected', 'LoaderBootCountPath'])
    await store.delete(name, SYSTEMD_LOADER_GUID);
}

/** Play systemd-boot (started by the firmware) against a directory efivars and ESP. */
export async function emulateSystemdBootSlot(
  store: EfiVarStore,
  espPath: string,
  ukiNames: Record<SlotName, string> = DEFAULT_UKI_NAMES,
): Promise<SlotName | 'rescue'> {
  await clearVolatile(store);
  const file = await emulateSystemdBoot(store, espPath);
  if (file === undefined) return 'rescue';
  return slotOfUki(parseBlsName(file), ukiNames) ?? 'rescue';
}

function slotOfUki(name: BlsName | undefined, ukiNames: Record<SlotName, string>): SlotName | undefined {
  if (name === undefined) return undefined;
  return (['A', 'B'] as const).find((s) => ukiNames[s].toLowerCase() === name.stem.toLowerCase());
}

// ---------------------------------------------------------------- the backend

export class UefiBootControl implements BootControl {
  readonly mode: UefiMode;
  readonly store: EfiVarStore;
  readonly espPath: string;
  readonly #options: UefiBootControlOptions;
  readonly #descriptions: Record<SlotName, string>;
  readonly #ukiNames: Record<SlotName, string>;
  readonly #tryBoots: number;

  constructor(options: UefiBootControlOptions) {
    this.mode = options.mode;
    this.store =
      options.efivars instanceof EfiVarStore
        ? options.efivars
        : new EfiVarStore({
            ...(options.efivars === undefined ? {} : { root: options.efivars }),
            ...(options.beforeStep ? { beforeStep: options.beforeStep } : {}),
          });
    this.espPath = options.espPath ?? DEFAULT_ESP_PATH;
    this.#options = options;
    this.#descriptions = options.bootEntries ?? { ...DEFAULT_BOOT_ENTRY_DESCRIPTIONS };
    this.#ukiNames = options.ukiNames ?? { ...DEFAULT_UKI_NAMES };
    this.#tryBoots = options.tryBoots ?? 1;
    if (!Number.isInteger(this.#tryBoots) || this.#tryBoots < 1 || this.#tryBoots > 255) {
      throw new ClientError(
        'ERR_CONFIG_INVALID',
        `tryBoots must be an integer 1..255, got ${this.#tryBoots}`,
      );
    }
  }

  /**
   * The kernel command line first (the UKI's signed .cmdline names the slot with abota.slot=),
   * else BootCurrent (firmware) or LoaderEntrySelected (systemd-boot).
   */
  async getBootedSlot(): Promise<SlotName> {
    try {
      return await readBootedSlot(this.#options);
    } catch (e) {
      if (!isClientError(e, 'ERR_BOOTCTL_BOOTED_SLOT_UNKNOWN') || this.#options.bootedSlot !== undefined)
        throw e;
      const fromFirmware = await this.#bootedFromVariables().catch(() => undefined);
      if (fromFirmware === undefined) throw e;
      return fromFirmware;
    }
  }

  async #bootedFromVariables(): Promise<SlotName | undefined> {
    if (this.mode === 'firmware') {
      const s = await readFirmwareState(this.store, this.#descriptions);
      return s.bootCurrent === undefined ? undefined : s.entries.get(s.bootCurrent)?.slot;
    }
    const selected = await readLoaderString(this.store, 'LoaderEntrySelected');
    return selected === undefined ? undefined : slotOfUki(parseBlsName(selected), this.#ukiNames);
  }

  getPrimarySlot(): Promise<SlotName | undefined> {
    return this.mode === 'firmware' ? this.#fwPrimary() : this.#sdPrimary();
  }

  getSlotState(slot: SlotName): Promise<SlotState> {
    assertSlotName(slot);
    return this.mode === 'firmware' ? this.#fwSlotState(slot) : this.#sdSlotState(slot);
  }

  markGood(slot: SlotName): Promise<void> {
    return this.#locked(slot, () =>
      this.mode === 'firmware' ? this.#fwMarkGood(slot) : this.#sdMarkGood(slot),
    );
  }

  markBad(slot: SlotName): Promise<void> {
    return this.#locked(slot, () =>
      this.mode === 'firmware' ? this.#fwMarkBad(slot) : this.#sdMarkBad(slot),
    );
  }

  setTryOnce(slot: SlotName): Promise<void> {
    return this.#locked(slot, () =>
      this.mode === 'firmware' ? this.#fwSetTryOnce(slot) : this.#sdSetTryOnce(slot),
    );
  }

  setPrimary(slot: SlotName): Promise<void> {
    return this.#locked(slot, () =>
      this.mode === 'firmware' ? this.#fwSetPrimary(slot) : this.#sdSetPrimary(slot),
    );
  }

  /**
   * systemd-boot: copy the UKI out of `slot`'s freshly written, verified boot image onto the ESP
   * (esp-uki.ts), after marking the slot bad so no variable names its old entry. Firmware mode
   * boots the slot partition itself: nothing to do.
   */
  installBootImage(slot: SlotName, image: VerifiedImageReader, where: string): Promise<void> {
    if (this.mode === 'firmware') return Promise.resolve();
    return this.#locked(slot, async () => {
      await this.#sdMarkBad(slot);
      await mkdir(this.#linuxDir, { recursive: true });
      const files = await readdir(this.#linuxDir);
      await installUkiOnEsp({
        linuxDir: this.#linuxDir,
        stem: this.#ukiNames[slot],
        slotFiles: files.filter((f) => slotOfUki(parseBlsName(f), this.#ukiNames) === slot),
        image,
        where,
        beforeStep: this.#options.beforeStep,
      });
    });
  }

  #locked(slot: SlotName, fn: () => Promise<void>): Promise<void> {
    assertSlotName(slot);
    return withPathLock(this.store.root, fn);
  }

  // ---- firmware

  #fwRead(): Promise<FirmwareState> {
    return readFirmwareState(this.store, this.#descriptions);
  }

  #fwEntry(s: FirmwareState, slot: SlotName): number {
    const n = s.slotEntry[slot];
    if (n === undefined) {
      throw new ClientError(
        'ERR_BOOTCTL_ENTRY_MISSING',
        `no boot entry is described "${this.#descriptions[slot]}" in ${this.store.root}: create slot ${slot}'s entry at image time ` +
          `(efibootmgr -c -d DISK -p PART -L "${this.#descriptions[slot]}" -l '\\EFI\\BOOT\\BOOTX64.EFI') or set bootControl.bootEntries`,
      );
    }
    return n;
  }

  async #fwPrimary(): Promise<SlotName | undefined> {
    const { slot } = firmwareSelect(await this.#fwRead());
    return slot === 'rescue' ? undefined : slot;
  }

  async #fwSlotState(slot: SlotName): Promise<SlotState> {
    const s = await this.#fwRead();
    const n = s.slotEntry[slot];
    if (n === undefined) return { bootable: false, good: false };
    const onTrial = s.trial?.slot === slot;
    const good = s.bootOrder.includes(n) && s.entries.get(n)?.active === true && !onTrial;
    const bootable = good || s.bootNext === n || (onTrial && (s.trial?.triesLeft ?? 0) > 0);
    return { bootable, good };
  }

  async #writeBootOrder(s: FirmwareState, order: number[]): Promise<void> {
    if (order.length === s.bootOrder.length && order.every((n, i) => n === s.bootOrder[i])) return;
    await this.store.set('BootOrder', EFI_GLOBAL_GUID, encodeUint16Array(order));
    s.bootOrder = order;
  }

  /**
   * Confirm `slot`. On trial → first in BootOrder, then the trial record deleted. Otherwise it
   * joins BootOrder if missing (after the other slot). Then an expired trial of the other slot
   * is settled: tries left → armed again (BootNext), none → abandoned (out of BootOrder, record
   * deleted). A confirmed slot with nothing to settle writes nothing (per-boot markGood).
   */
  async #fwMarkGood(slot: SlotName): Promise<void> {
    const s = await this.#fwRead();
    const n = this.#fwEntry(s, slot);
    if (s.trial?.slot === slot) {
      await this.#writeBootOrder(s, [n, ...s.bootOrder.filter((x) => x !== n)]);
      await this.store.delete(ABOTA_TRIAL_VARIABLE, ABOTA_VENDOR_GUID);
      delete s.trial;
    } else if (!s.bootOrder.includes(n)) {
      const other = s.slotEntry[otherSlot(slot)];
      const at = other === undefined ? -1 : s.bootOrder.indexOf(other);
      await this.#writeBootOrder(s, at < 0 ? [n, ...s.bootOrder] : s.bootOrder.toSpliced(at + 1, 0, n));
    }
    const other = otherSlot(slot);
    const o = s.slotEntry[other];
    if (s.trial?.slot === other && o !== undefined && s.bootNext !== o) {
      if (s.trial.triesLeft > 0) {
        await this.store.set(
          ABOTA_TRIAL_VARIABLE,
          ABOTA_VENDOR_GUID,
          encodeAbotaTrial({ slot: other, triesLeft: s.trial.triesLeft - 1 }),
        );
        await this.store.set('BootNext', EFI_GLOBAL_GUID, encodeUint16Array([o]));
      } else {
        await this.#writeBootOrder(
          s,
          s.bootOrder.filter((x) => x !== o),
        );
        await this.store.delete(ABOTA_TRIAL_VARIABLE, ABOTA_VENDOR_GUID);
      }
    }
  }

  /** BootNext cleared if it names the slot, its trial record deleted, then out of BootOrder. */
  async #fwMarkBad(slot: SlotName): Promise<void> {
    const s = await this.#fwRead();
    const n = s.slotEntry[slot];
    if (n === undefined) return; // no entry: it cannot boot
    if (s.bootNext === n) await this.store.delete('BootNext', EFI_GLOBAL_GUID);
    if (s.trial?.slot === slot) await this.store.delete(ABOTA_TRIAL_VARIABLE, ABOTA_VENDOR_GUID);
    await this.#writeBootOrder(
      s,
      s.bootOrder.filter((x) => x !== n),
    );
  }

  /** Trial record first (tries left after this boot), then BootNext: a cut between loses a try, never adds one. */
  async #fwSetTryOnce(slot: SlotName): Promise<void> {
    const s = await this.#fwRead();
    const n = this.#fwEntry(s, slot);
    if (s.trial?.slot === slot && s.bootNext === n) return;
    await this.store.set(
      ABOTA_TRIAL_VARIABLE,
      ABOTA_VENDOR_GUID,
      encodeAbotaTrial({ slot, triesLeft: this.#tryBoots - 1 }),
    );
    await this.store.set('BootNext', EFI_GLOBAL_GUID, encodeUint16Array([n]));
  }

  /** BootNext for another entry cleared, the slot first in BootOrder, its trial record deleted. */
  async #fwSetPrimary(slot: SlotName): Promise<void> {
    const s = await this.#fwRead();
    const n = this.#fwEntry(s, slot);
    if (s.bootNext !== undefined && s.bootNext !== n) await this.store.delete('BootNext', EFI_GLOBAL_GUID);
    await this.#writeBootOrder(s, [n, ...s.bootOrder.filter((x) => x !== n)]);
    if (s.trial?.slot === slot) await this.store.delete(ABOTA_TRIAL_VARIABLE, ABOTA_VENDOR_GUID);
  }

  // ---- systemd-boot

  get #linuxDir(): string {
    return join(this.espPath, 'EFI', 'Linux');
  }

  /**
   * The slot's UKI. Normally one file. Two or more happen after markBad (<name>+0.efi) and the
   * install that follows (a fresh <name>.efi): the counted names are then stale. They are
   * removed only when `prune` and only when their bytes differ from the fresh file — identical
   * bytes may be two directory entries sharing one cluster chain after a rename cut short on
   * FAT, and deleting either would free clusters the other still uses.
   */
  async #uki(
    slot: SlotName,
    prune: boolean,
  ): Promise<{ file: string; name: BlsName; stale: boolean } | undefined> {
    const files = await readdir(this.#linuxDir).catch((e: unknown) => {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [] as string[];
      throw e;
    });
    const mine = files
      .filter((f) => !f.startsWith('.'))
      .map((file) => ({ file, name: parseBlsName(file) }))
      .filter((x): x is { file: string; name: BlsName } => slotOfUki(x.name, this.#ukiNames) === slot);
    if (mine.length === 0) return undefined;
    if (mine.length === 1) return { ...mine[0]!, stale: false };
    const fresh = mine.filter((x) => x.name.triesLeft === undefined);
    if (fresh.length !== 1)
      throw this.#duplicate(
        slot,
        mine.map((x) => x.file),
      );
    const canonical = fresh[0]!;
    const counted = mine.filter((x) => x !== canonical);
    const freshBytes = await readFile(join(this.#linuxDir, canonical.file));
    for (const c of counted) {
      const p = join(this.#linuxDir, c.file);
      if ((await stat(p)).size === freshBytes.length && (await readFile(p)).equals(freshBytes)) {
        throw this.#duplicate(
          slot,
          mine.map((x) => x.file),
        );
      }
    }
    if (!prune) return { ...canonical, stale: true };
    for (const c of counted) {
      await this.#options.beforeStep?.('esp-unlink', c.file);
      await unlink(join(this.#linuxDir, c.file));
    }
    await this.#syncLinuxDir();
    return { ...canonical, stale: false };
  }

  #duplicate(slot: SlotName, files: string[]): ClientError {
    return new ClientError(
      'ERR_BOOTCTL_ESP_DUPLICATE',
      `slot ${slot} has ${files.length} UKIs in ${this.#linuxDir} (${files.join(', ')}) with the same bytes or none without a counter: ` +
        'a rename cut short on FAT can leave two names on one cluster chain; run fsck.fat on the ESP, then delete the extra name',
    );
  }

  async #requireUki(slot: SlotName) {
    const u = await this.#uki(slot, true);
    if (u === undefined) {
      throw new ClientError(
        'ERR_BOOTCTL_ENTRY_MISSING',
        `slot ${slot} has no UKI ${this.#ukiNames[slot]}[+N[-M]].efi in ${this.#linuxDir}: install a release into it first`,
      );
    }
    return u;
  }

  async #syncLinuxDir(): Promise<void> {
    const dir = await open(this.#linuxDir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  async #renameUki(from: string, to: BlsName): Promise<string> {
    const target = formatBlsName(to);
    if (target === from) return from;
    await this.#options.beforeStep?.('esp-rename', `${from} -> ${target}`);
    await rename(join(this.#linuxDir, from), join(this.#linuxDir, target));
    // On FAT the new name is metadata of the renamed file: fsync it, then the directory
    // (as src/atomic-file.ts does: a directory fsync alone loses a rename on vfat at a power cut).
    const fh = await open(join(this.#linuxDir, target), 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await this.#syncLinuxDir();
    return target;
  }

  async #sdPrimary(): Promise<SlotName | undefined> {
    const chosen = blsSelect(
      await listBlsEntries(this.espPath),
      await readLoaderString(this.store, 'LoaderEntryOneShot'),
      await readLoaderString(this.store, 'LoaderEntryDefault'),
    );
    return chosen === undefined ? undefined : slotOfUki(chosen.name, this.#ukiNames);
  }

  async #sdSlotState(slot: SlotName): Promise<SlotState> {
    const u = await this.#uki(slot, false);
    if (u === undefined || u.stale) return { bootable: false, good: false };
    if (u.name.triesLeft === undefined) return { bootable: true, good: true };
    return { bootable: u.name.triesLeft > 0, good: false };
  }

  #id(file: string): string {
    return file.toLowerCase();
  }

  /**
   * Bless `slot` if it carries a counter (rename to <name>.efi, as systemd-bless-boot does) and
   * make it LoaderEntryDefault; a blessed slot becomes the default only when the default names
   * no entry. Then the other slot's trial: tries left and not armed → armed again (OneShot).
   */
  async #sdMarkGood(slot: SlotName): Promise<void> {
    const u = await this.#requireUki(slot);
    const entryDefault = await readLoaderString(this.store, 'LoaderEntryDefault');
    const blessed = formatBlsName({ stem: u.name.stem });
    if (u.name.triesLeft !== undefined) {
      await this.#renameUki(u.file, { stem: u.name.stem });
      if (entryDefault !== this.#id(blessed))
        await writeLoaderString(this.store, 'LoaderEntryDefault', this.#id(blessed));
    } else {
      const entries = await listBlsEntries(this.espPath);
      if (entryDefault === undefined || !entries.some((e) => blsPatternMatches(e.id, entryDefault))) {
        await writeLoaderString(this.store, 'LoaderEntryDefault', this.#id(blessed));
      }
    }
    const other = await this.#uki(otherSlot(slot), false);
    if (other !== undefined && !other.stale && (other.name.triesLeft ?? 0) > 0) {
      const oneShot = await readLoaderString(this.store, 'LoaderEntryOneShot');
      if (oneShot === undefined || !blsPatternMatches(this.#id(other.file), oneShot)) {
        await writeLoaderString(this.store, 'LoaderEntryOneShot', this.#id(other.file));
      }
    }
  }

  /**
   * Stop choosing `slot`: OneShot cleared if it names it, LoaderEntryDefault moved to the other
   * slot's blessed UKI (or deleted), then the file renamed to <name>+0-DONE.efi — "bad", listed
   * last, as `systemd-bless-boot bad` leaves it.
   */
  async #sdMarkBad(slot: SlotName): Promise<void> {
    const u = await this.#uki(slot, true);
    if (u === undefined) return;
    const id = this.#id(u.file);
    const oneShot = await readLoaderString(this.store, 'LoaderEntryOneShot');
    if (oneShot !== undefined && blsPatternMatches(id, oneShot))
      await this.store.delete('LoaderEntryOneShot', SYSTEMD_LOADER_GUID);
    const entryDefault = await readLoaderString(this.store, 'LoaderEntryDefault');
    if (entryDefault !== undefined && blsPatternMatches(id, entryDefault)) {
      const other = await this.#uki(otherSlot(slot), false);
      if (other !== undefined && !other.stale && other.name.triesLeft === undefined) {
        await writeLoaderString(this.store, 'LoaderEntryDefault', this.#id(other.file));
      } else {
        await this.store.delete('LoaderEntryDefault', SYSTEMD_LOADER_GUID);
      }
    }
    if (u.name.triesLeft !== 0)
      await this.#renameUki(u.file, {
        stem: u.name.stem,
        triesLeft: 0,
        ...(u.name.triesDone ? { triesDone: u.name.triesDone } : {}),
      });
  }

  /** Rename to <name>+N.efi, then LoaderEntryOneShot: a cut between leaves a counted entry nobody arms. */
  async #sdSetTryOnce(slot: SlotName): Promise<void> {
    const u = await this.#requireUki(slot);
    const target = formatBlsName({ stem: u.name.stem, triesLeft: this.#tryBoots });
    const oneShot = await readLoaderString(this.store, 'LoaderEntryOneShot');
    if (u.file === target && oneShot === this.#id(target)) return;
    await this.#renameUki(u.file, { stem: u.name.stem, triesLeft: this.#tryBoots });
    await writeLoaderString(this.store, 'LoaderEntryOneShot', this.#id(target));
  }

  /** Bless, then LoaderEntryDefault, then a OneShot for the other slot cleared. */
  async #sdSetPrimary(slot: SlotName): Promise<void> {
    const u = await this.#requireUki(slot);
    const blessed = await this.#renameUki(u.file, { stem: u.name.stem });
    if ((await readLoaderString(this.store, 'LoaderEntryDefault')) !== this.#id(blessed)) {
      await writeLoaderString(this.store, 'LoaderEntryDefault', this.#id(blessed));
    }
    const oneShot = await readLoaderString(this.store, 'LoaderEntryOneShot');
    if (oneShot !== undefined && !blsPatternMatches(this.#id(blessed), oneShot)) {
      await this.store.delete('LoaderEntryOneShot', SYSTEMD_LOADER_GUID);
    }
  }
}
