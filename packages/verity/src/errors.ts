// The one error class of @abota/verity: a stable `code`, a message that says what was expected,
// what was found and where, and the exit status veritysetup uses for the same failure
// (docs/formats.md §1.6: 1 = bad header / root hash / short device, 2 = data or tree corrupted).

export type VerityErrorCode =
  | 'ERR_VERITY_INVALID_PARAMS'
  | 'ERR_VERITY_UNKNOWN_ALGORITHM'
  | 'ERR_VERITY_INVALID_BLOCK_SIZE'
  | 'ERR_VERITY_INVALID_SALT'
  | 'ERR_VERITY_INVALID_UUID'
  | 'ERR_VERITY_INVALID_HASH_OFFSET'
  | 'ERR_VERITY_INVALID_ROOT_HASH'
  | 'ERR_VERITY_OVERLAP'
  | 'ERR_VERITY_FILE_NOT_FOUND'
  | 'ERR_VERITY_DATA_TOO_SMALL'
  | 'ERR_VERITY_DATA_TOO_SHORT'
  | 'ERR_VERITY_HASH_TOO_SHORT'
  | 'ERR_VERITY_BAD_SUPERBLOCK'
  | 'ERR_VERITY_UNSUPPORTED_VERSION'
  | 'ERR_VERITY_ROOT_HASH_MISMATCH'
  | 'ERR_VERITY_DATA_CORRUPT'
  | 'ERR_VERITY_TREE_CORRUPT'
  | 'ERR_VERITY_PADDING_NOT_ZERO'
  | 'ERR_VERITY_IO';

/** Exit statuses as `veritysetup` returns them for the same situation. */
const EXIT_CODES: Partial<Record<VerityErrorCode, number>> = {
  ERR_VERITY_DATA_CORRUPT: 2,
  ERR_VERITY_TREE_CORRUPT: 2,
  ERR_VERITY_PADDING_NOT_ZERO: 2,
  // veritysetup: "Device … does not exist or access denied." exits 4 (-ENODEV).
  ERR_VERITY_FILE_NOT_FOUND: 4,
};

export interface VerityErrorDetails {
  /** Byte position as veritysetup reports it ("Verification failed at position N"). */
  position?: number;
  /** Data block index (level 0 mismatches) or block index within `level`. */
  blockIndex?: number;
  /** Tree level (0 = leaf level) where a tree mismatch was found. */
  level?: number;
}

export class VerityError extends Error {
  readonly code: VerityErrorCode;
  readonly exitCode: number;
  readonly position: number | undefined;
  readonly blockIndex: number | undefined;
  readonly level: number | undefined;

  constructor(code: VerityErrorCode, message: string, details: VerityErrorDetails = {}) {
    super(message);
    this.name = 'VerityError';
    this.code = code;
    this.exitCode = EXIT_CODES[code] ?? 1;
    this.position = details.position;
    this.blockIndex = details.blockIndex;
    this.level = details.level;
  }
}
