// Builds the VM's root filesystem tree (the input of `abota image rootfs`): busybox init and
// applets, dropbear on port 22, the agent package (`npm run package:agent`: the bundled agent
// with its pinned Node 24 runtime) as the update service, the trust root and the agent config.
// No package manager: the .deb is unpacked here at build time and every program gets the
// libraries `ldd` lists.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findTool } from '@abota/testkit';
import {
  AGENT_CONFIG_GUEST_PATH,
  ESP_MOUNT_POINT,
  type GuestAgentConfigOptions,
  guestAgentConfig,
  TRUST_ROOT_GUEST_PATH,
} from './agent-config.js';
import { installBusybox } from './busybox.js';
import { GuestTreeError } from './errors.js';
import {
  AGENT_SERVICE,
  HEALTH_CHECK_PATH,
  healthCheck,
  INITTAB,
  RCK,
  rcS,
  UDHCPC_SCRIPT,
} from './init-scripts.js';
import { installKernelModules } from './kernel-modules.js';
import { copyToSamePath, installProgram, sharedLibrariesOf } from './shared-libraries.js';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CLIENT_DIR = join(REPO_ROOT, 'packages', 'client');

export interface GuestTreeOptions extends GuestAgentConfigOptions {
  /** Directory to fill; created, must be empty or absent. */
  dir: string;
  /** The kernel the boot image carries (scripts/vm-kernel.mjs output). */
  kernel: { version: string; modulesDir: string };
  /** The product's signed trust root (root.json), baked in under /usr (verity-protected). */
  trustRootPath: string;
  /** false builds a release whose health check fails (rollback tests). Default true. */
  healthy?: boolean;
  /** OpenSSH public key lines for root (the tests' way in through the hostfwd to port 22). */
  authorizedKeys?: string[];
  /** Extra files, guest path → content (what differs between two test releases). */
  extraFiles?: Record<string, string>;
  /** The agent .deb to install; default: what `npm run package:agent` built, else $ABOTA_VM_AGENT_DEB. */
  agentPackage?: string;
}

export interface GuestTree {
  dir: string;
  /** Guest paths of the libraries copied for node and dropbear. */
  libraries: string[];
  /** Kernel module load list (guest paths). */
  modules: string[];
  appletLinks: number;
}

/** Where the agent package keeps its Node runtime (scripts/package-agent.mjs layout). */
export const AGENT_PACKAGE_NODE = '/usr/lib/abota-agent/lib/node';

const DIRECTORIES = [
  'proc',
  'sys',
  'dev',
  'run',
  'tmp',
  'var',
  'logs',
  'mnt',
  'home',
  'root',
  'etc/init.d',
  'etc/dropbear',
  'etc/abota',
  ESP_MOUNT_POINT.slice(1),
  'usr/share/abota',
  'usr/lib/abota',
];

async function writeGuestFile(root: string, guestPath: string, content: string, mode = 0o644): Promise<void> {
  const dest = join(root, guestPath);
  await mkdir(dirname(dest), { recursive: true });
  await writeFile(dest, content);
  await chmod(dest, mode);
}

