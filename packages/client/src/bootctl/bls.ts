// Boot Loader Specification type #2 entries (unified kernel images in <ESP>/EFI/Linux) with
// automatic boot assessment, as systemd-boot 252 (Debian bookworm) implements them in
// src/boot/efi/boot.c: the name grammar of the tries counter (config_entry_parse_tries), the
// rename at boot (config_entry_bump_counters), the order of entries (config_entry_compare) and
// the choice of the entry to boot (config_default_entry_select). Also the model of one boot,
// for tests and the simulator.
import { readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeUtf16z, encodeUtf16z, SYSTEMD_LOADER_GUID } from './efivar-formats.js';
import type { EfiVarStore } from './efivarfs.js';

/** systemd-boot writes its volatile Loader* variables with BS+RT (efivar_set(..., 0)). */
export const EFI_VARIABLE_BS_RT = 0x6;

export interface BlsName {
  /** The name without counter and suffix: `abota-b` for `abota-b+2-1.efi`. */
  stem: string;
  /** Tries left (`+LEFT`); undefined when the name carries no counter. */
  triesLeft?: number;
  /** Tries done (`-DONE`, 0 when absent but a counter is present). */
  triesDone?: number;
}

/**
 * Parse a type #2 file name (`*.efi`). systemd-boot reads the counter backwards from the end:
 * `+LEFT` or `+LEFT-DONE` (decimal digits, both non-empty) right before `.efi`; anything else is a
 * name without counter. Returns undefined for names that are not `.efi`.
 */
export function parseBlsName(file: string): BlsName | undefined {
  if (!file.toLowerCase().endsWith('.efi')) return undefined;
  const base = file.slice(0, -4);
  const m = /^(.*)\+(\d+)(?:-(\d+))?$/s.exec(base);
  if (m === null || m[1] === undefined || m[2] === undefined) return { stem: base };
  const left = Number(m[2]);
  const done = m[3] === undefined ? 0 : Number(m[3]);
  if (!Number.isSafeInteger(left) || !Number.isSafeInteger(done)) return { stem: base };
  return { stem: m[1], triesLeft: left, triesDone: done };
}

export function formatBlsName(n: BlsName): string {
  if (n.triesLeft === undefined) return `${n.stem}.efi`;
  return n.triesDone === undefined
    ? `${n.stem}+${n.triesLeft}.efi`
    : `${n.stem}+${n.triesLeft}-${n.triesDone}.efi`;
}

/** The name systemd-boot renames an entry to when it boots it: `+LEFT-DONE` → `+(LEFT-1)-(DONE+1)`. */
export function nextBlsName(file: string): string | undefined {
  const n = parseBlsName(file);
  if (n?.triesLeft === undefined) return undefined;
  return formatBlsName({
    stem: n.stem,
    triesLeft: Math.max(0, n.triesLeft - 1),
    triesDone: (n.triesDone ?? 0) + 1,
  });
}

/**
 * systemd's strverscmp_improved, reduced to what entry ids need: runs of digits compare as numbers,
 * everything else character by character ('~' sorts before everything, as in systemd).
 */
export function strverscmp(a: string, b: string): number {
  const chunks = (s: string) => s.match(/\d+|\D/g) ?? [];
  const x = chunks(a);
  const y = chunks(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const p = x[i]!;
    const q = y[i]!;
    const pn = /^\d/.test(p);
    const qn = /^\d/.test(q);
    if (pn && qn) {
      const d = Number(p) - Number(q);
      if (d !== 0) return Math.sign(d);
      continue;
    }
    if (p === q) continue;
    if (p === '~') return -1;
    if (q === '~') return 1;
    return p < q ? -1 : 1;
  }
  // A longer string sorts after its prefix, except when what follows is '~' (1.0~rc1 < 1.0).
  if (x.length === y.length) return 0;
  if (x.length > y.length) return x[y.length] === '~' ? -1 : 1;
  return y[x.length] === '~' ? 1 : -1;
}

/**
 * MetaiMatch / efi_fnmatch as LoaderEntryDefault and LoaderEntryOneShot are matched against entry
 * ids: case-insensitive, `*`, `?` and `[…]`.
 */
