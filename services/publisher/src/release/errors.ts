// Failures of `abota release build|verify|inspect|add-delta` that are not the manifest's or verity's own
// (those keep their ManifestError / VerityError codes). Each code names one situation a person
// can act on; the CLI prints `code: message` and exits with `exitCode`.

export type ReleaseErrorCode =
  // Bad command-line values: not semver, bad duration, empty product, unknown codec...
  | 'ERR_RELEASE_USAGE'
  // --expires resolves to an instant that is not in the future.
  | 'ERR_RELEASE_EXPIRY_IN_PAST'
  // An image file cannot be opened or is not a regular file.
  | 'ERR_RELEASE_IMAGE_UNREADABLE'
  // An image is empty or its size is not a multiple of the 4096-byte verity data block.
  | 'ERR_RELEASE_IMAGE_NOT_ALIGNED'
  // An image is shorter than the ext4/erofs/squashfs filesystem its superblock describes.
  | 'ERR_RELEASE_IMAGE_TRUNCATED'
  // --out names something that already exists (a release is never overwritten or merged).
  | 'ERR_RELEASE_OUT_EXISTS'
  // A release directory file (manifest.jws, manifest.json, root.json) or the --root file is missing, too large or not JSON.
  | 'ERR_RELEASE_DIR_INVALID'
  // manifest.json is not byte-for-byte the payload that manifest.jws signs.
  | 'ERR_RELEASE_MANIFEST_MISMATCH'
  // A blob named by the manifest is not under blobs/sha256/.
  | 'ERR_RELEASE_BLOB_MISSING'
  // A blob's size is not the manifest's sizeBytes.
  | 'ERR_RELEASE_BLOB_SIZE_MISMATCH'
  // A blob's sha256 is not the manifest's digest.
  | 'ERR_RELEASE_BLOB_DIGEST_MISMATCH'
  // The hash tree's superblock disagrees with the manifest's verity parameters.
  | 'ERR_RELEASE_VERITY_PARAMS_MISMATCH'
  // The artifact does not decompress, or decompresses to the wrong number of bytes.
  | 'ERR_RELEASE_ARTIFACT_CORRUPT'
  // The artifact's codec is one this tool cannot decode.
  | 'ERR_RELEASE_CODEC_UNSUPPORTED'
  // The build was interrupted (SIGINT/SIGTERM); nothing was published.
  | 'ERR_RELEASE_INTERRUPTED'
  // deltas.json is not JSON or not its schema (CONTRACTS.md "Deltas end to end").
  | 'ERR_RELEASE_DELTAS_INVALID'
  // A delta listed in deltas.json is not a well-formed payload, or its header disagrees with
  // deltas.json or with the signed manifest (source/target root hash, sizes, block size).
  | 'ERR_RELEASE_DELTA_INVALID'
  // A previous release given as a delta source fails verification (trust chain, signatures,
  // manifest.json, blobs, or a block of its image against its verity tree).
  | 'ERR_RELEASE_DELTA_SOURCE_INVALID'
  // A previous release is of another product.
  | 'ERR_RELEASE_DELTA_SOURCE_PRODUCT_MISMATCH'
  // A previous release's version is not lower than the release's version.
  | 'ERR_RELEASE_DELTA_SOURCE_NOT_OLDER'
  // Two sources (or a source and deltas.json) claim the same version with different images.
  | 'ERR_RELEASE_DELTA_SOURCE_CONFLICT';

/** Exit statuses: 2 = fix the command line, 3 = the release (or its inputs) is bad, 1 = other. */
const EXIT_CODES: Partial<Record<ReleaseErrorCode, number>> = {
  ERR_RELEASE_USAGE: 2,
  ERR_RELEASE_EXPIRY_IN_PAST: 2,
  ERR_RELEASE_OUT_EXISTS: 2,
  ERR_RELEASE_IMAGE_TRUNCATED: 3,
  ERR_RELEASE_MANIFEST_MISMATCH: 3,
  ERR_RELEASE_BLOB_MISSING: 3,
  ERR_RELEASE_BLOB_SIZE_MISMATCH: 3,
  ERR_RELEASE_BLOB_DIGEST_MISMATCH: 3,
  ERR_RELEASE_VERITY_PARAMS_MISMATCH: 3,
  ERR_RELEASE_ARTIFACT_CORRUPT: 3,
  ERR_RELEASE_DELTAS_INVALID: 3,
  ERR_RELEASE_DELTA_INVALID: 3,
  ERR_RELEASE_DELTA_SOURCE_INVALID: 3,
  ERR_RELEASE_DELTA_SOURCE_PRODUCT_MISMATCH: 2,
  ERR_RELEASE_DELTA_SOURCE_NOT_OLDER: 2,
  ERR_RELEASE_DELTA_SOURCE_CONFLICT: 2,
  // 128 + SIGINT, as shells report an interrupted command.
  ERR_RELEASE_INTERRUPTED: 130,
};

export class ReleaseError extends Error {
  override readonly name = 'ReleaseError';
  readonly code: ReleaseErrorCode;
  readonly exitCode: number;

  constructor(code: ReleaseErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.exitCode = EXIT_CODES[code] ?? 1;
  }
}