/** The agent package `npm run package:agent` builds (dist/agent/abota-agent_<version>_amd64.deb). */
export function guestAgentPackage(): string {
  const fromEnv = process.env['ABOTA_VM_AGENT_DEB'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const { version } = createRequire(join(REPO_ROOT, 'package.json'))(join(CLIENT_DIR, 'package.json')) as {
    version: string;
  };
  return join(REPO_ROOT, 'dist', 'agent', `abota-agent_${version}_amd64.deb`);
}

/**
 * The agent as a device gets it: the .deb unpacked into the tree (its bundled Node 24 runtime
 * under /usr/lib/abota-agent, /usr/bin/abota-agent, the systemd unit), plus the libraries that
 * runtime links (the package's Depends: a guest has no libc of its own).
 */
async function installAgentPackage(root: string, deb: string): Promise<string[]> {
  if (!existsSync(deb)) {
    throw new GuestTreeError(
      'ERR_GUEST_AGENT_PACKAGE_MISSING',
      `${deb} is missing: run \`npm run package:agent\` first (or set ABOTA_VM_AGENT_DEB)`,
    );
  }
  const r = spawnSync('dpkg-deb', ['-x', deb, root], { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new GuestTreeError(
      'ERR_GUEST_AGENT_PACKAGE',
      `dpkg-deb -x ${deb} failed: ${(r.stderr ?? '').trim()}`,
    );
  }
  const node = join(root, AGENT_PACKAGE_NODE.slice(1));
  // /usr/bin/node for the guest's own scripts and tests; the same binary the package runs.
  await symlink(AGENT_PACKAGE_NODE, join(root, 'usr', 'bin', 'node'));
  const libraries = sharedLibrariesOf(node);
  for (const lib of libraries) await copyToSamePath(root, lib, 0o755);
  return libraries;
}

function systemFiles(o: GuestTreeOptions): Record<string, string> {
  return {
    'etc/passwd': 'root:x:0:0:root:/root:/bin/sh\n',
    'etc/group': 'root:x:0:\ntty:x:5:\n',
    'etc/shadow': 'root:*:19000:0:99999:7:::\n',
    'etc/shells': '/bin/sh\n',
    'etc/hostname': 'abota-vm\n',
    'etc/hosts': '127.0.0.1 localhost abota-vm\n',
    'etc/abota-release': `VERSION=${o.version}\n`,
    'etc/inittab': INITTAB,
  };
}

function hostTool(name: string, debianPackage: string): string {
  const path = findTool(name);
  if (path === undefined) {
    throw new GuestTreeError(
      'ERR_GUEST_TOOL_MISSING',
      `${name} is not installed (Debian package ${debianPackage})`,
    );
  }
  return path;
}

/** Build the tree. Everything is validated up front (tools, node, bundle, config) before copying. */
export async function buildGuestTree(o: GuestTreeOptions): Promise<GuestTree> {
  const config = guestAgentConfig(o);
  const dropbear = findTool('dropbear');
  if (dropbear === undefined) {
    throw new GuestTreeError(
      'ERR_GUEST_TOOL_MISSING',
      'dropbear is not installed (Debian package dropbear-bin: apt-get install dropbear-bin)',
    );
  }
  await mkdir(o.dir, { recursive: true });
  if ((await readdir(o.dir)).length > 0) {
    throw new GuestTreeError('ERR_GUEST_DIR_NOT_EMPTY', `${o.dir} is not empty; give a new directory`);
  }
  const root = o.dir;
  for (const d of DIRECTORIES) await mkdir(join(root, d), { recursive: true });
  await chmod(join(root, 'root'), 0o700);
  await chmod(join(root, 'tmp'), 0o1777);
  const appletLinks = await installBusybox(root);
  const libraries = [
    ...(await installProgram(root, dropbear, '/usr/sbin/dropbear')),
    // The uefi backend reads and clears efivarfs's immutable flag with e2fsprogs' lsattr and
    // chattr (Debian's busybox-static has neither); efibootmgr lets the tests compare its view
    // of the boot variables with the backend's.
    ...(o.layout.uefi === undefined
      ? []
      : [
          ...(await installProgram(root, hostTool('lsattr', 'e2fsprogs'), '/usr/bin/lsattr')),
          ...(await installProgram(root, hostTool('chattr', 'e2fsprogs'), '/usr/bin/chattr')),
          ...(await installProgram(root, hostTool('efibootmgr', 'efibootmgr'), '/usr/bin/efibootmgr')),
        ]),
    ...(await installAgentPackage(root, o.agentPackage ?? guestAgentPackage())),
  ];
  const modules = await installKernelModules(root, o.kernel.modulesDir, o.kernel.version);
  for (const [path, text] of Object.entries(systemFiles(o))) {
    await writeGuestFile(root, path, text, path === 'etc/shadow' ? 0o600 : 0o644);
  }
  await writeGuestFile(
    root,
    'etc/init.d/rcS',
    rcS({ espPartlabel: o.layout.espPartlabel, espMountPoint: ESP_MOUNT_POINT }),
    0o755,
  );
  await writeGuestFile(root, 'etc/init.d/rcK', RCK, 0o755);
  await writeGuestFile(root, 'usr/share/udhcpc/default.script', UDHCPC_SCRIPT, 0o755);
  await writeGuestFile(root, 'usr/lib/abota/agent-service', AGENT_SERVICE, 0o755);
  await writeGuestFile(root, HEALTH_CHECK_PATH.slice(1), healthCheck(o.healthy ?? true), 0o755);
  await writeGuestFile(root, AGENT_CONFIG_GUEST_PATH.slice(1), `${JSON.stringify(config, null, 2)}\n`);
  await copyFile(o.trustRootPath, join(root, TRUST_ROOT_GUEST_PATH));
  if (o.authorizedKeys !== undefined) {
    await writeGuestFile(root, 'root/.ssh/authorized_keys', `${o.authorizedKeys.join('\n')}\n`, 0o600);
    await chmod(join(root, 'root', '.ssh'), 0o700);
  }
  for (const [path, text] of Object.entries(o.extraFiles ?? {})) {
    await writeGuestFile(root, path.replace(/^\/+/, ''), text);
  }
  return { dir: root, libraries, modules, appletLinks };
}
