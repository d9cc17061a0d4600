// Which kernel modules the initramfs loads, in dependency order. Dependencies come from each
// module's own `.modinfo` section ("depends=a,b"), the data depmod writes into modules.dep:
// Debian's kernel package ships no modules.dep (the postinst runs depmod) and this host has no
// kmod, so reading the ELF section directly works for any unpacked kernel.
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ImageError } from './errors.js';

/** Modules without which the boot cannot verify and mount the root. */
export const VERITY_MODULES = ['dm-mod', 'dm-verity'];
/** What the initramfs loads: disk, verity, root and ESP filesystems, overlays, firewall, network. */
export const INITRAMFS_MODULES = [
  'virtio_pci',
  'virtio_blk',
  'virtio_net',
  ...VERITY_MODULES,
  'erofs',
  'squashfs',
  'overlay',
  'vfat',
  'nls_cp437',
  'nls_ascii',
  'nls_iso8859-1',
  'nf_tables',
  'nft_ct',
  // EFI variables: the UKI boot finds its slot in LoaderDevicePartUUID; the uefi backend's state.
  'efivarfs',
];

export interface KernelModules {
  /** lib/modules/<version> directory. */
  dir: string;
  version: string;
  /** Module files in load order (dependencies first), relative to `dir`. */
  load: string[];
}

const norm = (name: string): string => name.replace(/-/g, '_');

/** The strings of the ELF64 `.modinfo` section of a `.ko` file. */
export function modinfo(ko: Buffer): Map<string, string> {
  const fail = (): never => {
    throw new ImageError('ERR_IMAGE_KERNEL_UNSUITABLE', 'not an uncompressed ELF64 kernel module');
  };
  if (ko.length < 64 || ko.readUInt32BE(0) !== 0x7f454c46 || ko[4] !== 2 || ko[5] !== 1) fail();
  const shoff = Number(ko.readBigUInt64LE(0x28));
  const shentsize = ko.readUInt16LE(0x3a);
  const shnum = ko.readUInt16LE(0x3c);
  const shstrndx = ko.readUInt16LE(0x3e);
  const section = (i: number): { name: number; offset: number; size: number } => {
    const at = shoff + i * shentsize;
    if (at + 64 > ko.length) fail();
    return {
      name: ko.readUInt32LE(at),
      offset: Number(ko.readBigUInt64LE(at + 0x18)),
      size: Number(ko.readBigUInt64LE(at + 0x20)),
    };
  };
  const names = section(shstrndx);
  const out = new Map<string, string>();
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const end = ko.indexOf(0, names.offset + s.name);
    if (ko.toString('latin1', names.offset + s.name, end) !== '.modinfo') continue;
    for (const entry of ko.toString('latin1', s.offset, s.offset + s.size).split('\0')) {
      const eq = entry.indexOf('=');
      if (eq > 0) out.set(entry.slice(0, eq), entry.slice(eq + 1));
    }
  }
  return out;
}

async function indexModules(
  dir: string,
  rel = '',
  into = new Map<string, string>(),
): Promise<Map<string, string>> {
  for (const entry of await readdir(join(dir, rel), { withFileTypes: true })) {
    const path = rel === '' ? entry.name : `${rel}/${entry.name}`;
    if (entry.isDirectory()) await indexModules(dir, path, into);
    else if (/\.ko(\.(xz|zst|gz))?$/.test(entry.name))
      into.set(norm(basename(entry.name).replace(/\.ko.*$/, '')), path);
  }
  return into;
}

/** `modulesDir` is lib/modules/<version> or a root holding exactly one lib/modules/<version>. */
export async function findModulesDir(modulesDir: string): Promise<{ dir: string; version: string }> {
  if (await stat(join(modulesDir, 'modules.builtin')).catch(() => undefined)) {
    return { dir: modulesDir, version: basename(modulesDir) };
  }
  const base = join(modulesDir, 'lib', 'modules');
  const versions = await readdir(base).catch(() => [] as string[]);
  if (versions.length !== 1) {
    throw new ImageError(
      'ERR_IMAGE_KERNEL_UNSUITABLE',
      `--kernel-modules ${modulesDir}: expected lib/modules/<version> (with modules.builtin) or a directory holding exactly one, found ${versions.length}`,
    );
  }
  return { dir: join(base, versions[0]!), version: versions[0]! };
}

/** Resolve `wanted` and their dependencies; built-in modules need no file. */
export async function resolveModules(
  modulesDir: string,
  wanted: readonly string[] = INITRAMFS_MODULES,
): Promise<KernelModules> {
  const { dir, version } = await findModulesDir(modulesDir);
  const builtin = new Set(
    (await readFile(join(dir, 'modules.builtin'), 'utf8').catch(() => ''))
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => norm(basename(l).replace(/\.ko.*$/, ''))),
  );
  const files = await indexModules(dir);
  const load: string[] = [];
  const seen = new Set<string>();
  const visit = async (name: string, neededBy: string | undefined): Promise<void> => {
    const key = norm(name);
    if (seen.has(key) || builtin.has(key)) return;
    seen.add(key);
    const rel = files.get(key);
    if (rel === undefined) {
      const verity = VERITY_MODULES.map(norm).includes(key) ? ' (dm-verity cannot be set up without it)' : '';
      throw new ImageError(
        'ERR_IMAGE_KERNEL_UNSUITABLE',
        `kernel ${version} has no module ${name}${neededBy === undefined ? '' : ` (needed by ${neededBy})`} in ${dir} and does not build it in${verity}; use a kernel with CONFIG_${key.toUpperCase()}=m or y`,
      );
    }
    if (!rel.endsWith('.ko')) {
      throw new ImageError(
        'ERR_IMAGE_KERNEL_UNSUITABLE',
        `${rel}: compressed modules are not supported; unpack them (e.g. xz -d)`,
      );
    }
    const deps = (modinfo(await readFile(join(dir, rel))).get('depends') ?? '')
      .split(',')
      .filter((d) => d !== '');
    for (const dep of deps) await visit(dep, name);
    load.push(rel);
  };
  for (const name of wanted) await visit(name, undefined);
  return { dir, version, load };
}
