// The size an ext2/3/4 filesystem claims for itself, from its superblock (Linux
// Documentation/filesystems/ext4/super.rst, "The Super Block"): 1024 bytes into the device,
// little-endian; s_blocks_count_lo at 0x4, s_log_block_size at 0x18, s_magic 0xEF53 at 0x38,
// s_feature_incompat at 0x60 (INCOMPAT_64BIT = 0x80), s_blocks_count_hi at 0x150.

/** Byte offset of the superblock from the start of the device. */
export const EXT4_SUPERBLOCK_OFFSET = 1024;
/** Bytes of the superblock this module reads (up to and including s_blocks_count_hi). */
export const EXT4_SUPERBLOCK_BYTES = 0x154;
const EXT4_MAGIC = 0xef53;
const INCOMPAT_64BIT = 0x80;

/** The filesystem size in bytes, or undefined when `superblock` (at offset 1024) is not ext2/3/4. */
export function ext4SizeBytes(superblock: Buffer): bigint | undefined {
  if (superblock.length < EXT4_SUPERBLOCK_BYTES || superblock.readUInt16LE(0x38) !== EXT4_MAGIC)
    return undefined;
  const logBlockSize = superblock.readUInt32LE(0x18);
  // Block sizes are 1 KiB .. 64 KiB (s_log_block_size 0..6); anything else is not a sane superblock.
  if (logBlockSize > 6) return undefined;
  const blockSize = 1024n << BigInt(logBlockSize);
  const is64bit = (superblock.readUInt32LE(0x60) & INCOMPAT_64BIT) !== 0;
  const high = is64bit ? BigInt(superblock.readUInt32LE(0x150)) : 0n;
  const blocks = (high << 32n) | BigInt(superblock.readUInt32LE(0x4));
  return blocks * blockSize;
}
