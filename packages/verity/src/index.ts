// @abota/verity: dm-verity hash trees byte-identical to `veritysetup format` (docs/formats.md §1),
// verification like `veritysetup verify`, the superblock, and a per-block verifier.
export type { FormatOptions, FormatResult } from './format.js';
export { formatVerity } from './format.js';
export type { VerifyOptions, VerifyResult } from './verify.js';
export { parseRootHash, readParamsFromHashFile, verifyVerity } from './verify.js';
export { BlockVerifier } from './block-verifier.js';
export type { SuperblockFields } from './superblock.js';
export { parseSuperblock, serializeSuperblock } from './superblock.js';
export type { GeometryParams, TreeGeometry } from './geometry.js';
export {
  hashesPerBlock,
  levelCount,
  levelSizes,
  slotSize,
  treeGeometry,
  treeStartBlock,
} from './geometry.js';
export type { VerityParams } from './params.js';
export {
  DIGEST_SIZES,
  digestSizeOf,
  MAX_BLOCK_SIZE,
  MAX_SALT_SIZE,
  MIN_BLOCK_SIZE,
  parseSaltHex,
  resolveParams,
  saltToHex,
  SUPERBLOCK_SIZE,
  uuidFromBytes,
  uuidToBytes,
} from './params.js';
export type { VerityErrorCode, VerityErrorDetails } from './errors.js';
export { VerityError } from './errors.js';
export { BlockHasher } from './hashing.js';
export { defaultThreads, maxUsefulThreads } from './parallel.js';
