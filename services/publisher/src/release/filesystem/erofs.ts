// The size an EROFS filesystem claims for itself, from its superblock (struct erofs_super_block
// in the kernel's fs/erofs/erofs_fs.h and erofs-utils include/erofs_fs.h): EROFS_SUPER_OFFSET =
// 1024 bytes into the device, little-endian; magic 0xE0F5E1E2 at 0x00, blkszbits (u8) at 0x0C,
// the 16-bit field at 0x0E (root nid, or the high bits of the block count with INCOMPAT_48BIT),
// blocks (low 32 bits of the block count) at 0x24, feature_incompat at 0x50.

export const EROFS_SUPERBLOCK_OFFSET = 1024;
export const EROFS_SUPERBLOCK_BYTES = 0x54;
const EROFS_MAGIC = 0xe0f5e1e2;
const INCOMPAT_48BIT = 0x80;

/** The filesystem size in bytes, or undefined when `superblock` (at offset 1024) is not EROFS. */
export function erofsSizeBytes(superblock: Buffer): bigint | undefined {
  if (superblock.length < EROFS_SUPERBLOCK_BYTES || superblock.readUInt32LE(0) !== EROFS_MAGIC)
    return undefined;
  const blockSizeBits = superblock.readUInt8(0x0c);
  // EROFS blocks are 512 B .. 64 KiB.
  if (blockSizeBits < 9 || blockSizeBits > 16) return undefined;
  const is48bit = (superblock.readUInt32LE(0x50) & INCOMPAT_48BIT) !== 0;
  const high = is48bit ? BigInt(superblock.readUInt16LE(0x0e)) : 0n;
  const blocks = (high << 32n) | BigInt(superblock.readUInt32LE(0x24));
  return blocks << BigInt(blockSizeBits);
}
