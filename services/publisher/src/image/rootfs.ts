// `abota image rootfs`: a read-only root filesystem image (erofs, squashfs or ext4) from a
// directory or tarball, byte-identical for the same tree and SOURCE_DATE_EPOCH, a whole
// number of 4096-byte verity blocks, sized to its content unless --size is given.
import { open, stat } from 'node:fs/promises';
import { makeExt4 } from './ext4.js';
import { ImageError } from './errors.js';
import { writeOutput } from './output-file.js';
import { alignUp, BLOCK, sourceDateEpoch, stableUuid } from './reproducible.js';
import { requireTools, runTool, type Tool } from './tools.js';
import { prepareTree } from './tree.js';

export const ROOTFS_TYPES = ['erofs', 'squashfs', 'ext4'] as const;
export type RootfsType = (typeof ROOTFS_TYPES)[number];

export interface RootfsOptions {
  from: string;
  fs: RootfsType;
  out: string;
  sizeBytes?: number | undefined;
  /** Path of the init inside the tree (default /sbin/init). */
  init?: string;
  env?: NodeJS.ProcessEnv;
}

export interface RootfsSummary {
  out: string;
  fs: RootfsType;
  sizeBytes: number;
  /** Bytes the filesystem itself takes before padding to the size. */
  contentBytes: number;
  sourceDateEpoch: number;
  init: string;
  addedMountPoints: string[];
  durationMs: number;
}

const TOOLS: Record<RootfsType, Tool[]> = {
  erofs: ['mkfs.erofs'],
  squashfs: ['mksquashfs'],
  ext4: ['mkfs.ext4', 'debugfs'],
};

export function parseRootfsType(text: string): RootfsType {
  if (!(ROOTFS_TYPES as readonly string[]).includes(text)) {
    throw new ImageError('ERR_IMAGE_USAGE', `--fs ${text}: expected one of ${ROOTFS_TYPES.join(', ')}`);
  }
  return text as RootfsType;
}

async function makeFs(
  fs: RootfsType,
  dir: string,
  out: string,
  epoch: number,
  sizeBytes?: number,
): Promise<void> {
  const uuid = stableUuid(`abota-rootfs:${fs}:${epoch}`);
  if (fs === 'erofs') {
    await runTool('mkfs.erofs', ['--quiet', `-T${epoch}`, `-U${uuid}`, '--all-root', out, dir]);
  } else if (fs === 'squashfs') {
    const t = String(epoch);
    await runTool('mksquashfs', [
      dir,
      out,
      '-quiet',
      '-noappend',
      '-no-progress',
      '-all-root',
      '-all-time',
      t,
      '-mkfs-time',
      t,
    ]);
  } else {
    await makeExt4({
      dir,
      out,
      sizeBytes,
      epoch,
      uuidName: `abota-rootfs:ext4`,
      journal: false,
      label: 'rootfs',
    });
  }
}

/** Pad `path` with zeros to `size` (a whole number of verity blocks); refuse content larger than `size`. */
async function padTo(path: string, content: number, size: number | undefined): Promise<number> {
  const target = size ?? alignUp(content, BLOCK);
  if (content > target) {
    throw new ImageError(
      'ERR_IMAGE_TOO_SMALL',
      `the filesystem takes ${content} bytes, more than --size ${target}; leave --size out to size it to its content`,
    );
  }
  const fh = await open(path, 'r+');
  try {
    await fh.truncate(target);
  } finally {
    await fh.close();
  }
  return target;
}

export function checkSize(sizeBytes: number | undefined): void {
  if (
    sizeBytes !== undefined &&
    (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % BLOCK !== 0)
  ) {
    throw new ImageError(
      'ERR_IMAGE_USAGE',
      `--size ${sizeBytes}: expected a positive multiple of ${BLOCK} bytes`,
    );
  }
}

export async function buildRootfs(o: RootfsOptions): Promise<RootfsSummary> {
  const started = performance.now();
  const epoch = sourceDateEpoch(o.env);
  const init = o.init ?? '/sbin/init';
  checkSize(o.sizeBytes);
  await requireTools([...TOOLS[o.fs], 'tar']);
  return writeOutput(o.out, async (partial, scratch) => {
    const tree = await prepareTree(o.from, scratch, init);
    await makeFs(o.fs, tree.dir, partial, epoch, o.sizeBytes);
    const content = (await stat(partial)).size;
    const sizeBytes = await padTo(partial, content, o.sizeBytes);
    return {
      out: o.out,
      fs: o.fs,
      sizeBytes,
      contentBytes: content,
      sourceDateEpoch: epoch,
      init,
      addedMountPoints: tree.addedMountPoints,
      durationMs: Math.round(performance.now() - started),
    };
  });
}
