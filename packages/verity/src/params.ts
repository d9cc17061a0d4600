// dm-verity parameters (docs/formats.md §1.1): their defaults, their limits and how text from a
// command line or a superblock becomes a checked `VerityParams`.
import { randomBytes, randomUUID } from 'node:crypto';
import { VerityError } from './errors.js';

export interface VerityParams {
  hashType: 0 | 1;
  /** Lower-case node:crypto name. */
  algorithm: string;
  dataBlockSize: number;
  hashBlockSize: number;
  dataBlocks: number;
  /** 0..256 bytes. */
  salt: Uint8Array;
  /** Byte offset of the superblock (or of the tree without one) on the hash device. */
  hashOffset: number;
  superblock: boolean;
  /** Only stored with a superblock. */
  uuid?: string;
}

/** Digest sizes of the algorithms we accept (all hashes veritysetup users pick in practice). */
export const DIGEST_SIZES: Readonly<Record<string, number>> = {
  sha1: 20,
  sha224: 28,
  sha256: 32,
  sha384: 48,
  sha512: 64,
};

export const SUPERBLOCK_SIZE = 512;
export const MIN_BLOCK_SIZE = 512;
/** veritysetup accepts up to 512 KiB for format (the kernel only activates ≤ page size). */
export const MAX_BLOCK_SIZE = 512 * 1024;
export const MAX_SALT_SIZE = 256;
export const DEFAULT_SALT_SIZE = 32;

export function digestSizeOf(algorithm: string): number {
  const size = DIGEST_SIZES[algorithm.toLowerCase()];
  if (size === undefined) {
    throw new VerityError(
      'ERR_VERITY_UNKNOWN_ALGORITHM',
      `unknown hash algorithm "${algorithm}": expected one of ${Object.keys(DIGEST_SIZES).join(', ')}`,
    );
  }
  return size;
}

export function checkBlockSize(what: string, size: number): void {
  if (
    !Number.isInteger(size) ||
    size < MIN_BLOCK_SIZE ||
    size > MAX_BLOCK_SIZE ||
    (size & (size - 1)) !== 0
  ) {
    throw new VerityError(
      'ERR_VERITY_INVALID_BLOCK_SIZE',
      `${what} ${size} is not supported: expected a power of two from ${MIN_BLOCK_SIZE} to ${MAX_BLOCK_SIZE}`,
    );
  }
}

/** Salt from hex text; `-` or the empty string mean no salt (veritysetup `--salt=-`). */
export function parseSaltHex(text: string): Uint8Array {
  if (text === '-' || text === '') return new Uint8Array(0);
  if (!/^[0-9a-fA-F]*$/.test(text) || text.length % 2 !== 0) {
    throw new VerityError(
      'ERR_VERITY_INVALID_SALT',
      `salt "${text.length > 40 ? `${text.slice(0, 40)}…` : text}" is not an even number of hex digits (or "-" for none)`,
    );
  }
  const salt = Buffer.from(text, 'hex');
  checkSalt(salt);
  return new Uint8Array(salt);
}

export function checkSalt(salt: Uint8Array): void {
  if (salt.length > MAX_SALT_SIZE) {
    throw new VerityError(
      'ERR_VERITY_INVALID_SALT',
      `salt is ${salt.length} bytes: at most ${MAX_SALT_SIZE} bytes are allowed`,
    );
  }
}

export function saltToHex(salt: Uint8Array): string {
  return salt.length === 0 ? '-' : Buffer.from(salt).toString('hex');
}

const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** The 16 raw bytes of a UUID in text order (docs/formats.md §1.2, not the mixed-endian GUID order). */
export function uuidToBytes(uuid: string): Uint8Array {
  if (!UUID_RE.test(uuid)) {
    throw new VerityError(
      'ERR_VERITY_INVALID_UUID',
      `UUID "${uuid}" is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (hex digits)`,
    );
  }
  return new Uint8Array(Buffer.from(uuid.replaceAll('-', ''), 'hex'));
}

export function uuidFromBytes(bytes: Uint8Array): string {
  const h = Buffer.from(bytes).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

function checkCount(what: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new VerityError('ERR_VERITY_INVALID_PARAMS', `${what} must be an integer ≥ ${min}, got ${value}`);
  }
}

/**
 * Complete and check parameters the way `veritysetup format` does: defaults from docs/formats.md
 * §1.1 (random 32-byte salt, random v4 UUID), data blocks = floor(data size / block size) unless
 * given. `dataSizeBytes` is the size of the data file or device.
 */
export function resolveParams(partial: Partial<VerityParams>, dataSizeBytes: number): VerityParams {
  const hashType = partial.hashType ?? 1;
  if (hashType !== 0 && hashType !== 1) {
    throw new VerityError('ERR_VERITY_INVALID_PARAMS', `hash type (format) must be 0 or 1, got ${hashType}`);
  }
  const algorithm = (partial.algorithm ?? 'sha256').toLowerCase();
  digestSizeOf(algorithm);
  const dataBlockSize = partial.dataBlockSize ?? 4096;
  const hashBlockSize = partial.hashBlockSize ?? 4096;
  checkBlockSize('data block size', dataBlockSize);
  checkBlockSize('hash block size', hashBlockSize);
  const salt = partial.salt ?? new Uint8Array(randomBytes(DEFAULT_SALT_SIZE));
  checkSalt(salt);
  const hashOffset = partial.hashOffset ?? 0;
  checkCount('hash offset', hashOffset, 0);
  if (hashOffset % 512 !== 0) {
    throw new VerityError(
      'ERR_VERITY_INVALID_HASH_OFFSET',
      `hash offset ${hashOffset} is not a multiple of 512 bytes (veritysetup: "Unsupported VERITY hash offset")`,
    );
  }
  const superblock = partial.superblock ?? true;
  const available = Math.floor(dataSizeBytes / dataBlockSize);
  let dataBlocks = partial.dataBlocks;
  if (dataBlocks === undefined) {
    if (available < 1) {
      throw new VerityError(
        'ERR_VERITY_DATA_TOO_SMALL',
        `the data is ${dataSizeBytes} bytes, smaller than one data block of ${dataBlockSize} bytes`,
      );
    }
    dataBlocks = available;
  }
  checkCount('data blocks', dataBlocks, 1);
  if (dataBlocks > available) {
    throw new VerityError(
      'ERR_VERITY_DATA_TOO_SHORT',
      `${dataBlocks} data blocks of ${dataBlockSize} bytes need ${dataBlocks * dataBlockSize} bytes, but the data is only ${dataSizeBytes} bytes`,
    );
  }
  if (!Number.isSafeInteger(dataBlocks * dataBlockSize)) {
    throw new VerityError('ERR_VERITY_INVALID_PARAMS', `data area of ${dataBlocks} blocks is too large`);
  }
  const params: VerityParams = {
    hashType,
    algorithm,
    dataBlockSize,
    hashBlockSize,
    dataBlocks,
    salt,
    hashOffset,
    superblock,
  };
  if (superblock) {
    const uuid = partial.uuid ?? randomUUID();
    uuidToBytes(uuid);
    params.uuid = uuid.toLowerCase();
  }
  return params;
}
