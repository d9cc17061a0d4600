// The 512-byte dm-verity superblock (docs/formats.md §1.2): written at `hashOffset` on the hash
// device; carries the parameters but no checksum and no root hash.
import { VerityError } from './errors.js';
import type { VerityParams } from './params.js';
import {
  checkBlockSize,
  digestSizeOf,
  MAX_SALT_SIZE,
  SUPERBLOCK_SIZE,
  uuidFromBytes,
  uuidToBytes,
} from './params.js';

const MAGIC = Buffer.from('verity\0\0', 'latin1');
const VERSION = 1;

/** What a superblock says; `hashOffset` is where it was read, not stored in it. */
export type SuperblockFields = Omit<VerityParams, 'hashOffset' | 'superblock' | 'uuid'> & { uuid: string };

export function serializeSuperblock(params: VerityParams): Uint8Array {
  const sb = Buffer.alloc(SUPERBLOCK_SIZE);
  MAGIC.copy(sb, 0);
  sb.writeUInt32LE(VERSION, 8);
  sb.writeUInt32LE(params.hashType, 12);
  sb.set(uuidToBytes(params.uuid ?? '00000000-0000-0000-0000-000000000000'), 16);
  const alg = Buffer.from(params.algorithm.toLowerCase(), 'latin1');
  if (alg.length > 31) {
    throw new VerityError('ERR_VERITY_UNKNOWN_ALGORITHM', `algorithm name "${params.algorithm}" is too long`);
  }
  alg.copy(sb, 32);
  sb.writeUInt32LE(params.dataBlockSize, 64);
  sb.writeUInt32LE(params.hashBlockSize, 68);
  sb.writeBigUInt64LE(BigInt(params.dataBlocks), 72);
  sb.writeUInt16LE(params.salt.length, 80);
  sb.set(params.salt, 88);
  return new Uint8Array(sb.buffer, sb.byteOffset, SUPERBLOCK_SIZE);
}

/**
 * Parse a superblock with cryptsetup's `VERITY_read_sb` rules: magic, version 1, hash type ≤ 1,
 * valid block sizes, a known algorithm (any case), salt ≤ 256 bytes. Padding is not checked.
 */
export function parseSuperblock(bytes: Uint8Array, where = 'hash device'): SuperblockFields {
  if (bytes.length < SUPERBLOCK_SIZE) {
    throw new VerityError(
      'ERR_VERITY_BAD_SUPERBLOCK',
      `${where}: expected a ${SUPERBLOCK_SIZE}-byte VERITY superblock, found only ${bytes.length} bytes`,
    );
  }
  const sb = Buffer.from(bytes.buffer, bytes.byteOffset, SUPERBLOCK_SIZE);
  if (!sb.subarray(0, 8).equals(MAGIC)) {
    throw new VerityError(
      'ERR_VERITY_BAD_SUPERBLOCK',
      `${where} is not a valid VERITY device: expected signature "verity\\0\\0", found ${sb.subarray(0, 8).toString('hex')}`,
    );
  }
  const version = sb.readUInt32LE(8);
  if (version !== VERSION) {
    throw new VerityError(
      'ERR_VERITY_UNSUPPORTED_VERSION',
      `${where}: unsupported VERITY version ${version}`,
    );
  }
  const hashType = sb.readUInt32LE(12);
  if (hashType > 1) {
    throw new VerityError('ERR_VERITY_BAD_SUPERBLOCK', `${where}: unsupported VERITY hash type ${hashType}`);
  }
  const algEnd = sb.indexOf(0, 32);
  const algorithm = sb
    .subarray(32, algEnd === -1 || algEnd > 64 ? 64 : algEnd)
    .toString('latin1')
    .toLowerCase();
  digestSizeOf(algorithm);
  const dataBlockSize = sb.readUInt32LE(64);
  const hashBlockSize = sb.readUInt32LE(68);
  checkBlockSize('data block size in superblock', dataBlockSize);
  checkBlockSize('hash block size in superblock', hashBlockSize);
  const dataBlocks = sb.readBigUInt64LE(72);
  if (dataBlocks < 1n || dataBlocks > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new VerityError('ERR_VERITY_BAD_SUPERBLOCK', `${where}: data block count ${dataBlocks} is invalid`);
  }
  const saltSize = sb.readUInt16LE(80);
  if (saltSize > MAX_SALT_SIZE) {
    throw new VerityError(
      'ERR_VERITY_BAD_SUPERBLOCK',
      `${where}: salt size ${saltSize} exceeds the maximum of ${MAX_SALT_SIZE}`,
    );
  }
  return {
    hashType: hashType as 0 | 1,
    algorithm,
    dataBlockSize,
    hashBlockSize,
    dataBlocks: Number(dataBlocks),
    salt: new Uint8Array(sb.subarray(88, 88 + saltSize)),
    uuid: uuidFromBytes(sb.subarray(16, 32)),
  };
}
