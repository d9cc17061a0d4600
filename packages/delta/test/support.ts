// Shared test support: write image pairs to files, diff them, apply with a real per-block
// verifier built from the expected target (the same guarantee dm-verity's tree gives).
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type ApplyDeltaOptions,
  type ApplyDeltaResult,
  applyDelta,
  type BlockVerifierLike,
  diff,
  type DiffResult,
  openSourceFile,
  openTargetFile,
} from '../src/index.js';

/** Verifies each block against SHA-256 digests of the expected target, like a hash tree's leaves. */
export function digestVerifier(expectedTarget: Uint8Array, blockSize: number): BlockVerifierLike {
  const digests: Buffer[] = [];
  for (let p = 0; p < expectedTarget.length; p += blockSize) {
    digests.push(
      createHash('sha256')
        .update(expectedTarget.subarray(p, p + blockSize))
        .digest(),
    );
  }
  return {
    assertBlock(blockIndex, data) {
      const want = digests[blockIndex];
      if (
        want === undefined ||
        data.length !== blockSize ||
        !createHash('sha256').update(data).digest().equals(want)
      ) {
        throw new Error(`block ${blockIndex} does not match the expected target`);
      }
    },
  };
}

export async function makeDelta(
  dir: string,
  source: Uint8Array,
  target: Uint8Array,
  opts: { blockSize?: number; maxOpTargetBytes?: number } = {},
): Promise<{ deltaPath: string; sourcePath: string; delta: Uint8Array; result: DiffResult }> {
  const sourcePath = join(dir, 'source.img');
  const targetPath = join(dir, 'target.img');
  const deltaPath = join(dir, 'delta.bin');
  await writeFile(sourcePath, source);
  await writeFile(targetPath, target);
  const result = await diff({
    sourcePath,
    targetPath,
    outPath: deltaPath,
    blockSize: opts.blockSize ?? 4096,
    brotliQuality: 5,
    ...(opts.maxOpTargetBytes === undefined ? {} : { maxOpTargetBytes: opts.maxOpTargetBytes }),
  });
  return { deltaPath, sourcePath, delta: await readFile(deltaPath), result };
}

/** Yield `bytes` in chunks of varying size (exercises the streaming reader's reassembly). */
export async function* chunked(bytes: Uint8Array, chunkBytes = 777): AsyncIterable<Uint8Array> {
  for (let p = 0; p < bytes.length; p += chunkBytes)
    yield bytes.subarray(p, Math.min(bytes.length, p + chunkBytes));
}

/** Apply `delta` (bytes) to the source file into a fresh target file; return result + output. */
export async function applyBytes(
  dir: string,
  sourcePath: string,
  delta: Uint8Array,
  verifier: BlockVerifierLike,
  targetSizeBytes: number,
  extra: Partial<ApplyDeltaOptions> = {},
): Promise<{ result: ApplyDeltaResult; output: Uint8Array }> {
  const outPath = join(dir, 'out.img');
  const source = await openSourceFile(sourcePath);
  const target = await openTargetFile(outPath, targetSizeBytes);
  try {
    const result = await applyDelta({ payload: chunked(delta), source, target, verifier, ...extra });
    return { result, output: await readFile(outPath) };
  } finally {
    await source.close();
    await target.close();
  }
}
