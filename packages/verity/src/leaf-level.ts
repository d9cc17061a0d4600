// The leaf level of a verified hash tree, as BlockVerifier reads it: in memory (block-verifier.ts)
// or from the hash file, checked on demand (file-leaf-level.ts).
import type { VerityError } from './errors.js';

/** Where a verified tree's leaf level lives. */
export interface LeafLevel {
  /** Leaf hash block `blockInLevel` as verified, or the error saying why it cannot be trusted now. */
  block(blockInLevel: number): Buffer | VerityError;
  /** The whole hash file the verifier was made from, from byte 0, in pieces (see BlockVerifier.hashFile). */
  hashFile(): AsyncGenerator<Uint8Array>;
}
