// Signed releases of the guest: tree (guest-tree.ts) → `abota image rootfs` → `abota release
// build --kernel` (boot image with this rootfs' root hash), optionally with deltas from earlier
// releases. Every step is the real CLI, as a publisher runs it.
import { join } from 'node:path';
import { abota, type Kernel } from './fixture.js';
import { buildGuestTree, type GuestTreeOptions } from './guest/guest-tree.js';

export interface VmReleaseOptions extends Omit<GuestTreeOptions, 'dir' | 'kernel' | 'trustRootPath'> {
  /** Working directory of this release (tree/, rootfs.img, release/ are made in it). */
  dir: string;
  kernel: Kernel;
  /** `abota keys init` directory: root.json goes into the tree, the keys sign the release. */
  keysDir: string;
  /** Earlier release directories to make deltas from. */
  deltaFrom?: string[];
  securityVersion?: number;
  /** More `release build` flags (e.g. --boot-format uki for a GRUBless disk). */
  buildFlags?: string[];
}

export interface VmRelease {
  version: string;
  /** The signed release directory (manifest.jws, blobs/, deltas.json). */
  dir: string;
  rootfsImage: string;
  /** dm-verity root hash of the rootfs (the boot image's kernel command line carries it). */
  rootHash: string;
  /** Seconds each step took: tree, rootfs, release. */
  timings: { treeSeconds: number; rootfsSeconds: number; releaseSeconds: number };
}

const seconds = (start: number): number => Math.round((performance.now() - start) / 100) / 10;

export async function buildVmRelease(o: VmReleaseOptions): Promise<VmRelease> {
  const { dir, keysDir, deltaFrom, kernel, buildFlags, ...tree } = o;
  let t = performance.now();
  await buildGuestTree({
    ...tree,
    dir: join(dir, 'tree'),
    kernel,
    trustRootPath: join(keysDir, 'root.json'),
  });
  const treeSeconds = seconds(t);
  t = performance.now();
  const rootfsImage = join(dir, 'rootfs.img');
  await abota(['image', 'rootfs', '--from', join(dir, 'tree'), '--out', rootfsImage]);
  const rootfsSeconds = seconds(t);
  t = performance.now();
  const releaseDir = join(dir, 'release');
  const summary = await abota([
    'release',
    'build',
    '--image',
    rootfsImage,
    '--kernel',
    kernel.vmlinuz,
    '--kernel-modules',
    kernel.modulesDir,
    '--product',
    o.product,
    '--compatible',
    o.hardware,
    '--version',
    o.version,
    '--security-version',
    String(o.securityVersion ?? 1),
    '--expires',
    '30d',
    '--keys',
    keysDir,
    '--out',
    releaseDir,
    ...(deltaFrom ?? []).flatMap((d) => ['--delta-from', d]),
    // zstd level 3, not 19: the 131 MiB guest image compresses in 4 s instead of 119 s (46.9 MB
    // instead of 37.9 MB); the agent decodes every level alike (the codec tests cover 19).
    '--codec-level',
    '3',
    ...(buildFlags ?? []),
  ]);
  return {
    version: o.version,
    dir: releaseDir,
    rootfsImage,
    rootHash: (summary as unknown as { images: { rootfs: { rootHash: string } } }).images.rootfs.rootHash,
    timings: { treeSeconds, rootfsSeconds, releaseSeconds: seconds(t) },
  };
}
