// U-Boot environment images, byte-compatible with mkenvimage and libubootenv's
// fw_printenv/fw_setenv — docs/formats.md §3.1–3.3. Pure encode/decode/copy selection, plus
// positional reads/writes of the copies named by an fw_env.config-style configuration.
import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { ClientError } from '../errors.js';
import { isNotFound, readSmallFile } from '../atomic-file.js';
import { withPathLock } from './pathlock.js';

/** One environment copy: where it lives and how large it is (`CONFIG_ENV_SIZE`). */
export interface UBootEnvLocation {
  path: string;
  offsetBytes: number;
  sizeBytes: number;
}

/** One location = single copy; two = redundant copies (docs/formats.md §3.1), like fw_env.config. */
export interface UBootEnvConfig {
  copies: readonly [UBootEnvLocation] | readonly [UBootEnvLocation, UBootEnvLocation];
}

export interface DecodedUBootEnv {
  /** CRC-32 over the whole data area matches the stored one. */
  crcValid: boolean;
  /** The redundant-copy flags byte; undefined for a single copy. */
  flags: number | undefined;
  vars: Map<string, string>;
}

export type UBootEnvEdits = Iterable<readonly [string, string | undefined]>;

/** Largest environment we accept (real ones are 8–128 KiB); bounds memory per copy. */
export const UBOOTENV_MAX_SIZE_BYTES = 16 * 1024 * 1024;

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8');

function headerBytes(redundant: boolean): number {
  return redundant ? 5 : 4;
}

/**
 * Parse fw_env.config text: `<device or file> <offset> <env size> [<sector size> [<sectors>]]`,
 * `#` comments, one line = single copy, two lines = redundant (docs/formats.md §3.3). As in
 * libubootenv/fw_env.c, the offset is read like C `%lli` (0x… hex, 0… octal, else decimal) and
 * the sizes like `%lx` (always hexadecimal, `0x` optional): "4000" means 0x4000 bytes.
 * Sector fields only matter for flash erase and are ignored.
 */
export function parseFwEnvConfig(text: string, where = 'fw_env.config'): UBootEnvConfig {
  const copies: UBootEnvLocation[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    const [path, offset, size] = fields;
    const at = `${where} line ${i + 1}`;
    if (path === undefined || offset === undefined || size === undefined) {
      throw new ClientError(
        'ERR_UBOOTENV_CONFIG',
        `${at}: expected "<device or file> <offset> <env size>", found ${JSON.stringify(line)}`,
      );
    }
    copies.push({
      path,
      offsetBytes: parseCInteger(offset, at, 'offset'),
      sizeBytes: parseHexSize(size, at),
    });
  });
  return checkUBootEnvConfig(copies, where);
}

function parseCInteger(text: string, at: string, what: string): number {
  let value: number;
  if (/^0x[0-9a-f]+$/i.test(text)) value = Number.parseInt(text.slice(2), 16);
  else if (/^0[0-7]*$/.test(text)) value = Number.parseInt(text, 8);
  else if (/^[1-9][0-9]*$/.test(text)) value = Number.parseInt(text, 10);
  else value = Number.NaN;
  if (!Number.isSafeInteger(value)) {
    throw new ClientError('ERR_UBOOTENV_CONFIG', `${at}: ${what} ${JSON.stringify(text)} is not a number`);
  }
  return value;
}

function parseHexSize(text: string, at: string): number {
  const m = /^(?:0x)?([0-9a-f]+)$/i.exec(text);
  const value = m?.[1] === undefined ? Number.NaN : Number.parseInt(m[1], 16);
  if (!Number.isSafeInteger(value)) {
    throw new ClientError(
      'ERR_UBOOTENV_CONFIG',
      `${at}: env size ${JSON.stringify(text)} is not a hexadecimal number (fw_env.config sizes are hex)`,
    );
  }
  return value;
}

/** libubootenv's default configuration file. */
export const DEFAULT_FW_ENV_CONFIG_PATH = '/etc/fw_env.config';

