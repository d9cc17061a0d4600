import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTempDir } from '@abota/testkit';
import { describe, expect, it } from 'vitest';
import { BlockVerifier } from './block-verifier.js';
import { VerityError } from './errors.js';
import { formatVerity } from './format.js';
import type { VerityParams } from './params.js';

async function build(
  blocks: number,
  params: Partial<VerityParams>,
): Promise<{ data: Buffer; hashFile: Buffer; params: VerityParams; rootHash: string }> {
  return withTempDir(async (dir) => {
    const dbs = params.dataBlockSize ?? 4096;
    const data = randomBytes(blocks * dbs);
    await writeFile(join(dir, 'data'), data);
    const r = await formatVerity({ dataPath: join(dir, 'data'), hashPath: join(dir, 'hash'), params });
    return { data, hashFile: await readFile(join(dir, 'hash')), params: r.params, rootHash: r.rootHash };
  });
}

function thrownCode(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof VerityError ? err.code : String(err);
  }
}

describe('BlockVerifier', () => {
  it.each([
    ['type 1 sha256 with superblock', 300, {}],
    [
      'type 0 sha1, 1 KiB blocks, no superblock at 8 KiB',
      700,
      {
        hashType: 0,
        algorithm: 'sha1',
        dataBlockSize: 1024,
        hashBlockSize: 1024,
        superblock: false,
        hashOffset: 8192,
      },
    ],
    [
      'sha512, 512-byte hash blocks, superblock at 4608',
      200,
      { algorithm: 'sha512', hashBlockSize: 512, hashOffset: 4608 },
    ],
    ['a single block (no tree: root = block digest)', 1, { salt: new Uint8Array(0) }],
  ] as const)('accepts every correct block and rejects a changed one: %s', async (_name, blocks, p) => {
    const { data, hashFile, params, rootHash } = await build(blocks, p as Partial<VerityParams>);
    const v = BlockVerifier.fromHashFile(hashFile, params, rootHash);
    const dbs = params.dataBlockSize;
    for (let i = 0; i < blocks; i++)
      expect(v.verifyBlock(i, data.subarray(i * dbs, (i + 1) * dbs))).toBe(true);
    const k = blocks - 1;
    const changed = Buffer.from(data.subarray(k * dbs, (k + 1) * dbs));
    changed[17] = changed[17]! ^ 1;
    expect(v.verifyBlock(k, changed)).toBe(false);
    try {
      v.assertBlock(k, changed);
      expect.unreachable('assertBlock must throw');
    } catch (err) {
      expect(err).toBeInstanceOf(VerityError);
      expect((err as VerityError).code).toBe('ERR_VERITY_DATA_CORRUPT');
      expect((err as VerityError).blockIndex).toBe(k);
      expect((err as VerityError).position).toBe(k * dbs);
      expect((err as VerityError).message).toContain(`data block ${k}`);
    }
    // A correct block at the wrong index is wrong too (unless the contents happen to repeat).
    if (blocks > 1) expect(v.verifyBlock(0, data.subarray(dbs, 2 * dbs))).toBe(false);
    expect(v.verifyBlock(blocks, data.subarray(0, dbs))).toBe(false);
    expect(v.verifyBlock(0, data.subarray(0, dbs - 1))).toBe(false);
    expect(thrownCode(() => v.assertBlock(-1, data.subarray(0, dbs)))).toBe('ERR_VERITY_INVALID_PARAMS');
  });

  it('refuses a tree whose root hash is not the trusted one', async () => {
    const { hashFile, params, rootHash } = await build(300, {});
    const wrong = (rootHash[0] === 'a' ? 'b' : 'a') + rootHash.slice(1);
    expect(thrownCode(() => BlockVerifier.fromHashFile(hashFile, params, wrong))).toBe(
      'ERR_VERITY_ROOT_HASH_MISMATCH',
    );
    expect(thrownCode(() => BlockVerifier.fromHashFile(hashFile, params, 'xyz'))).toBe(
      'ERR_VERITY_INVALID_ROOT_HASH',
    );
  });

  it('refuses a tree with a corrupted leaf digest, naming the leaf block', async () => {
    const { hashFile, params, rootHash } = await build(300, {});
    // 300 blocks: levels [3, 1]; tree at block 1: top at 4096, leaves at 8192.
    const bad = Buffer.from(hashFile);
    bad[8192 + 4096 + 5] = bad[8192 + 4096 + 5]! ^ 0xff; // leaf block 1, digest of data block 128
    try {
      BlockVerifier.fromHashFile(bad, params, rootHash);
      expect.unreachable('must throw');
    } catch (err) {
      expect((err as VerityError).code).toBe('ERR_VERITY_TREE_CORRUPT');
      expect((err as VerityError).level).toBe(0);
      expect((err as VerityError).blockIndex).toBe(1);
      expect((err as VerityError).position).toBe(8192 + 4096);
    }
  });

  it('refuses non-zero padding even when the tree above was rebuilt to match it', async () => {
    // Build the tree of a leaf level with garbage in its tail, consistent all the way up: only
    // the padding rule catches it.
    const { hashFile, params } = await build(3, { salt: new Uint8Array(0) });
    const bad = Buffer.from(hashFile);
    bad[4096 + 4000] = 1; // tail of the only leaf block (3 digests used)
    const { createHash } = await import('node:crypto');
    const root = createHash('sha256').update(bad.subarray(4096, 8192)).digest('hex');
    expect(thrownCode(() => BlockVerifier.fromHashFile(bad, params, root))).toBe(
      'ERR_VERITY_PADDING_NOT_ZERO',
    );
  });

  it('refuses a hash file shorter than the tree', async () => {
    const { hashFile, params, rootHash } = await build(300, {});
    expect(thrownCode(() => BlockVerifier.fromHashFile(hashFile.subarray(0, 10000), params, rootHash))).toBe(
      'ERR_VERITY_HASH_TOO_SHORT',
    );
  });
});
