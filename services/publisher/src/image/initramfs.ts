// The initramfs abota generates for a release: busybox (static), dmsetup and nft with the
// shared libraries ldd lists, the kernel modules resolved by ./kmod.ts, the firewall ruleset
// and /init (./init-script.ts); a reproducible gzip'd cpio.
//
// dmsetup rather than veritysetup: the table is all the kernel needs (the parameters are on
// the command line), and dmsetup pulls 5 libraries where veritysetup pulls cryptsetup's 12+.
import { readFile, realpath } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { type CpioEntry, cpioNewc } from './cpio.js';
import { ImageError } from './errors.js';
import { FIREWALL_NFT, INIT_SCRIPT } from './init-script.js';
import { type KernelModules, resolveModules } from './kmod.js';
import { requireTools, runTool } from './tools.js';

export interface InitramfsResult {
  bytes: Buffer;
  modules: KernelModules;
  /** Host files copied in (binaries and libraries). */
  hostFiles: string[];
}

/** Absolute paths of the shared objects `binary` loads (empty for a static binary). */
export async function sharedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await runTool('ldd', [binary]).catch((err: unknown) => {
    // glibc's ldd exits 1 with "not a dynamic executable" for static binaries.
    if (err instanceof ImageError && /not a dynamic executable/.test(err.message)) return { stdout: '' };
    throw err;
  });
  const libs: string[] = [];
  for (const line of stdout.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1] !== undefined) libs.push(m[1]);
  }
  return libs;
}

function parentDirs(paths: readonly string[]): string[] {
  const dirs = new Set<string>();
  for (const p of paths) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  return [...dirs].sort();
}

export async function buildInitramfs(modulesDir: string, epoch: number): Promise<InitramfsResult> {
  const tools = await requireTools(['busybox', 'dmsetup', 'nft', 'ldd']);
  const modules = await resolveModules(modulesDir);
  const files: { path: string; data: Buffer; mode: number }[] = [];
  const hostFiles: string[] = [];
  const copyHost = async (host: string, at: string): Promise<void> => {
    if (files.some((f) => f.path === at)) return;
    files.push({ path: at, data: await readFile(await realpath(host)), mode: 0o755 });
    hostFiles.push(host);
  };
  await copyHost(tools.get('busybox')!, 'bin/busybox');
  if ((await sharedLibraries(tools.get('busybox')!)).length > 0) {
    throw new ImageError(
      'ERR_IMAGE_TOOL_MISSING',
      'busybox is dynamically linked: apt-get install busybox-static',
    );
  }
  for (const tool of ['dmsetup', 'nft'] as const) {
    const host = tools.get(tool)!;
    await copyHost(host, `sbin/${tool}`);
    for (const lib of await sharedLibraries(host)) await copyHost(lib, lib.replace(/^\//, ''));
  }
  for (const rel of modules.load) {
    const name = rel.split('/').pop()!;
    files.push({ path: `lib/modules/${name}`, data: await readFile(`${modules.dir}/${rel}`), mode: 0o644 });
  }
  const loadOrder = `${modules.load.map((rel) => rel.split('/').pop()!).join('\n')}\n`;
  files.push(
    { path: 'init', data: Buffer.from(INIT_SCRIPT), mode: 0o755 },
    { path: 'etc/abota/firewall.nft', data: Buffer.from(FIREWALL_NFT), mode: 0o644 },
    { path: 'lib/modules/load.order', data: Buffer.from(loadOrder), mode: 0o644 },
  );
  files.sort((a, b) => (a.path < b.path ? -1 : 1));
  const dirs = new Set([
    ...parentDirs(files.map((f) => f.path)),
    'dev',
    'proc',
    'sys',
    'run',
    'newroot',
    'sbin',
  ]);
  const entries: CpioEntry[] = [
    ...[...dirs].sort().map((path): CpioEntry => ({ path, type: 'dir' })),
    // The kernel opens /dev/console for /init before devtmpfs is mounted.
    { path: 'dev/console', type: 'chardev', major: 5, minor: 1, mode: 0o600 },
    ...files.map((f): CpioEntry => ({ path: f.path, type: 'file', data: f.data, mode: f.mode })),
  ];
  const bytes = gzipSync(cpioNewc(entries, epoch), { level: 9 });
  return { bytes, modules, hostFiles };
}
