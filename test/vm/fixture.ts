// Building what a VM test boots, with the real `abota` CLI (services/publisher/bin/abota.js,
// built by `npm run test:vm`) and the kernel from scripts/vm-kernel.mjs: keys, a rootfs image
// from a guest tree, a signed release with its boot image, the factory disk.
import { execFile } from 'node:child_process';
import { chmod, mkdir, symlink, writeFile, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const REPO = new URL('../../', import.meta.url).pathname;
const ABOTA = join(REPO, 'services/publisher/bin/abota.js');
const SEARCH_PATH = `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin`;

/** Small partitions for tests (docs/image.md lists the defaults). */
export const TEST_SIZES = [
  '--size-esp',
  '32M',
  '--size-boot-efi',
  '1M',
  '--size-boot',
  '40M',
  '--size-rootfs',
  '16M',
  '--size-unused',
  '1M',
  '--size-log',
  '8M',
  '--size-data',
  '32M',
];

export interface Kernel {
  version: string;
  vmlinuz: string;
  modulesDir: string;
}

export async function vmKernel(): Promise<Kernel> {
  const { stdout } = await run('node', [join(REPO, 'scripts/vm-kernel.mjs')], { maxBuffer: 1 << 20 });
  return JSON.parse(stdout) as Kernel;
}

/** Run `abota …args --json` and return its parsed JSON (throws with stderr on failure). */
export async function abota(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<Record<string, unknown>> {
  const { stdout } = await run('node', [ABOTA, ...args, '--json'], {
    env: { ...process.env, PATH: SEARCH_PATH, ...env },
    maxBuffer: 16 << 20,
  });
  return JSON.parse(stdout) as Record<string, unknown>;
}

/** Run `abota …args --json` expecting a failure: its exit status and error document. */
export async function abotaFailure(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ status: number; error: { code: string; message: string } }> {
  try {
    await abota(args, env);
  } catch (err) {
    const e = err as { code?: number; stdout?: string };
    const doc = JSON.parse(e.stdout ?? '{}') as { error?: { code: string; message: string } };
    return { status: e.code ?? -1, error: doc.error ?? { code: '', message: String(err) } };
  }
  throw new Error(`abota ${args.join(' ')} succeeded; a failure was expected`);
}

/**
 * The minimal guest of the boot tests: static busybox with its applets linked in /bin, an
 * /sbin/init that mounts /tmp, configures the slirp network statically, marks the booted slot
 * good in the grubenv (the agent's job in the full guest), serves HTTP on 22 and 8080 and
 * leaves a shell on the console for Vm.run().
 */
export async function minimalGuestTree(dir: string, label: string): Promise<void> {
  for (const d of ['bin', 'sbin', 'etc', 'www']) await mkdir(join(dir, d), { recursive: true });
  await copyFile('/bin/busybox', join(dir, 'bin/busybox'));
  const { stdout } = await run('/bin/busybox', ['--list']);
  for (const applet of stdout.split('\n').filter((a) => a !== '' && a !== 'busybox')) {
    await symlink('busybox', join(dir, 'bin', applet));
  }
  await writeFile(join(dir, 'etc/guest-label'), `${label}\n`);
  await writeFile(join(dir, 'www/index.html'), `guest ${label}\n`);
  await writeFile(
    join(dir, 'sbin/init'),
    `#!/bin/sh
export PATH=/bin
mount -t tmpfs tmpfs /tmp
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
# "Health check passed": mark the booted slot good as the agent's GrubBootControl.markGood
# does (X_OK=1, X_TRY=0); same length, so the grubenv block keeps its size.
slot=$(sed -n 's/.*abota\\.slot=\\([AB]\\).*/\\1/p' /run/abota/cmdline)
sed -i "s/^\${slot}_TRY=1$/\${slot}_TRY=0/" /boot/efi/EFI/abota/grubenv && sync
httpd -p 22 -h /www
httpd -p 8080 -h /www
echo "abota-guest: ready slot=$slot label=$(cat /etc/guest-label) uptime=$(cut -d' ' -f1 /proc/uptime)"
exec sh
`,
  );
  await chmod(join(dir, 'sbin/init'), 0o755);
}

/** `release build` arguments of a test release (no boot image: add --kernel … for one). */
export function releaseBuildArgs(o: {
  image: string;
  keys: string;
  out: string;
  version: string;
  product?: string;
}): string[] {
  return [
    'release',
    'build',
    '--image',
    o.image,
    '--product',
    o.product ?? 'vm-test',
    '--compatible',
    'qemu-q35',
    '--version',
    o.version,
    '--security-version',
    '1',
    '--expires',
    '30d',
    '--keys',
    o.keys,
    '--out',
    o.out,
  ];
}

export interface TestRelease {
  dir: string;
  rootHash: string;
}

/** Keys for test releases (one root and one release key). */
export async function testKeys(dir: string): Promise<string> {
  const keys = join(dir, 'keys');
  await abota([
    'keys',
    'init',
    keys,
    '--root-keys',
    '1',
    '--root-threshold',
    '1',
    '--release-keys',
    '1',
    '--release-threshold',
    '1',
  ]);
  return keys;
}

/**
 * A signed release <dir>/release-<version> of the root tree `tree`, with its boot image from
 * `kernel` (what a test or the demo boots).
 */
export async function releaseFromTree(
  dir: string,
  keys: string,
  kernel: Kernel,
  version: string,
  tree: string,
  product = 'vm-test',
  /** More `release build` flags, e.g. --boot-format uki --sb-key … --sb-cert …. */
  extra: readonly string[] = [],
): Promise<TestRelease> {
  const image = join(dir, `rootfs-${version}.img`);
  await abota(['image', 'rootfs', '--from', tree, '--out', image]);
  const out = join(dir, `release-${version}`);
  const summary = await abota(
    releaseBuildArgs({ image, keys, out, version, product }).concat([
      '--kernel',
      kernel.vmlinuz,
      '--kernel-modules',
      kernel.modulesDir,
      ...extra,
    ]),
  );
  return { dir: out, rootHash: (summary['images'] as { rootfs: { rootHash: string } }).rootfs.rootHash };
}

/** A signed release of the minimal guest labelled `label`. */
export async function minimalRelease(
  dir: string,
  keys: string,
  kernel: Kernel,
  version: string,
  label: string,
  extra: readonly string[] = [],
): Promise<TestRelease> {
  const tree = join(dir, `tree-${version}`);
  await minimalGuestTree(tree, label);
  return releaseFromTree(dir, keys, kernel, version, tree, 'vm-test', extra);
}
