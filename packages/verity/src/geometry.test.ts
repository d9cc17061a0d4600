import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hashesPerBlock, levelCount, slotSize, treeGeometry, treeStartBlock } from './geometry.js';

const base = {
  hashType: 1 as const,
  algorithm: 'sha256',
  dataBlockSize: 4096,
  hashBlockSize: 4096,
  hashOffset: 0,
  superblock: true,
};

describe('tree geometry (docs/formats.md §1.4)', () => {
  it.each([
    [1, [], 0, 4096],
    [2, [1], 1, 8192],
    [127, [1], 1, 8192],
    [128, [1], 1, 8192],
    [129, [2, 1], 3, 16384],
    [16384, [128, 1], 129, 532480],
    [16385, [129, 2, 1], 132, 544768],
    [1048576, [8192, 64, 1], 8257, 33824768],
  ])(
    'N=%i data blocks gives level sizes %j (leaf first), %i tree blocks, a %i-byte hash file',
    (n, sizes, blocks, file) => {
      const g = treeGeometry({ ...base, dataBlocks: n });
      expect(g.levelSizes).toEqual(sizes);
      expect(g.treeBlocks).toBe(blocks);
      expect(g.hashFileSizeBytes).toBe(file);
    },
  );

  it('puts the top level first and the leaf level last on disk', () => {
    const g = treeGeometry({ ...base, dataBlocks: 16385 });
    expect(g.treeStartBlock).toBe(1);
    expect(g.levelStartBlocks).toEqual([4, 2, 1]);
  });

  it('rounds digests per block down to a power of two and pads type-1 slots to one', () => {
    expect(hashesPerBlock(4096, 20)).toBe(128);
    expect(hashesPerBlock(4096, 64)).toBe(64);
    expect(hashesPerBlock(512, 32)).toBe(16);
    expect(slotSize(1, 20)).toBe(32);
    expect(slotSize(0, 20)).toBe(20);
    expect(slotSize(1, 48)).toBe(64);
  });

  it('starts the tree after the superblock rounded up, or at the offset rounded down without one', () => {
    expect(treeStartBlock(0, 4096, true)).toBe(1);
    expect(treeStartBlock(512, 4096, true)).toBe(1);
    expect(treeStartBlock(4608, 4096, true)).toBe(2);
    expect(treeStartBlock(8192, 4096, true)).toBe(3);
    expect(treeStartBlock(512, 4096, false)).toBe(0);
    expect(treeStartBlock(8192, 4096, false)).toBe(2);
  });

  it('makes a single-block image treeless, its file just the superblock write (or empty)', () => {
    expect(treeGeometry({ ...base, dataBlocks: 1, hashBlockSize: 16384 }).hashFileSizeBytes).toBe(4096);
    expect(
      treeGeometry({ ...base, dataBlocks: 1, hashBlockSize: 8192, hashOffset: 8192 }).hashFileSizeBytes,
    ).toBe(12288);
    expect(
      treeGeometry({ ...base, dataBlocks: 1, superblock: false, hashOffset: 8192 }).hashFileSizeBytes,
    ).toBe(0);
  });

  it('always has exactly one top block and levels that cover every block below', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 40 }),
        fc.constantFrom(512, 1024, 4096, 65536),
        fc.constantFrom(20, 32, 64),
        (n, hbs, digest) => {
          const p = hashesPerBlock(hbs, digest);
          const levels = levelCount(n, p);
          expect(p ** levels).toBeGreaterThanOrEqual(n);
          if (levels > 0) expect(p ** (levels - 1)).toBeLessThan(n);
        },
      ),
    );
  });
});
