// Which filesystem an image holds and how many bytes it says it needs: one superblock reader per
// format (ext4.ts, erofs.ts, squashfs.ts). `abota release build` refuses an image shorter than
// its own filesystem — a truncated copy that is still block-aligned would otherwise be signed.
import { open } from 'node:fs/promises';
import { EROFS_SUPERBLOCK_BYTES, EROFS_SUPERBLOCK_OFFSET, erofsSizeBytes } from './erofs.js';
import { EXT4_SUPERBLOCK_BYTES, EXT4_SUPERBLOCK_OFFSET, ext4SizeBytes } from './ext4.js';
import { SQUASHFS_SUPERBLOCK_BYTES, SQUASHFS_SUPERBLOCK_OFFSET, squashfsSizeBytes } from './squashfs.js';

export type FilesystemKind = 'ext4' | 'erofs' | 'squashfs';

export interface FilesystemSize {
  kind: FilesystemKind;
  sizeBytes: bigint;
}

const READERS: readonly {
  kind: FilesystemKind;
  offset: number;
  bytes: number;
  size: (superblock: Buffer) => bigint | undefined;
}[] = [
  {
    kind: 'squashfs',
    offset: SQUASHFS_SUPERBLOCK_OFFSET,
    bytes: SQUASHFS_SUPERBLOCK_BYTES,
    size: squashfsSizeBytes,
  },
  { kind: 'erofs', offset: EROFS_SUPERBLOCK_OFFSET, bytes: EROFS_SUPERBLOCK_BYTES, size: erofsSizeBytes },
  { kind: 'ext4', offset: EXT4_SUPERBLOCK_OFFSET, bytes: EXT4_SUPERBLOCK_BYTES, size: ext4SizeBytes },
];

/** The filesystem in the image at `path` and its own size, or undefined for any other content. */
export async function readFilesystemSize(path: string): Promise<FilesystemSize | undefined> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(4096);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    for (const reader of READERS) {
      if (reader.offset + reader.bytes > bytesRead) continue;
      const sizeBytes = reader.size(head.subarray(reader.offset, reader.offset + reader.bytes));
      if (sizeBytes !== undefined) return { kind: reader.kind, sizeBytes };
    }
    return undefined;
  } finally {
    await handle.close();
  }
}
