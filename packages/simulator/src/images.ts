// Small root filesystem images for the demo, tests and benches: ext4 built with `mkfs.ext4 -d`
// from a generated directory tree when e2fsprogs is installed, else (never under
// ABOTA_REQUIRE_TOOLS=1) a deterministic raw image (an AES-CTR keystream keyed by the version).
// Contents depend only on the version string, so two builds of the same version are alike and
// v1/v2 share most of their files.
import { spawnSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SimulatorError } from './errors.js';

export interface RootfsImage {
  path: string;
  sizeBytes: number;
  kind: 'ext4' | 'raw';
}

/** Deterministic pseudo-random bytes: AES-128-CTR keystream keyed by SHA-256(seed). */
export function pseudoRandomBytes(seed: string, length: number): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]);
}

const MKFS_EXT4_PATHS = ['/usr/sbin/mkfs.ext4', '/sbin/mkfs.ext4', '/usr/bin/mkfs.ext4'] as const;

function findMkfsExt4(candidates: readonly string[]): string | undefined {
  for (const p of candidates) {
    const r = spawnSync(p, ['-V'], { stdio: 'ignore' });
    if (r.error === undefined) return p;
  }
  return undefined;
}

async function writeTree(root: string, version: string, payloadBytes: number): Promise<void> {
  await mkdir(join(root, 'etc'), { recursive: true });
  await mkdir(join(root, 'usr', 'lib', 'app'), { recursive: true });
  await mkdir(join(root, 'usr', 'bin'), { recursive: true });
  await writeFile(
    join(root, 'etc', 'os-release'),
    `NAME="abota demo OS"\nID=abota-demo\nVERSION_ID=${version}\nPRETTY_NAME="abota demo OS ${version}"\n`,
  );
  await writeFile(join(root, 'usr', 'bin', 'hello'), `#!/bin/sh\necho "hello from ${version}"\n`, {
    mode: 0o755,
  });
  // Shared libraries: the same bytes in every version (what deltas and dedup would save) …
  const shared = Math.floor(payloadBytes * 0.75);
  const files = 8;
  for (let i = 0; i < files; i++) {
    await writeFile(
      join(root, 'usr', 'lib', `lib${i}.so`),
      pseudoRandomBytes(`shared-${i}`, Math.floor(shared / files)),
    );
  }
  // … and the application, different in each version.
  await writeFile(
    join(root, 'usr', 'lib', 'app', 'app.bin'),
    pseudoRandomBytes(`app-${version}`, payloadBytes - shared),
  );
}

/**
 * Build `path` (sizeBytes, a multiple of 4096) for `version`. ext4 when mkfs.ext4 exists (set
 * `kind: 'raw'` to force the fallback), with fixed UUID, hash seed and time so the image depends
 * only on the version.
 */
export async function buildRootfsImage(o: {
  path: string;
  version: string;
  sizeBytes: number;
  kind?: 'ext4' | 'raw';
  /** Share of the filesystem filled with files (default 0.5); the rest stays free (zeros). */
  fillFraction?: number;
  /** Where mkfs.ext4 is looked for (default: the usual sbin and bin paths). */
  mkfsExt4Paths?: readonly string[];
}): Promise<RootfsImage> {
  if (o.sizeBytes % 4096 !== 0 || o.sizeBytes < 1024 * 1024) {
    throw new SimulatorError(
      'ERR_SIM_RELEASE',
      `image size ${o.sizeBytes} must be ≥ 1 MiB and a multiple of 4096`,
    );
  }
  const mkfs = o.kind === 'raw' ? undefined : findMkfsExt4(o.mkfsExt4Paths ?? MKFS_EXT4_PATHS);
  await rm(o.path, { force: true });
  if (mkfs === undefined) {
    if (o.kind === 'ext4')
      throw new SimulatorError('ERR_SIM_TOOL_MISSING', 'mkfs.ext4 (e2fsprogs) is not installed');
    // CI runs with every tool (testkit's describeWithTool contract): a raw image there would
    // quietly test less than the ext4 path the tests claim.
    if (o.kind === undefined && process.env['ABOTA_REQUIRE_TOOLS'] === '1') {
      throw new SimulatorError(
        'ERR_SIM_TOOL_MISSING',
        'mkfs.ext4 is not installed (Debian package e2fsprogs: apt-get install e2fsprogs) and ABOTA_REQUIRE_TOOLS=1 forbids the raw-image fallback',
      );
    }
    const fh = await open(o.path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o644);
    try {
      const header = Buffer.from(`ABOTA-RAW-ROOTFS\nversion=${o.version}\n`);
      const chunk = 1024 * 1024;
      for (let off = 0; off < o.sizeBytes; off += chunk) {
        const bytes = pseudoRandomBytes(
          off < o.sizeBytes / 2 ? `raw-shared-${off}` : `raw-${o.version}-${off}`,
          Math.min(chunk, o.sizeBytes - off),
        );
        if (off === 0) header.copy(bytes);
        await fh.write(bytes, 0, bytes.length, off);
      }
    } finally {
      await fh.close();
    }
    return { path: o.path, sizeBytes: o.sizeBytes, kind: 'raw' };
  }
  const tree = `${o.path}.tree`;
  await rm(tree, { recursive: true, force: true });
  try {
    await writeTree(tree, o.version, Math.floor(o.sizeBytes * (o.fillFraction ?? 0.5)));
    await writeFile(o.path, '');
    await truncate(o.path, o.sizeBytes);
    const seed = createHash('sha256').update(o.version).digest('hex');
    const uuid = `${seed.slice(0, 8)}-${seed.slice(8, 12)}-4${seed.slice(13, 16)}-8${seed.slice(17, 20)}-${seed.slice(20, 32)}`;
    const r = spawnSync(
      mkfs,
      // A read-only (dm-verity) root needs no journal and no reserved blocks.
      [
        '-q',
        '-F',
        '-b',
        '4096',
        '-O',
        '^has_journal',
        '-m',
        '0',
        '-L',
        'rootfs',
        '-U',
        uuid,
        '-E',
        `hash_seed=${uuid},root_owner=0:0`,
        '-d',
        tree,
        o.path,
      ],
      { encoding: 'utf8', env: { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' } },
    );
    if (r.status !== 0) {
      throw new SimulatorError(
        'ERR_SIM_RELEASE',
        `mkfs.ext4 failed (${r.status}): ${r.stderr || r.error?.message}`,
      );
    }
  } finally {
    await rm(tree, { recursive: true, force: true });
  }
  return { path: o.path, sizeBytes: o.sizeBytes, kind: 'ext4' };
}

/** A small deterministic boot image (kernel + initrd stand-in) for `version`. */
export async function buildBootImage(o: {
  path: string;
  version: string;
  sizeBytes?: number;
}): Promise<string> {
  const size = o.sizeBytes ?? 256 * 1024;
  const bytes = pseudoRandomBytes(`boot-${o.version}`, size);
  Buffer.from(`ABOTA-SIM-KERNEL version=${o.version}\n`).copy(bytes);
  await writeFile(o.path, bytes);
  return o.path;
}
