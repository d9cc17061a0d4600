import { createHash, randomBytes } from 'node:crypto';
import { type FileHandle, open, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeWithTool, withTempDir } from '@abota/testkit';
import { describe, expect, it } from 'vitest';
import { BlockVerifier } from './block-verifier.js';
import { VerityError } from './errors.js';
import { formatVerity } from './format.js';
import { treeGeometry } from './geometry.js';
import { BlockHasher } from './hashing.js';
import { resolveParams, type VerityParams } from './params.js';
import { paramsFromArgs, rootHashFromOutput, runTool } from '../test/support.js';

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

/** Geometries with 0, 1, 2 and 3 tree levels, with and without superblock, offsets, salts. */
const GEOMETRIES = [
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
  ['one tree level (3 blocks, no salt)', 3, { salt: new Uint8Array(0) }],
  ['sha224: slot padding after every digest', 300, { algorithm: 'sha224' }],
] as const;

function thrownCode(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof VerityError ? err.code : String(err);
  }
}

describe('BlockVerifier', () => {
  it.each(GEOMETRIES)(
    'accepts every correct block and rejects a changed one: %s',
    async (_name, blocks, p) => {
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
    },
  );

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

/** The hash file written to `dir`, opened read-only, and the verifier made from it. */
async function fileVerifier(
  dir: string,
  hashFile: Uint8Array,
  params: VerityParams,
  rootHash: string,
): Promise<{ v: BlockVerifier; fh: FileHandle; path: string }> {
  const path = join(dir, 'tree');
  await writeFile(path, hashFile);
  const fh = await open(path, 'r');
  try {
    return { v: await BlockVerifier.fromHashFileHandle(fh, params, rootHash), fh, path };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** What a factory did with a hash file: ok, or the error's code, message and details. */
async function outcome(make: () => Promise<unknown>): Promise<unknown> {
  try {
    await make();
    return 'ok';
  } catch (err) {
    if (!(err instanceof VerityError)) throw err;
    const { code, message, position, blockIndex, level } = err;
    return { code, message, position, blockIndex, level };
  }
}

/** Both factories on the same bytes: the file-backed one must decide and report exactly the same. */
async function expectSameOutcome(
  bytes: Uint8Array,
  params: VerityParams,
  rootHash: string,
): Promise<unknown> {
  const inMemory = await outcome(async () => BlockVerifier.fromHashFile(bytes, params, rootHash));
  const fromFile = await withTempDir((dir) =>
    outcome(async () => (await fileVerifier(dir, bytes, params, rootHash)).fh.close()),
  );
  expect(fromFile).toEqual(inMemory);
  return inMemory;
}

/** Recompute levels 1.. from the leaf level (as a forger would) and return the new root hash. */
function rebuildAboveLeaves(bytes: Buffer, params: VerityParams): string {
  const g = treeGeometry(params);
  const hbs = params.hashBlockSize;
  const hasher = new BlockHasher(params.algorithm, params.hashType, params.salt);
  for (let i = 1; i < g.levels; i++) {
    const below = g.levelStartBlocks[i - 1]! * hbs;
    const at = g.levelStartBlocks[i]! * hbs;
    bytes.fill(0, at, at + g.levelSizes[i]! * hbs);
    for (let j = 0; j < g.levelSizes[i - 1]!; j++) {
      const digest = hasher.digest(bytes.subarray(below + j * hbs, below + (j + 1) * hbs));
      digest.copy(
        bytes,
        at + Math.floor(j / g.hashesPerBlock) * hbs + (j % g.hashesPerBlock) * g.slotSizeBytes,
      );
    }
  }
  const top = g.levelStartBlocks[g.levels - 1]! * hbs;
  return hasher.digest(bytes.subarray(top, top + hbs)).toString('hex');
}

describe('BlockVerifier.fromHashFileHandle (tree in a file)', () => {
  it.each(GEOMETRIES)('accepts every correct block, rejects a changed one: %s', async (_name, blocks, p) => {
    const { data, hashFile, params, rootHash } = await build(blocks, p as Partial<VerityParams>);
    await withTempDir(async (dir) => {
      const { v, fh } = await fileVerifier(dir, hashFile, params, rootHash);
      try {
        const dbs = params.dataBlockSize;
        for (let i = 0; i < blocks; i++)
          expect(v.verifyBlock(i, data.subarray(i * dbs, (i + 1) * dbs))).toBe(true);
        // Backwards too (every leaf block read again, not only from the cache).
        for (let i = blocks - 1; i >= 0; i--) v.assertBlock(i, data.subarray(i * dbs, (i + 1) * dbs));
        const k = blocks - 1;
        const changed = Buffer.from(data.subarray(k * dbs, (k + 1) * dbs));
        changed[17] = changed[17]! ^ 1;
        expect(v.verifyBlock(k, changed)).toBe(false);
        expect(thrownCode(() => v.assertBlock(k, changed))).toBe('ERR_VERITY_DATA_CORRUPT');
        if (blocks > 1) expect(v.verifyBlock(0, data.subarray(dbs, 2 * dbs))).toBe(false);
        expect(v.verifyBlock(blocks, data.subarray(0, dbs))).toBe(false);
        expect(thrownCode(() => v.assertBlock(-1, data.subarray(0, dbs)))).toBe('ERR_VERITY_INVALID_PARAMS');
        // hashFile() hands back exactly the file it was made from.
        const pieces: Buffer[] = [];
        for await (const piece of v.hashFile()) pieces.push(Buffer.from(piece));
        expect(Buffer.concat(pieces).equals(hashFile)).toBe(true);
      } finally {
        await fh.close();
      }
    });
  });

  it.each(GEOMETRIES)(
    'refuses a tampered tree exactly as fromHashFile does (any byte of the file flipped): %s',
    async (_name, blocks, p) => {
      const { hashFile, params, rootHash } = await build(blocks, p as Partial<VerityParams>);
      expect(await expectSameOutcome(hashFile, params, rootHash)).toBe('ok');
      const wrongRoot = (rootHash[0] === 'a' ? 'b' : 'a') + rootHash.slice(1);
      // Without a tree (one data block) the root is that block's digest: nothing to check up front.
      const rootOutcome = await expectSameOutcome(hashFile, params, wrongRoot);
      if (blocks > 1) expect(rootOutcome).toMatchObject({ code: 'ERR_VERITY_ROOT_HASH_MISMATCH' });
      else expect(rootOutcome).toBe('ok');
      // Every hash block of the tree gets a flipped byte at a different place in the block
      // (digests, slot padding, the unused tail), plus the bytes before the tree.
      const g = treeGeometry(params);
      const hbs = params.hashBlockSize;
      const codes = new Set<string>();
      for (let b = 0; b * hbs < hashFile.length; b++) {
        const bad = Buffer.from(hashFile);
        const at = b * hbs + ((b * 97 + 5) % hbs);
        bad[at] = bad[at]! ^ 0x40;
        const r = await expectSameOutcome(bad, params, rootHash);
        if (r !== 'ok') codes.add((r as { code: string }).code);
        if (g.levels > 0 && b >= g.treeStartBlock) expect(r).not.toBe('ok');
      }
      if (g.levels >= 2)
        expect(codes).toEqual(new Set(['ERR_VERITY_ROOT_HASH_MISMATCH', 'ERR_VERITY_TREE_CORRUPT']));
      // Too short for the tree.
      if (g.levels > 0)
        expect(
          await expectSameOutcome(hashFile.subarray(0, hashFile.length - 1), params, rootHash),
        ).toMatchObject({
          code: 'ERR_VERITY_HASH_TOO_SHORT',
        });
    },
  );

  // (sha512 in 512-byte hash blocks: 8 digests fill every leaf block, there is no padding.)
  it.each(GEOMETRIES.filter(([name, blocks]) => blocks > 1 && !name.startsWith('sha512')))(
    'refuses non-zero leaf padding under a tree rebuilt to match it, as fromHashFile does: %s',
    async (_name, blocks, p) => {
      const { hashFile, params } = await build(blocks, p as Partial<VerityParams>);
      const g = treeGeometry(params);
      const hbs = params.hashBlockSize;
      // The tail of the last leaf block, and (when there is any) the padding after a digest.
      const lastLeafEnd = (g.levelStartBlocks[0]! + g.levelSizes[0]!) * hbs;
      const spots = [lastLeafEnd - 1];
      expect((params.dataBlocks % g.hashesPerBlock) * g.slotSizeBytes).toBeLessThan(hbs - 1);
      if (g.slotSizeBytes > g.digestSizeBytes) spots.push(g.levelStartBlocks[0]! * hbs + g.digestSizeBytes);
      for (const spot of spots) {
        const bad = Buffer.from(hashFile);
        bad[spot] = 1;
        const root = rebuildAboveLeaves(bad, params);
        expect(await expectSameOutcome(bad, params, root)).toMatchObject({
          code: 'ERR_VERITY_PADDING_NOT_ZERO',
          level: 0,
        });
      }
    },
  );

  it('a leaf hash block changed on disk after the check fails closed when it is read', async () => {
    const { data, hashFile, params, rootHash } = await build(300, {});
    // 300 blocks: levels [3, 1]; superblock block 0, top at 4096, leaves at 8192.
    const leaf1 = 8192 + 4096;
    await withTempDir(async (dir) => {
      const { v, fh, path } = await fileVerifier(dir, hashFile, params, rootHash);
      try {
        const block = (i: number) => data.subarray(i * 4096, (i + 1) * 4096);
        expect(v.verifyBlock(0, block(0))).toBe(true);
        // Someone rewrites leaf block 1 (data blocks 128-255) after it was verified.
        const w = await open(path, 'r+');
        await w.write(Buffer.from([hashFile[leaf1 + 3]! ^ 1]), 0, 1, leaf1 + 3);
        await w.close();
        // A leaf slot that was not changed fails too: the whole hash block no longer matches level 1.
        expect(v.verifyBlock(200, block(200))).toBe(false);
        expect(v.verifyBlock(128, block(128))).toBe(false);
        try {
          v.assertBlock(128, block(128));
          expect.unreachable('assertBlock must throw');
        } catch (err) {
          expect(err).toBeInstanceOf(VerityError);
          expect((err as VerityError).code).toBe('ERR_VERITY_TREE_CORRUPT');
          expect((err as VerityError).level).toBe(0);
          expect((err as VerityError).blockIndex).toBe(1);
          expect((err as VerityError).position).toBe(leaf1);
          expect((err as VerityError).message).toContain('leaf hash block 1 ');
        }
        // Blocks under the unchanged leaf blocks still verify.
        expect(v.verifyBlock(256, block(256))).toBe(true);
        expect(v.verifyBlock(127, block(127))).toBe(true);
        // Copying the hash file out refuses it too.
        await expect(
          (async () => {
            for await (const _piece of v.hashFile());
          })(),
        ).rejects.toMatchObject({ code: 'ERR_VERITY_TREE_CORRUPT', blockIndex: 1 });
        // Truncated below leaf block 2: a short read fails closed as well.
        await truncate(path, leaf1 + 4096 + 100);
        expect(v.verifyBlock(299, block(299))).toBe(false);
        expect(thrownCode(() => v.assertBlock(299, block(299)))).toBe('ERR_VERITY_TREE_CORRUPT');
      } finally {
        await fh.close();
      }
    });
  });

  it('a forged leaf level under a rebuilt tree cannot pass for the signed one later', async () => {
    // The digest of each re-read leaf block is compared with level 1 held in memory, not with
    // level 1 on disk: rewriting the whole tree consistently after the check is caught too.
    const { data, hashFile, params, rootHash } = await build(300, {});
    await withTempDir(async (dir) => {
      const { v, fh, path } = await fileVerifier(dir, hashFile, params, rootHash);
      try {
        const forgedBlock = randomBytes(4096);
        const forged = Buffer.from(hashFile);
        const leaf2 = 8192 + 2 * 4096;
        const hasher = new BlockHasher(params.algorithm, params.hashType, params.salt);
        hasher.digest(forgedBlock).copy(forged, leaf2 + (260 - 256) * 32);
        rebuildAboveLeaves(forged, params);
        await writeFile(path, forged);
        expect(v.verifyBlock(260, forgedBlock)).toBe(false);
        expect(v.verifyBlock(260, data.subarray(260 * 4096, 261 * 4096))).toBe(false);
        expect(v.verifyBlock(0, data.subarray(0, 4096))).toBe(true);
      } finally {
        await fh.close();
      }
    });
  });

  it('verifies a 64 MiB image through a file of 128 leaf blocks under one top block', async () => {
    // 16,384 data blocks of 4 KiB need 128 leaf blocks and 1 top block: build the hash file
    // from digests directly (no 64 MiB data file), then check only a block of zeros against it.
    const params: VerityParams = {
      hashType: 1,
      algorithm: 'sha256',
      dataBlockSize: 4096,
      hashBlockSize: 4096,
      dataBlocks: 16384,
      salt: new Uint8Array(0),
      hashOffset: 0,
      superblock: false,
    };
    const g = treeGeometry(params);
    expect(g.levelSizes).toEqual([128, 1]);
    const zeroDigest = createHash('sha256').update(Buffer.alloc(4096)).digest();
    const file = Buffer.alloc(g.hashFileSizeBytes);
    for (let i = 0; i < 16384; i++)
      zeroDigest.copy(file, (g.levelStartBlocks[0]! + Math.floor(i / 128)) * 4096 + (i % 128) * 32);
    const root = rebuildAboveLeaves(file, params);
    await withTempDir(async (dir) => {
      const { v, fh } = await fileVerifier(dir, file, params, root);
      try {
        for (const i of [0, 127, 128, 9000, 16383]) expect(v.verifyBlock(i, Buffer.alloc(4096))).toBe(true);
        expect(v.verifyBlock(5, Buffer.alloc(4096, 1))).toBe(false);
      } finally {
        await fh.close();
      }
    });
  });
});

describeWithTool(
  'veritysetup',
  'cryptsetup-bin',
  'file-backed verifier on trees veritysetup made',
  (veritysetup) => {
    // The parameters come from the same arguments veritysetup gets (test/support.ts).
    const cases: [string, number, string[]][] = [
      ['defaults with superblock, 2 levels', 300, []],
      ['one level, no salt', 100, ['--salt=-']],
      [
        'type 0 sha1 1 KiB, no superblock at 8 KiB',
        700,
        [
          '--format=0',
          '--hash=sha1',
          '--data-block-size=1024',
          '--hash-block-size=1024',
          '--no-superblock',
          '--hash-offset=8192',
        ],
      ],
      ['sha512 in 512-byte hash blocks, 3 levels', 200, ['--hash=sha512', '--hash-block-size=512']],
    ];
    it.each(cases)(
      '%s: accepts every block, refuses a changed one and a changed leaf block',
      async (_n, blocks, given) => {
        await withTempDir(async (dir) => {
          const p = paramsFromArgs(given);
          const args = [
            ...given,
            ...(p.salt === undefined ? [`--salt=${randomBytes(32).toString('hex')}`] : []),
            ...(p.superblock === false ? [] : ['--uuid=6c8e4f7a-1b2c-4d3e-8f9a-0b1c2d3e4f5a']),
          ];
          const dbs = p.dataBlockSize ?? 4096;
          const data = randomBytes(blocks * dbs);
          await writeFile(join(dir, 'data'), data);
          const r = runTool(veritysetup, ['format', ...args, join(dir, 'data'), join(dir, 'hash')]);
          expect(r.status, r.stderr).toBe(0);
          const rootHash = rootHashFromOutput(r.stdout);
          const params = resolveParams(paramsFromArgs(args), data.length);
          const hashFile = await readFile(join(dir, 'hash'));
          const { v, fh, path } = await fileVerifier(dir, hashFile, params, rootHash);
          try {
            for (let i = 0; i < blocks; i++)
              expect(v.verifyBlock(i, data.subarray(i * dbs, (i + 1) * dbs))).toBe(true);
            const changed = Buffer.from(data.subarray(0, dbs));
            changed[0] = changed[0]! ^ 1;
            expect(v.verifyBlock(0, changed)).toBe(false);
            // A fresh verifier (nothing read yet), then a leaf block in the middle changed on
            // disk: the blocks under it no longer verify.
            const fresh = await BlockVerifier.fromHashFileHandle(fh, params, rootHash);
            const g = treeGeometry(params);
            const k = Math.floor(g.levelSizes[0]! / 2);
            const leaf = (g.levelStartBlocks[0]! + k) * params.hashBlockSize;
            const w = await open(path, 'r+');
            await w.write(Buffer.from([hashFile[leaf]! ^ 1]), 0, 1, leaf);
            await w.close();
            const under = Math.min(k * g.hashesPerBlock + 1, blocks - 1);
            const underBlock = data.subarray(under * dbs, (under + 1) * dbs);
            if (g.levels >= 2) {
              expect(fresh.verifyBlock(under, underBlock)).toBe(false);
              expect(thrownCode(() => fresh.assertBlock(under, underBlock))).toBe('ERR_VERITY_TREE_CORRUPT');
            } else {
              // One level: its only block is held in memory, the file is not read again.
              expect(fresh.verifyBlock(under, underBlock)).toBe(true);
            }
          } finally {
            await fh.close();
          }
        });
      },
    );
  },
);
