// Kernel modules the running guest loads itself (the initramfs loads only what mounting the
// root needs): the virtio NIC for udhcpc, and FAT for the ESP that holds the grubenv. Copied
// with their dependencies in load order; rcS insmods the list. Debian's kernel package is
// unpacked, not installed, so there is no modules.dep: dependencies come from each module's
// own .modinfo `depends=` string and names from modules.order (no kmod needed on the host).
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { GuestTreeError } from './errors.js';

/** Module names the guest loads after switch_root. */
export const GUEST_MODULES = ['virtio_net', 'vfat', 'nls_cp437', 'nls_ascii', 'nls_iso8859-1'];

/** Where rcS reads the module list (one guest path per line). */
export const MODULE_LIST_PATH = 'etc/abota-guest/modules';

/** Module name as the kernel spells it (file name without .ko, '-' and '_' are one). */
function moduleName(path: string): string {
  return path
    .replace(/^.*\//, '')
    .replace(/\.ko(\.\w+)?$/, '')
    .replaceAll('-', '_');
}

/** The `depends=` list of a module's .modinfo section (NUL-separated key=value strings). */
export function modinfoDepends(ko: Uint8Array): string[] {
  const text = Buffer.from(ko).toString('latin1');
  const at = text.indexOf('\0depends=');
  if (at < 0) return [];
  const value = text.slice(at + '\0depends='.length, text.indexOf('\0', at + 1));
  return value === '' ? [] : value.split(',').map((n) => n.replaceAll('-', '_'));
}

/**
 * The module files (relative to the version directory) `names` need, dependencies first, each
 * once. `pathOf` maps a module name to its file; `dependsOf` reads a file's dependencies.
 */
export async function loadOrder(
  names: readonly string[],
  pathOf: ReadonlyMap<string, string>,
  dependsOf: (path: string) => Promise<string[]>,
): Promise<string[]> {
  const order: string[] = [];
  const visit = async (name: string): Promise<void> => {
    const path = pathOf.get(name.replaceAll('-', '_'));
    if (path === undefined) {
      throw new GuestTreeError(
        'ERR_GUEST_MODULE_MISSING',
        `kernel module ${name} is not in modules.order (built in, or not built): the guest tree needs it as a module`,
      );
    }
    if (order.includes(path)) return;
    for (const d of await dependsOf(path)) await visit(d);
    order.push(path);
  };
  for (const name of names) await visit(name);
  return order;
}

/**
 * Copy the guest's modules from `modulesDir` (holding lib/modules/<version>/, as
 * scripts/vm-kernel.mjs unpacks it) and write the load list. Returns the list.
 */
export async function installKernelModules(
  root: string,
  modulesDir: string,
  version: string,
): Promise<string[]> {
  const versionDir = join(modulesDir, 'lib', 'modules', version);
  const pathOf = new Map<string, string>();
  for (const p of (await readFile(join(versionDir, 'modules.order'), 'utf8')).split('\n')) {
    if (p !== '') pathOf.set(moduleName(p), p);
  }
  const order = await loadOrder(GUEST_MODULES, pathOf, async (p) =>
    modinfoDepends(await readFile(join(versionDir, p))),
  );
  for (const path of order) {
    const dest = join(root, 'lib', 'modules', version, path);
    await mkdir(dirname(dest), { recursive: true });
    await copyFile(join(versionDir, path), dest);
  }
  const list = order.map((p) => `/lib/modules/${version}/${p}`);
  await mkdir(join(root, dirname(MODULE_LIST_PATH)), { recursive: true });
  await writeFile(join(root, MODULE_LIST_PATH), `${list.join('\n')}\n`);
  return list;
}
