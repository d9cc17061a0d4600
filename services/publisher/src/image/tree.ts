// The source of a root filesystem image: a directory used as is, or a tarball unpacked into a
// scratch directory. Checks that it is a root filesystem (its init exists) and that the mount
// points the initramfs needs exist, since the image is read-only once built.
import { cp, lstat, mkdir, readlink, stat } from 'node:fs/promises';
import { isAbsolute, join, posix } from 'node:path';
import { ImageError } from './errors.js';
import { runTool } from './tools.js';

/** Directories the initramfs mounts over or overlays (docs/image.md "Boot sequence"). */
export const MOUNT_POINTS = [
  'dev',
  'proc',
  'sys',
  'run',
  'tmp',
  'var',
  'logs',
  'etc',
  'home',
  'root',
  'boot/efi',
];

/** Follow `path` inside `root` (symlinks resolved against the tree, not the host); undefined if absent. */
export async function resolveInTree(root: string, path: string): Promise<string | undefined> {
  let current = posix.normalize(`/${path}`);
  for (let hops = 0; hops < 40; hops++) {
    let info: Awaited<ReturnType<typeof lstat>>;
    try {
      info = await lstat(join(root, current));
    } catch {
      return undefined;
    }
    if (!info.isSymbolicLink()) return current;
    const target = await readlink(join(root, current));
    current = posix.normalize(isAbsolute(target) ? target : posix.join(posix.dirname(current), target));
  }
  return undefined;
}

/** Refuse a tree whose init is missing or not an executable regular file. */
export async function assertRootFilesystem(root: string, init: string): Promise<void> {
  const resolved = await resolveInTree(root, init);
  const info = resolved === undefined ? undefined : await stat(join(root, resolved)).catch(() => undefined);
  if (info === undefined || !info.isFile() || (info.mode & 0o111) === 0) {
    throw new ImageError(
      'ERR_IMAGE_NOT_A_ROOTFS',
      `${root} is not a root filesystem: ${init} ${info === undefined ? 'does not exist' : 'is not an executable file'} in it ` +
        '(the kernel starts it after switch_root; give another one with --init)',
    );
  }
}

export async function missingMountPoints(root: string): Promise<string[]> {
  const missing: string[] = [];
  for (const dir of MOUNT_POINTS) {
    const info = await stat(join(root, dir)).catch(() => undefined);
    if (info === undefined || !info.isDirectory()) missing.push(`/${dir}`);
  }
  return missing;
}

export interface PreparedTree {
  dir: string;
  /** Mount points abota added because the tree lacked them. */
  addedMountPoints: string[];
}

/**
 * Make `from` (directory or tarball) ready to be imaged in `scratch`: unpack a tarball, check
 * the init, add missing mount points (copying a directory first: the caller's tree is never
 * changed).
 */
export async function prepareTree(from: string, scratch: string, init: string): Promise<PreparedTree> {
  const info = await stat(from).catch((err: NodeJS.ErrnoException) => {
    throw new ImageError(
      'ERR_IMAGE_SOURCE_UNREADABLE',
      `--from ${from}: ${err.code === 'ENOENT' ? 'not found' : err.message}`,
    );
  });
  let dir = from;
  let copied = false;
  if (info.isFile()) {
    dir = join(scratch, 'tree');
    await mkdir(dir);
    await runTool('tar', ['-xpf', from, '-C', dir, '--no-same-owner', '--delay-directory-restore']).catch(
      (err: ImageError) => {
        throw new ImageError(
          'ERR_IMAGE_SOURCE_UNREADABLE',
          `--from ${from} is not a readable tarball: ${err.message}`,
        );
      },
    );
    copied = true;
  } else if (!info.isDirectory()) {
    throw new ImageError(
      'ERR_IMAGE_SOURCE_UNREADABLE',
      `--from ${from} is neither a directory nor a tarball`,
    );
  }
  await assertRootFilesystem(dir, init);
  const missing = await missingMountPoints(dir);
  if (missing.length > 0 && !copied) {
    const copy = join(scratch, 'tree');
    await cp(dir, copy, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    dir = copy;
  }
  for (const m of missing) await mkdir(join(dir, m), { recursive: true, mode: 0o755 });
  return { dir, addedMountPoints: missing };
}
