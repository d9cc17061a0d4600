// Unified kernel images (UKI): systemd-stub (Debian's systemd-boot-efi) with the kernel, the
// initramfs, the kernel command line and an os-release added as PE sections — the stub finds
// them by name and boots the kernel with that initrd and command line, so one signature
// (sbsign) covers everything between the firmware and dm-verity's root hash.
//
// Assembled the way systemd's ukify does it: objcopy --add-section for .osrel .cmdline .initrd
// .linux, each at a virtual address after the stub's last section (rounded up to 4096) and
// after the previous one, so no two sections overlap in memory. `peSections` reads the section
// table back (the tests check the bytes of each section; `abota release inspect` could too).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageError } from './errors.js';
import { runTool } from './tools.js';

/** Debian's systemd-stub for x86_64 UEFI (package systemd-boot-efi). */
export const DEFAULT_UKI_STUB = '/usr/lib/systemd/boot/efi/linuxx64.efi.stub';

export interface PeSection {
  name: string;
  virtualAddress: number;
  virtualSize: number;
  rawOffset: number;
  rawSize: number;
}

export interface PeImage {
  imageBase: bigint;
  sectionAlignment: number;
  sizeOfImage: number;
  sections: PeSection[];
  /** Offset and size of the certificate table (Authenticode signatures; 0 when unsigned). */
  certificateTable: { offset: number; size: number };
}

/** Parse a PE32+ image's headers and section table. */
export function parsePe(bytes: Uint8Array, what: string): PeImage {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bad = (why: string): never => {
    throw new ImageError('ERR_IMAGE_USAGE', `${what} is not a PE32+ EFI image: ${why}`);
  };
  if (b.length < 0x40 || b.toString('latin1', 0, 2) !== 'MZ') bad('no MZ header');
  const pe = b.readUInt32LE(0x3c);
  if (pe + 24 > b.length || b.toString('latin1', pe, pe + 4) !== 'PE\0\0') bad('no PE signature');
  const count = b.readUInt16LE(pe + 6);
  const optSize = b.readUInt16LE(pe + 20);
  const opt = pe + 24;
  if (b.readUInt16LE(opt) !== 0x20b) bad('not PE32+ (64-bit)');
  // Data directory 4 (IMAGE_DIRECTORY_ENTRY_SECURITY) of the PE32+ optional header.
  const dirs = opt + 112;
  const certificateTable =
    b.readUInt32LE(opt + 108) > 4
      ? { offset: b.readUInt32LE(dirs + 4 * 8), size: b.readUInt32LE(dirs + 4 * 8 + 4) }
      : { offset: 0, size: 0 };
  const table = opt + optSize;
  if (table + count * 40 > b.length) bad('section table past the end');
  const sections: PeSection[] = [];
  for (let i = 0; i < count; i++) {
    const s = table + i * 40;
    sections.push({
      name: b.toString('latin1', s, s + 8).replace(/\0+$/, ''),
      virtualSize: b.readUInt32LE(s + 8),
      virtualAddress: b.readUInt32LE(s + 12),
      rawSize: b.readUInt32LE(s + 16),
      rawOffset: b.readUInt32LE(s + 20),
    });
  }
  return {
    imageBase: b.readBigUInt64LE(opt + 24),
    sectionAlignment: b.readUInt32LE(opt + 32),
    sizeOfImage: b.readUInt32LE(opt + 56),
    sections,
    certificateTable,
  };
}

/** The bytes of section `name` as loaded (its virtual size; raw data is padded to the file alignment). */
export function peSection(bytes: Uint8Array, image: PeImage, name: string): Buffer | undefined {
  const s = image.sections.find((x) => x.name === name);
  if (s === undefined) return undefined;
  return Buffer.from(bytes.buffer, bytes.byteOffset + s.rawOffset, Math.min(s.virtualSize, s.rawSize));
}

export interface UkiInputs {
  stub: string;
  kernel: string;
  initrd: Uint8Array;
  cmdline: string;
  osRelease: string;
  /** Scratch directory for the section files. */
  scratch: string;
  out: string;
}

/** The sections a UKI carries, in the order they are laid out (.linux last, as ukify does). */
export const UKI_SECTIONS = ['.osrel', '.cmdline', '.initrd', '.linux'] as const;

const PAGE = 4096;
const roundUp = (n: number, to: number): number => Math.ceil(n / to) * to;

/** Build the UKI at `o.out` with objcopy; returns the section layout it got. */
export async function buildUki(o: UkiInputs): Promise<PeImage> {
  const stub = parsePe(
    await readFile(o.stub).catch((err: Error) => {
      throw new ImageError(
        'ERR_IMAGE_TOOL_MISSING',
        `--uki-stub ${o.stub}: ${err.message} (Debian: apt-get install systemd-boot-efi)`,
      );
    }),
    `--uki-stub ${o.stub}`,
  );
  for (const name of UKI_SECTIONS) {
    if (stub.sections.some((s) => s.name === name)) {
      throw new ImageError(
        'ERR_IMAGE_USAGE',
        `--uki-stub ${o.stub} already has a ${name} section (a UKI, not a stub)`,
      );
    }
  }
  const contents: Record<(typeof UKI_SECTIONS)[number], Uint8Array> = {
    '.osrel': Buffer.from(o.osRelease),
    // NUL-terminated, as ukify writes it: the stub converts it to UTF-16 up to the NUL.
    '.cmdline': Buffer.from(`${o.cmdline}\0`),
    '.initrd': o.initrd,
    '.linux': await readFile(o.kernel),
  };
  const last = stub.sections.reduce((a, s) => Math.max(a, s.virtualAddress + s.virtualSize), 0);
  let vma = roundUp(last, PAGE);
  const args: string[] = [];
  for (const name of UKI_SECTIONS) {
    const file = join(o.scratch, `uki${name}`);
    await writeFile(file, contents[name]);
    args.push(
      '--add-section',
      `${name}=${file}`,
      '--set-section-flags',
      `${name}=data,readonly`,
      '--change-section-vma',
      `${name}=0x${(Number(stub.imageBase) + vma).toString(16)}`,
    );
    vma = roundUp(vma + contents[name].byteLength, PAGE);
  }
  await runTool('objcopy', [...args, o.stub, o.out]);
  const built = parsePe(await readFile(o.out), o.out);
  assertNoOverlap(built, o.out);
  return built;
}

/** Refuse a PE whose sections overlap in memory (objcopy keeps the addresses it is given). */
export function assertNoOverlap(image: PeImage, what: string): void {
  const sorted = [...image.sections].sort((a, b) => a.virtualAddress - b.virtualAddress);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (prev.virtualAddress + prev.virtualSize > cur.virtualAddress) {
      throw new ImageError(
        'ERR_IMAGE_TOOL_FAILED',
        `${what}: sections ${prev.name} and ${cur.name} overlap in memory (objcopy layout)`,
      );
    }
  }
}

export interface SecureBootKey {
  key: string;
  cert: string;
}

/** Sign `file` in place with sbsign (Authenticode, for UEFI Secure Boot) and check it with sbverify. */
export async function sbsignInPlace(file: string, k: SecureBootKey): Promise<void> {
  const signed = `${file}.signed`;
  await runTool('sbsign', ['--key', k.key, '--cert', k.cert, '--output', signed, file]);
  await runTool('sbverify', ['--cert', k.cert, signed]);
  await writeFile(file, await readFile(signed));
}
