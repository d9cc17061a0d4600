// busybox-static and its applet links: the guest's shell, init, udhcpc, mount, insmod, reboot.
// Static, so it needs no library; every applet is a relative symlink to /bin/busybox.
import { spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdir, symlink } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { findTool } from '@abota/testkit';
import { GuestTreeError } from './errors.js';

/** busybox's package-manager applets: the image has no package manager, so they get no link. */
export const OMITTED_APPLETS = new Set(['dpkg', 'dpkg-deb', 'rpm', 'rpm2cpio']);

/** Install busybox at /bin/busybox and link every other applet at the path `--list-full` gives. */
export async function installBusybox(root: string): Promise<number> {
  const busybox = findTool('busybox');
  if (busybox === undefined) {
    throw new GuestTreeError(
      'ERR_GUEST_TOOL_MISSING',
      'busybox is not installed (Debian package busybox-static: apt-get install busybox-static)',
    );
  }
  const r = spawnSync(busybox, ['--list-full'], { encoding: 'utf8' });
  // A dynamic busybox (package `busybox`) would need its libraries in the guest too.
  if (r.status !== 0 || spawnSync('ldd', [busybox], { encoding: 'utf8' }).status === 0) {
    throw new GuestTreeError(
      'ERR_GUEST_TOOL_MISSING',
      `${busybox} is not a static busybox with --list-full (Debian package busybox-static)`,
    );
  }
  const target = join(root, 'bin', 'busybox');
  await mkdir(dirname(target), { recursive: true });
  await copyFile(busybox, target);
  await chmod(target, 0o755);
  let links = 0;
  const applets = r.stdout.split('\n').filter((l) => l !== '' && l !== 'bin/busybox');
  for (const applet of applets.filter((a) => !OMITTED_APPLETS.has(a.replace(/^.*\//, '')))) {
    const link = join(root, applet);
    await mkdir(dirname(link), { recursive: true });
    await symlink(relative(dirname(link), target), link);
    links++;
  }
  return links;
}
