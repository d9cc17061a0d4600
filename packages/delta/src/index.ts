// @abota/delta: the abota delta payload (FORMAT.md), `diff` to make one, `applyDelta` to apply
// one while it streams in, verifying every target block before it is written.
export { type ApplyDeltaOptions, type ApplyDeltaResult, applyDelta, type DeltaCheckpoint } from './apply.js';
export { type DiffOptions, type DiffProgress, type DiffResult, diff } from './diff.js';
export { type DeltaApplyProgress, DeltaError, type DeltaErrorCode } from './errors.js';
export {
  DELTA_MAGIC,
  DELTA_VERSION,
  type DeltaHeader,
  type DeltaImageIdentity,
  type DeltaOp,
  decodeHeader,
  decodeMetadata,
  HEADER_SIZE_BYTES,
  LIMITS,
  OpKind,
  opDataOffset,
} from './format.js';
export {
  type BlockVerifierLike,
  type FileSourceReader,
  type FileTargetWriter,
  openSourceFile,
  openTargetFile,
  readFileChunks,
  type SourceReader,
  type TargetWriter,
} from './io.js';
