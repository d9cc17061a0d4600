// ext4 root filesystem images for tests and the benchmark, built the way a release engineer's
// pipeline does it: a directory tree packed by `mkfs.ext4 -d DIR` (e2fsprogs) into a fixed-size
// image. Two trees: a deterministic synthetic one (tests: independent of the host) and a sample
// of this machine's /usr and /etc (bench: real binaries, libraries, text — realistic ratios).
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, readdir, stat, symlink, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { seeded } from '@abota/testkit';

const WORDS =
  'the of and to in is for on that by with from as this are be or at an it not which config service device update slot boot root verity kernel module library error warning option value path file system network user group'.split(
    ' ',
  );

/**
 * A synthetic root filesystem tree of about `contentBytes`: text (configs, docs: compressible),
 * "binaries" (random bytes with repeated sections, like code), empty files, nested
 * directories and symlinks.
 */
export async function writeSyntheticTree(dir: string, contentBytes: number, seed = 1): Promise<void> {
  // Deterministic (mulberry32) so the synthetic tree is the same on every machine.
  const rand = seeded(seed);
  let written = 0;
  let n = 0;
  const dirs = ['etc', 'usr/bin', 'usr/lib/abota', 'usr/share/doc/abota', 'var/lib', 'opt/app'];
  for (const d of dirs) await mkdir(join(dir, d), { recursive: true });
  while (written < contentBytes) {
    n += 1;
    const kind = rand();
    const where = dirs[Math.floor(rand() * dirs.length)]!;
    let body: Buffer;
    if (kind < 0.5) {
      const words: string[] = [];
      const size = 200 + Math.floor(rand() * 60_000);
      let len = 0;
      while (len < size) {
        const w = WORDS[Math.floor(rand() * WORDS.length)]!;
        words.push(rand() < 0.08 ? `${w}\n` : w);
        len += w.length + 1;
      }
      body = Buffer.from(words.join(' '));
    } else if (kind < 0.95) {
      // Binary-like: some random pages, many repeated ones (code and data tables repeat), zero
      // runs — roughly the compressibility of ELF files (brotli ≈ 3-4×).
      const size = 4096 + Math.floor(rand() * 400_000);
      body = Buffer.alloc(size);
      const page = Buffer.alloc(512);
      for (let at = 0; at < size; at += 512) {
        const r = rand();
        if (r < 0.2) {
          for (let i = 0; i < 512; i += 4) page.writeUInt32LE(Math.floor(rand() * 2 ** 32), i);
        } else if (r < 0.35) {
          page.fill(0);
        }
        page.copy(body, at, 0, Math.min(512, size - at));
      }
    } else {
      body = Buffer.alloc(0);
    }
    await writeFile(join(dir, where, `f${n}.${kind < 0.5 ? 'txt' : 'bin'}`), body);
    written += body.length;
    if (n % 50 === 0) await symlink(`f${n}.${kind < 0.5 ? 'txt' : 'bin'}`, join(dir, where, `link${n}`));
  }
}

/**
 * Copy regular files from this machine's /usr/bin, /usr/lib/x86_64-linux-gnu, /usr/share and
 * /etc (in sorted order, so repeatable on one host) until `contentBytes` — a stand-in for a real
 * distribution rootfs: ELF binaries and shared libraries dominate, plus text and data files.
 */
export async function writeHostSampleTree(dir: string, contentBytes: number): Promise<number> {
  const sources: [string, number][] = [
    ['/usr/bin', 0.37],
    ['/usr/lib/x86_64-linux-gnu', 0.45],
    ['/usr/share', 0.16],
    ['/etc', 0.02],
  ];
  let total = 0;
  for (const [src, share] of sources) {
    const budget = contentBytes * share;
    let used = 0;
    const walk = async (from: string): Promise<void> => {
      let entries: import('node:fs').Dirent[];
      try {
        entries = await readdir(from, { withFileTypes: true });
      } catch {
        return;
      }
      entries.sort((a, b) => (a.name < b.name ? -1 : 1));
      for (const e of entries) {
        if (used >= budget) return;
        const p = join(from, e.name);
        if (e.isDirectory()) await walk(p);
        else if (e.isFile()) {
          const size = await stat(p).then(
            (s) => s.size,
            () => -1,
          );
          if (size < 0 || used + size > budget) continue;
          const to = join(dir, src.slice(1), relative(src, p));
          await mkdir(join(to, '..'), { recursive: true });
          try {
            await copyFile(p, to);
            used += size;
          } catch {
            // unreadable (permissions): skip
          }
        }
      }
    };
    await walk(src);
    total += used;
  }
  return total;
}

/** `mkfs.ext4 -d treeDir -F imagePath sizeMiB` (quiet, no journal tuning: Debian defaults). */
export function mkfsExt4(treeDir: string, imagePath: string, sizeMiB: number, mkfsPath = 'mkfs.ext4'): void {
  const r = spawnSync(mkfsPath, ['-q', '-F', '-d', treeDir, imagePath, `${sizeMiB}M`], {
    encoding: 'utf8',
    env: { ...process.env, PATH: `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin` },
  });
  if (r.status !== 0) {
    throw new Error(`mkfs.ext4 -d ${treeDir} ${imagePath} ${sizeMiB}M failed (${r.status}): ${r.stderr}`);
  }
}
