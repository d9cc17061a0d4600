// Apply with the real @abota/verity BlockVerifier (what the installer uses): a hash tree built
// by formatVerity over the target, the root hash as the trusted anchor.
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTempDir } from '@abota/testkit';
import { BlockVerifier, formatVerity } from '@abota/verity';
import { describe, expect, it } from 'vitest';
import { DeltaError, decodeMetadata, OpKind } from '../src/index.js';
import { encodeMetadata } from '../src/format.js';
import { applyBytes, makeDelta } from './support.js';

async function verifierFor(
  dir: string,
  target: Uint8Array,
): Promise<{ verifier: BlockVerifier; rootHash: string }> {
  const dataPath = join(dir, 'verity-data.img');
  const hashPath = join(dir, 'verity.hash');
  await writeFile(dataPath, target);
  const { rootHash, params } = await formatVerity({ dataPath, hashPath, params: {} });
  return { verifier: BlockVerifier.fromHashFile(await readFile(hashPath), params, rootHash), rootHash };
}

describe('applyDelta with the dm-verity BlockVerifier', () => {
  it('writes a target whose every block matches the verity tree', async () => {
    await withTempDir(async (dir) => {
      const source = randomBytes(300 * 4096);
      const target = Buffer.concat([
        source.subarray(0, 50_000),
        randomBytes(7000),
        source.subarray(50_000),
      ]).subarray(0, 320 * 4096);
      const padded = Buffer.alloc(320 * 4096);
      target.copy(padded);
      const { verifier, rootHash } = await verifierFor(dir, padded);
      const { delta, sourcePath } = await makeDelta(dir, source, padded);
      const { output, result } = await applyBytes(dir, sourcePath, delta, verifier, padded.length, {
        expectedTargetRootHash: rootHash,
      });
      expect(result.blocksWritten).toBe(320);
      expect(Buffer.from(output).equals(padded)).toBe(true);
    });
  });

  it('refuses a forged op (digests recomputed) with ERR_DELTA_TARGET_VERIFICATION from the tree', async () => {
    await withTempDir(async (dir) => {
      const source = randomBytes(64 * 4096);
      const target = Buffer.from(source);
      randomBytes(4096).copy(target, 10 * 4096);
      const { verifier } = await verifierFor(dir, target);
      const { delta, sourcePath } = await makeDelta(dir, source, target);
      const { header, ops, metadataSizeBytes } = decodeMetadata(delta);
      // Turn the leading SOURCE_COPY into zeros: a well-formed delta that lies about the content.
      const first = ops[0]!;
      expect(first.kind).toBe(OpKind.SourceCopy);
      first.kind = OpKind.Zero;
      first.sourceStartBlock = 0;
      const forged = Buffer.concat([encodeMetadata(header, ops), delta.subarray(metadataSizeBytes)]);
      const err = await applyBytes(dir, sourcePath, forged, verifier, target.length).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DeltaError);
      expect((err as DeltaError).code).toBe('ERR_DELTA_TARGET_VERIFICATION');
      expect((err as DeltaError).progress).toEqual({ opsApplied: 0, blocksWritten: 0 });
    });
  });
});
