// Copy an ELF program into a root filesystem tree together with the shared libraries `ldd`
// lists for it (and the dynamic loader), at the same absolute paths, so it runs in a guest that
// has no package manager and no libc of its own.
import { spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdir, realpath } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { GuestTreeError } from './errors.js';

/**
 * The absolute paths of the libraries `ldd` resolves for `program` (loader included). Fails when
 * one is "not found": a guest missing a library would only fail at boot, far from the cause.
 */
export function sharedLibrariesOf(program: string): string[] {
  const r = spawnSync('ldd', [program], { encoding: 'utf8' });
  const out = `${r.stdout}${r.stderr}`;
  if (/not a dynamic executable/.test(out)) return [];
  if (r.status !== 0) {
    throw new GuestTreeError('ERR_GUEST_LDD', `ldd ${program} failed (status ${r.status}): ${out.trim()}`);
  }
  const libs: string[] = [];
  for (const line of out.split('\n')) {
    if (/=>\s*not found/.test(line)) {
      throw new GuestTreeError('ERR_GUEST_LDD', `${program} needs a library the host lacks: ${line.trim()}`);
    }
    // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line);
    if (m?.[1] !== undefined) libs.push(m[1]);
  }
  return libs;
}

/** Copy a file to the same path under `root` (following symlinks: the guest gets the bytes). */
export async function copyToSamePath(root: string, path: string, mode?: number): Promise<void> {
  const dest = join(root, path);
  await mkdir(dirname(dest), { recursive: true });
  await copyFile(await realpath(path), dest);
  if (mode !== undefined) await chmod(dest, mode);
}

/**
 * Install `program` at `guestPath` in the tree and every library it needs at its host path.
 * Returns the guest paths of the libraries (for the tests and the build log).
 */
export async function installProgram(root: string, program: string, guestPath: string): Promise<string[]> {
  const dest = join(root, guestPath);
  await mkdir(dirname(dest), { recursive: true });
  await copyFile(program, dest);
  await chmod(dest, 0o755);
  const libs = sharedLibrariesOf(program);
  for (const lib of libs) await copyToSamePath(root, lib, 0o755);
  return libs;
}