export function blsPatternMatches(id: string, pattern: string): boolean {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        re += `[${pattern.slice(i + 1, end).replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 'is').test(id);
}

export interface BlsEntry {
  /** File name in EFI/Linux as it is now. */
  file: string;
  /** systemd-boot 252's entry id: the file name in lower case, counter included. */
  id: string;
  name: BlsName;
}

/**
 * The type #2 entries systemd-boot would list, in its order: entries with no tries left last,
 * then by id descending (strverscmp), then more tries left first and fewer tries done first.
 * (Real UKIs also carry a sort key and version from their .osrel section, which order before the
 * id; the model leaves them out: the backend always names the entry to boot in a variable.)
 */
export async function listBlsEntries(espPath: string): Promise<BlsEntry[]> {
  const dir = join(espPath, 'EFI', 'Linux');
  const files = await readdir(dir).catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [] as string[];
    throw e;
  });
  const entries: BlsEntry[] = [];
  for (const file of files) {
    if (file.startsWith('.') || file.startsWith('auto-')) continue;
    const name = parseBlsName(file);
    if (name === undefined) continue;
    entries.push({ file, id: file.toLowerCase(), name });
  }
  return entries.sort((a, b) => {
    const bad = Number(a.name.triesLeft === 0) - Number(b.name.triesLeft === 0);
    if (bad !== 0) return bad;
    const id = -strverscmp(a.id, b.id);
    if (id !== 0) return id;
    if (a.name.triesLeft === undefined || b.name.triesLeft === undefined) return 0;
    return -(a.name.triesLeft - b.name.triesLeft) || (a.name.triesDone ?? 0) - (b.name.triesDone ?? 0);
  });
}

/** A Loader* string variable (UTF-16LE; the NUL is optional, as bootctl reads them). */
export async function readLoaderString(store: EfiVarStore, name: string): Promise<string | undefined> {
  const v = await store.get(name, SYSTEMD_LOADER_GUID);
  if (v === undefined) return undefined;
  return decodeUtf16z(v.data, 0, `${name}-${SYSTEMD_LOADER_GUID}`, true).text;
}

export async function writeLoaderString(
  store: EfiVarStore,
  name: string,
  value: string,
  attributes?: number,
): Promise<void> {
  await store.set(name, SYSTEMD_LOADER_GUID, encodeUtf16z(value), attributes);
}

/** systemd-boot's choice: LoaderEntryOneShot, else LoaderEntryDefault, else the first listed entry. */
export function blsSelect(
  entries: readonly BlsEntry[],
  oneShot: string | undefined,
  entryDefault: string | undefined,
): BlsEntry | undefined {
  const find = (pattern: string | undefined) =>
    pattern === undefined ? undefined : entries.find((e) => blsPatternMatches(e.id, pattern));
  return find(oneShot) ?? find(entryDefault) ?? entries[0];
}

/**
 * systemd-boot's part of one boot, against a directory ESP and efivars: read and delete
 * LoaderEntryOneShot, choose, rename a counted entry to its next name (LoaderBootCountPath),
 * export LoaderEntrySelected (the id before the rename). Returns the chosen file's name as it
 * is after the boot, or undefined when there is no entry (systemd-boot shows its menu).
 */
export async function emulateSystemdBoot(store: EfiVarStore, espPath: string): Promise<string | undefined> {
  const entries = await listBlsEntries(espPath);
  const oneShot = await readLoaderString(store, 'LoaderEntryOneShot');
  if (oneShot !== undefined) await store.delete('LoaderEntryOneShot', SYSTEMD_LOADER_GUID);
  const entryDefault = await readLoaderString(store, 'LoaderEntryDefault');
  const chosen = blsSelect(entries, oneShot, entryDefault);
  if (chosen === undefined) return undefined;
  let file = chosen.file;
  const next = nextBlsName(chosen.file);
  if (next !== undefined) {
    await rename(join(espPath, 'EFI', 'Linux', chosen.file), join(espPath, 'EFI', 'Linux', next));
    await writeLoaderString(store, 'LoaderBootCountPath', `\\EFI\\Linux\\${next}`, EFI_VARIABLE_BS_RT);
    file = next;
  }
  await writeLoaderString(store, 'LoaderEntrySelected', chosen.id, EFI_VARIABLE_BS_RT);
  return file;
}