/** Read and parse an fw_env.config file (default /etc/fw_env.config), so abota and fw_setenv share one. */
export async function readFwEnvConfigFile(
  path: string = DEFAULT_FW_ENV_CONFIG_PATH,
): Promise<UBootEnvConfig> {
  const bytes = await readSmallFile(
    path,
    64 * 1024,
    (size) => new ClientError('ERR_UBOOTENV_CONFIG', `${path} is ${size} bytes; not an fw_env.config`),
  );
  if (bytes === undefined) {
    throw new ClientError(
      'ERR_UBOOTENV_CONFIG',
      `${path} does not exist; it names the U-Boot env copies (docs/formats.md §3.3)`,
    );
  }
  return parseFwEnvConfig(new TextDecoder().decode(bytes), path);
}

/** Validate a configuration given as values (e.g. from the agent's JSON config). */
export function checkUBootEnvConfig(
  copies: readonly UBootEnvLocation[],
  where = 'U-Boot env config',
): UBootEnvConfig {
  if (copies.length !== 1 && copies.length !== 2) {
    throw new ClientError(
      'ERR_UBOOTENV_CONFIG',
      `${where}: expected one line (single copy) or two lines (redundant copies), found ${copies.length}`,
    );
  }
  for (const c of copies) {
    const hdr = headerBytes(copies.length === 2);
    if (
      !Number.isSafeInteger(c.sizeBytes) ||
      c.sizeBytes <= hdr + 1 ||
      c.sizeBytes > UBOOTENV_MAX_SIZE_BYTES
    ) {
      throw new ClientError(
        'ERR_UBOOTENV_CONFIG',
        `${where}: env size of ${c.path} must be ${hdr + 2}..${UBOOTENV_MAX_SIZE_BYTES} bytes, got ${c.sizeBytes}`,
      );
    }
    if (!Number.isSafeInteger(c.offsetBytes) || c.offsetBytes < 0) {
      throw new ClientError(
        'ERR_UBOOTENV_CONFIG',
        `${where}: offset of ${c.path} must be ≥ 0, got ${c.offsetBytes}`,
      );
    }
  }
  const [first, second] = copies;
  if (second !== undefined && first !== undefined) {
    if (first.sizeBytes !== second.sizeBytes) {
      throw new ClientError(
        'ERR_UBOOTENV_CONFIG',
        `${where}: redundant copies must have the same size, found ${first.sizeBytes} and ${second.sizeBytes}`,
      );
    }
    const overlap =
      first.path === second.path &&
      first.offsetBytes < second.offsetBytes + second.sizeBytes &&
      second.offsetBytes < first.offsetBytes + first.sizeBytes;
    if (overlap) {
      throw new ClientError('ERR_UBOOTENV_CONFIG', `${where}: the two copies overlap in ${first.path}`);
    }
    return { copies: [first, second] };
  }
  return { copies: [first!] };
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * Build one environment image (docs/formats.md §3.1): CRC-32 LE over the whole data area, flags
 * byte when redundant (not covered by the CRC), `name=value\0…` sorted by name (byte order,
 * as U-Boot and libubootenv write), the extra `\0`, then `padByte` (U-Boot's saveenv uses 0x00,
 * mkenvimage 0xFF). `sort: false` keeps insertion order, as mkenvimage does.
 */
export function encodeUBootEnv(
  vars: ReadonlyMap<string, string>,
  options: { sizeBytes: number; redundant: boolean; flags?: number; padByte?: number; sort?: boolean },
): Uint8Array {
  const { sizeBytes, redundant } = options;
  const hdr = headerBytes(redundant);
  const names = [...vars.keys()];
  if (options.sort ?? true) names.sort(compareBytes);
  const image = new Uint8Array(sizeBytes).fill(options.padByte ?? 0);
  let p = hdr;
  const dataEnd = sizeBytes;
  for (const name of names) {
    const value = vars.get(name)!;
    if (name === '' || name.includes('=') || name.includes('\0') || value.includes('\0')) {
      throw new ClientError(
        'ERR_UBOOTENV_BAD_VARIABLE',
        `U-Boot variable ${JSON.stringify(name)} cannot be stored: names must be non-empty without '=' or NUL, values without NUL`,
      );
    }
    const entry = utf8.encode(`${name}=${value}`);
    // +1 for this entry's NUL, +1 for the list terminator.
    if (p + entry.length + 2 > dataEnd) {
      throw new ClientError(
        'ERR_UBOOTENV_TOO_LARGE',
        `U-Boot environment does not fit: ${sizeBytes - hdr} data bytes available, variables need more (stopped at ${name})`,
      );
    }
    image.set(entry, p);
    image[p + entry.length] = 0;
    p += entry.length + 1;
  }
  if (p + 1 > dataEnd) {
    throw new ClientError('ERR_UBOOTENV_TOO_LARGE', `U-Boot environment of ${sizeBytes} bytes is too small`);
  }
  image[p] = 0;
  if (redundant) image[4] = (options.flags ?? 1) & 0xff;
  new DataView(image.buffer, image.byteOffset, image.byteLength).setUint32(
    0,
    crc32(image.subarray(hdr)),
    true,
  );
  return image;
}

/** Decode one copy. Never throws on content: a bad CRC is reported as `crcValid: false`. */
export function decodeUBootEnv(image: Uint8Array, redundant: boolean): DecodedUBootEnv {
  const hdr = headerBytes(redundant);
  if (image.length <= hdr) return { crcValid: false, flags: undefined, vars: new Map() };
  const stored = new DataView(image.buffer, image.byteOffset, image.byteLength).getUint32(0, true);
  const data = image.subarray(hdr);
  const vars = new Map<string, string>();
  let p = 0;
  while (p < data.length && data[p] !== 0) {
    let end = data.indexOf(0, p);
    if (end < 0) end = data.length; // unterminated tail: take what is there
    const entry = utf8Decoder.decode(data.subarray(p, end));
    const eq = entry.indexOf('=');
    if (eq > 0) vars.set(entry.slice(0, eq), entry.slice(eq + 1)); // no '=' → ignored, like libubootenv
    p = end + 1;
  }
  return { crcValid: crc32(data) === stored, flags: redundant ? image[4] : undefined, vars };
}

/**
 * Which redundant copy U-Boot and libubootenv treat as current (docs/formats.md §3.2): the only one
 * with a valid CRC; if both are valid, copy 1 when its flags are newer (255 → 0 wraps: the 0
 * copy is newer), else copy 0; undefined when neither is valid.
 */
export function currentCopyIndex(
  copy0: { crcValid: boolean; flags: number | undefined },
  copy1: { crcValid: boolean; flags: number | undefined },
): 0 | 1 | undefined {
  if (copy0.crcValid && !copy1.crcValid) return 0;
  if (copy1.crcValid && !copy0.crcValid) return 1;
  if (!copy0.crcValid) return undefined;
  const f0 = copy0.flags ?? 0;
  const f1 = copy1.flags ?? 0;
  if (f0 === 255 && f1 === 0) return 1;
  if (f1 === 255 && f0 === 0) return 0;
  return f1 > f0 ? 1 : 0;
}

async function readCopy(loc: UBootEnvLocation): Promise<Uint8Array> {
  const buf = new Uint8Array(loc.sizeBytes);
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(loc.path, 'r');
  } catch (e) {
    if (isNotFound(e)) return new Uint8Array(0); // reads as an invalid copy
    throw new ClientError('ERR_UBOOTENV_IO', `cannot open U-Boot env ${loc.path}: ${String(e)}`, {
      cause: e,
    });
  }
  try {
    let filled = 0;
    while (filled < buf.length) {
      const { bytesRead } = await fh.read(buf, filled, buf.length - filled, loc.offsetBytes + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buf.subarray(0, filled); // short → decodes as a bad CRC, as a truncated env would
  } finally {
    await fh.close();
  }
}

async function writeCopy(loc: UBootEnvLocation, image: Uint8Array): Promise<void> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(loc.path, 'r+');
  } catch (e) {
    if (!isNotFound(e)) {
      throw new ClientError(
        'ERR_UBOOTENV_IO',
        `cannot open U-Boot env ${loc.path} for writing: ${String(e)}`,
        {
          cause: e,
        },
      );
    }
    fh = await open(loc.path, 'w+');
  }
  try {
    let written = 0;
    while (written < image.length) {
      const { bytesWritten } = await fh.write(
        image,
        written,
        image.length - written,
        loc.offsetBytes + written,
      );
      written += bytesWritten;
    }
    // The copy only counts as written once it is on stable storage (docs/formats.md §3.2).
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export interface UBootEnvState {
  vars: Map<string, string>;
  /** Index of the copy the variables came from (always 0 for a single copy). */
  copyIndex: 0 | 1;
  /** Flags byte of that copy (redundant only). */
  flags: number | undefined;
}

/**
 * Read the current environment. Throws ERR_UBOOTENV_NO_VALID_COPY when no copy has a valid
 * CRC (fw_printenv: "Cannot read environment"); abota has no built-in default environment —
 * provision one with `formatUBootEnv`.
 */
export async function readUBootEnv(config: UBootEnvConfig): Promise<UBootEnvState> {
  const redundant = config.copies.length === 2;
  const decoded = await Promise.all(
    config.copies.map(async (c) => decodeUBootEnv(await readCopy(c), redundant)),
  );
  const [d0, d1] = decoded;
  const index = d1 === undefined ? (d0?.crcValid ? 0 : undefined) : currentCopyIndex(d0!, d1);
  const current = index === undefined ? undefined : decoded[index];
  if (index === undefined || current === undefined) {
    throw new ClientError(
      'ERR_UBOOTENV_NO_VALID_COPY',
      `no U-Boot environment copy with a valid CRC in ${config.copies
        .map((c) => `${c.path}@0x${c.offsetBytes.toString(16)}+0x${c.sizeBytes.toString(16)}`)
        .join(', ')} (wrong size/offset in the config, or never written)`,
    );
  }
  return { vars: current.vars, copyIndex: index, flags: current.flags };
}

/**
 * Store `vars` as the whole new environment, the way fw_setenv does on files and block devices
 * (docs/formats.md §3.2): single copy → rewritten in place; redundant → written to the non-current
 * copy with flags = current + 1 (mod 256), which becomes current only once fully written.
 */
export async function writeUBootEnv(
  config: UBootEnvConfig,
  vars: ReadonlyMap<string, string>,
  current: Pick<UBootEnvState, 'copyIndex' | 'flags'>,
  options: { padByte?: number } = {},
): Promise<void> {
  const [c0, c1] = config.copies;
  const base = { sizeBytes: c0.sizeBytes, padByte: options.padByte ?? 0 };
  if (c1 === undefined) {
    await writeCopy(c0, encodeUBootEnv(vars, { ...base, redundant: false }));
    return;
  }
  const target = current.copyIndex === 0 ? c1 : c0;
  const flags = ((current.flags ?? 0) + 1) & 0xff;
  await writeCopy(target, encodeUBootEnv(vars, { ...base, redundant: true, flags }));
}

/**
 * `fw_setenv name value …` in one write: a value of undefined deletes the variable. `edits` may
 * be a function of the current variables (a read–modify–write that other edits of the same
 * environment in this process cannot interleave with). Nothing is written when nothing changes
 * (so the flags do not advance), as with fw_setenv. Returns the resulting variables.
 */
export async function editUBootEnv(
  config: UBootEnvConfig,
  edits: UBootEnvEdits | ((vars: ReadonlyMap<string, string>) => UBootEnvEdits),
): Promise<Map<string, string>> {
  return withPathLock(config.copies[0].path, async () => {
    const state = await readUBootEnv(config);
    const next = new Map(state.vars);
    for (const [name, value] of typeof edits === 'function' ? edits(state.vars) : edits) {
      if (value === undefined) next.delete(name);
      else next.set(name, value);
    }
    if (!sameVars(state.vars, next)) await writeUBootEnv(config, next, state);
    return next;
  });
}

/**
 * Provision an environment on every copy (like writing `mkenvimage [-r]` output there): all
 * copies get the same variables and flags 1, so copy 0 is current. Destroys what was there.
 */
export async function formatUBootEnv(
  config: UBootEnvConfig,
  vars: ReadonlyMap<string, string>,
  options: { padByte?: number } = {},
): Promise<void> {
  const redundant = config.copies.length === 2;
  for (const c of config.copies) {
    await writeCopy(
      c,
      encodeUBootEnv(vars, { sizeBytes: c.sizeBytes, redundant, flags: 1, padByte: options.padByte ?? 0 }),
    );
  }
}

export function sameVars(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}
