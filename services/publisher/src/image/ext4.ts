// Reproducible ext4 images from a directory without root or loop devices: `mkfs.ext4 -d` with
// a fixed UUID and hash seed and E2FSPROGS_FAKE_TIME for the superblock, then `debugfs -w`
// sets every inode's times to SOURCE_DATE_EPOCH and its owner to root (mke2fs 1.47.0 copies
// them from the source tree and has no option for either).
import { open, rm, stat } from 'node:fs/promises';
import { ImageError } from './errors.js';
import { alignUp, BLOCK, stableUuid, walkTree } from './reproducible.js';
import { runTool } from './tools.js';

export interface Ext4Options {
  /** Source tree (may be empty). */
  dir: string;
  out: string;
  /** Image size; undefined = sized to the content. */
  sizeBytes?: number | undefined;
  epoch: number;
  /** Name the UUID and hash seed derive from. */
  uuidName: string;
  label?: string;
  /** Read-write partitions (Data, Log) get a journal and mke2fs's inode ratio; read-only images neither. */
  journal: boolean;
}

/** Generous first guess of the size ext4 needs for `entries` (grown on ENOSPC). */
function estimateBytes(entries: Awaited<ReturnType<typeof walkTree>>, journal: boolean): number {
  let bytes = 0;
  for (const e of entries) bytes += e.isDirectory ? BLOCK : alignUp(e.sizeBytes, BLOCK);
  const inodes = (entries.length + 64) * 256;
  return alignUp(Math.ceil(bytes * 1.1) + inodes + (journal ? 4 << 20 : 0) + (1 << 20), 1 << 20);
}

function debugfsScript(entries: Awaited<ReturnType<typeof walkTree>>, epoch: number): string {
  const lines: string[] = [];
  for (const path of ['/', '/lost+found', ...entries.map((e) => e.path)]) {
    if (/["\n\\]/.test(path)) {
      throw new ImageError(
        'ERR_IMAGE_USAGE',
        `cannot image ${JSON.stringify(path)} as ext4: quote, backslash or newline in a file name`,
      );
    }
    for (const f of ['atime', 'mtime', 'ctime', 'crtime']) lines.push(`sif "${path}" ${f} ${epoch}`);
    lines.push(`sif "${path}" uid 0`, `sif "${path}" gid 0`);
  }
  return `${lines.join('\n')}\n`;
}

async function mkfs(o: Ext4Options, sizeBytes: number, inodes: number): Promise<void> {
  await rm(o.out, { force: true });
  const fh = await open(o.out, 'w');
  await fh.truncate(sizeBytes);
  await fh.close();
  const uuid = stableUuid(`${o.uuidName}:${o.epoch}`);
  const args = [
    '-q',
    '-F',
    '-b',
    String(BLOCK),
    ...(o.journal ? [] : ['-N', String(inodes)]),
    '-m',
    '0',
    '-U',
    uuid,
    '-E',
    `hash_seed=${stableUuid(`${uuid}:hash_seed`)},root_owner=0:0,lazy_itable_init=0,nodiscard`,
    '-O',
    o.journal ? '^orphan_file' : '^has_journal,^orphan_file',
    ...(o.label === undefined ? [] : ['-L', o.label]),
    '-d',
    o.dir,
    o.out,
  ];
  await runTool('mkfs.ext4', args, { env: { E2FSPROGS_FAKE_TIME: String(o.epoch) } });
}

/** Build the image; returns its size. Too small for an explicit size → ERR_IMAGE_TOO_SMALL. */
export async function makeExt4(o: Ext4Options): Promise<number> {
  const entries = await walkTree(o.dir);
  const inodes = entries.length + 16;
  let size = o.sizeBytes ?? estimateBytes(entries, o.journal);
  for (let attempt = 0; ; attempt++) {
    try {
      await mkfs(o, size, inodes);
      break;
    } catch (err) {
      const full =
        err instanceof ImageError &&
        /space|allocate|too small|No free|inode_ratio|inode count|1 blocks/i.test(err.message);
      if (!full) throw err;
      if (o.sizeBytes !== undefined || attempt >= 6) {
        throw new ImageError(
          'ERR_IMAGE_TOO_SMALL',
          `the tree ${o.dir} does not fit in an ext4 image of ${size} bytes`,
          {
            cause: err,
          },
        );
      }
      size = alignUp(Math.ceil(size * 1.5), 1 << 20);
    }
  }
  await runTool('debugfs', ['-w', '-f', '-', o.out], {
    input: debugfsScript(entries, o.epoch),
    env: { E2FSPROGS_FAKE_TIME: String(o.epoch) },
  });
  return (await stat(o.out)).size;
}
