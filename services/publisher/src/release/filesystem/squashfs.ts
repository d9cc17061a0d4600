// The size a SquashFS 4.0 filesystem claims for itself, from its superblock (struct
// squashfs_super_block in the kernel's fs/squashfs/squashfs_fs.h; Documentation/filesystems/
// squashfs.rst): at the start of the device, little-endian; s_magic 0x73717368 ("hsqs") at 0x00,
// s_major (u16) at 0x1C, bytes_used (u64) at 0x28 — the bytes the filesystem occupies, before
// the padding mksquashfs adds up to a 4 KiB multiple.

export const SQUASHFS_SUPERBLOCK_OFFSET = 0;
export const SQUASHFS_SUPERBLOCK_BYTES = 0x30;
const SQUASHFS_MAGIC = 0x73717368;

/** The filesystem size in bytes, or undefined when `superblock` (at offset 0) is not SquashFS 4. */
export function squashfsSizeBytes(superblock: Buffer): bigint | undefined {
  if (superblock.length < SQUASHFS_SUPERBLOCK_BYTES || superblock.readUInt32LE(0) !== SQUASHFS_MAGIC)
    return undefined;
  if (superblock.readUInt16LE(0x1c) !== 4) return undefined;
  return superblock.readBigUInt64LE(0x28);
}
