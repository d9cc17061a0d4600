import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTempDir } from '@abota/testkit';
import { describe, expect, it } from 'vitest';
import { VerityError } from './errors.js';
import { formatVerity } from './format.js';
import type { VerityParams } from './params.js';
import { parseSaltHex } from './params.js';
import { verifyVerity } from './verify.js';

async function failure(p: Promise<unknown>): Promise<VerityError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof VerityError) return err;
    throw err;
  }
  throw new Error('expected a VerityError');
}

const FIXED: Partial<VerityParams> = {
  salt: parseSaltHex('abcd'),
  uuid: '12345678-1234-5678-9abc-def012345678',
};

describe('formatVerity: bad input is refused with a code and leaves no output', () => {
  it.each([
    [
      'block size not a power of two',
      { dataBlockSize: 1000 },
      'ERR_VERITY_INVALID_BLOCK_SIZE',
      'power of two',
    ],
    ['hash block size too large', { hashBlockSize: 1048576 }, 'ERR_VERITY_INVALID_BLOCK_SIZE', '524288'],
    ['salt longer than 256 bytes', { salt: new Uint8Array(257) }, 'ERR_VERITY_INVALID_SALT', '257 bytes'],
    ['unknown algorithm', { algorithm: 'md5' }, 'ERR_VERITY_UNKNOWN_ALGORITHM', 'md5'],
    ['hash offset not a multiple of 512', { hashOffset: 1000 }, 'ERR_VERITY_INVALID_HASH_OFFSET', '512'],
    [
      'more data blocks than the file has',
      { dataBlocks: 200 },
      'ERR_VERITY_DATA_TOO_SHORT',
      '200 data blocks',
    ],
    ['hash type 2', { hashType: 2 as 0 }, 'ERR_VERITY_INVALID_PARAMS', '0 or 1'],
    ['a malformed UUID', { uuid: 'not-a-uuid' }, 'ERR_VERITY_INVALID_UUID', 'not-a-uuid'],
  ] as const)('%s', async (_name, params, code, text) => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, 'data'), randomBytes(129 * 4096));
      const err = await failure(
        formatVerity({
          dataPath: join(dir, 'data'),
          hashPath: join(dir, 'hash'),
          params: params as Partial<VerityParams>,
        }),
      );
      expect(err.code).toBe(code);
      expect(err.message).toContain(text);
      expect(await readdir(dir)).toEqual(['data']);
    });
  });

  it('a missing data file', async () => {
    await withTempDir(async (dir) => {
      const err = await failure(formatVerity({ dataPath: join(dir, 'nope'), hashPath: join(dir, 'hash') }));
      expect(err.code).toBe('ERR_VERITY_FILE_NOT_FOUND');
      expect(err.message).toContain('nope');
      expect(await readdir(dir)).toEqual([]);
    });
  });

  it('an image smaller than one block', async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, 'data'), randomBytes(1000));
      const err = await failure(formatVerity({ dataPath: join(dir, 'data'), hashPath: join(dir, 'hash') }));
      expect(err.code).toBe('ERR_VERITY_DATA_TOO_SMALL');
      expect(err.message).toContain('1000 bytes');
      expect(await readdir(dir)).toEqual(['data']);
    });
  });

  it('a hash offset inside the data when data and hash are one file', async () => {
    await withTempDir(async (dir) => {
      const device = join(dir, 'device');
      const before = randomBytes(200 * 4096);
      await writeFile(device, before);
      const err = await failure(
        formatVerity({ dataPath: device, hashPath: device, params: { ...FIXED, hashOffset: 100 * 4096 } }),
      );
      expect(err.code).toBe('ERR_VERITY_OVERLAP');
      expect(err.message).toContain('overlaps');
      expect((await readFile(device)).equals(before)).toBe(true);
    });
  });

  it('a read error half way removes the temporary file and leaves the old hash file alone', async () => {
    await withTempDir(async (dir) => {
      // A directory opens but cannot be read: the failure happens after the temp file exists.
      await mkdir(join(dir, 'data-dir'));
      await writeFile(join(dir, 'hash'), 'old contents');
      const err = await failure(
        formatVerity({
          dataPath: join(dir, 'data-dir'),
          hashPath: join(dir, 'hash'),
          params: { dataBlockSize: 512 },
        }),
      );
      expect(err.code).toBe('ERR_VERITY_IO');
      expect((await readdir(dir)).sort()).toEqual(['data-dir', 'hash']);
      expect(await readFile(join(dir, 'hash'), 'utf8')).toBe('old contents');
    });
  });
});

describe('formatVerity: where the output goes', () => {
  it('a hash path that is a directory fails without leaving a temporary file', async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, 'data'), randomBytes(16 * 4096));
      await mkdir(join(dir, 'hash-dir'));
      const err = await failure(
        formatVerity({ dataPath: join(dir, 'data'), hashPath: join(dir, 'hash-dir') }),
      );
      expect(err.code).toBe('ERR_VERITY_IO');
      expect(err.message).toContain('hash-dir');
      expect((await readdir(dir)).sort()).toEqual(['data', 'hash-dir']);
    });
  });

  it('replaces an existing hash file at offset 0 with a fresh one (no stale bytes after the tree)', async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, 'data'), randomBytes(129 * 4096));
      await writeFile(join(dir, 'hash'), Buffer.alloc(100000, 0xee));
      const r = await formatVerity({
        dataPath: join(dir, 'data'),
        hashPath: join(dir, 'hash'),
        params: FIXED,
      });
      expect(r.inPlace).toBe(false);
      const out = await readFile(join(dir, 'hash'));
      expect(out.length).toBe(16384);
      expect(out.subarray(512, 4096).every((b) => b === 0)).toBe(true);
    });
  });

  it('writes into an existing file at a hash offset in place: bytes before it and after the tree survive', async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, 'data'), randomBytes(129 * 4096));
      const partition = Buffer.alloc(64 * 1024, 0x5a);
      await writeFile(join(dir, 'hash'), partition);
      const r = await formatVerity({
        dataPath: join(dir, 'data'),
        hashPath: join(dir, 'hash'),
        params: { ...FIXED, hashOffset: 8192 },
      });
      expect(r.inPlace).toBe(true);
      const out = await readFile(join(dir, 'hash'));
      expect(out.length).toBe(64 * 1024);
      expect(out.subarray(0, 8192).every((b) => b === 0x5a)).toBe(true);
      // veritysetup writes only the 512-byte superblock and the tree (docs/formats.md §1.8 pitfall 6).
      expect(out.subarray(8192 + 512, 12288).every((b) => b === 0x5a)).toBe(true);
      expect(out.subarray(24576).every((b) => b === 0x5a)).toBe(true);
      await verifyVerity({
        dataPath: join(dir, 'data'),
        hashPath: join(dir, 'hash'),
        rootHash: r.rootHash,
        params: { hashOffset: 8192 },
      });
    });
  });

  it('streams: buffer memory stays bounded while formatting and verifying a 256 MiB image', async () => {
    await withTempDir(async (dir) => {
      const data = join(dir, 'data');
      await writeFile(data, '');
      await truncate(data, 256 * 1024 * 1024); // sparse: cheap to create, hashed for real
      let peak = 0;
      const sample = (): void => {
        peak = Math.max(peak, process.memoryUsage().arrayBuffers);
      };
      const before = process.memoryUsage().arrayBuffers;
      const r = await formatVerity({ dataPath: data, hashPath: join(dir, 'hash'), onProgress: sample });
      await verifyVerity({
        dataPath: data,
        hashPath: join(dir, 'hash'),
        rootHash: r.rootHash,
        onProgress: sample,
      });
      // Two 1 MiB read buffers and a 256 KiB output run, not the image (256 MiB). The figure
      // includes read buffers the GC has not collected yet: 9.0 MB was seen once at load ~20,
      // hence 16 MiB, still 16 times less than the image.
      expect(peak - before).toBeLessThan(16 * 1024 * 1024);
    });
  });

  it('reports progress up to the whole data size', async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, 'data'), randomBytes(1000 * 4096));
      let last = 0;
      await formatVerity({
        dataPath: join(dir, 'data'),
        hashPath: join(dir, 'hash'),
        onProgress: (done, total) => {
          expect(total).toBe(1000 * 4096);
          expect(done).toBeGreaterThanOrEqual(last);
          last = done;
        },
      });
      expect(last).toBe(1000 * 4096);
    });
  });
});

describe('verifyVerity: short files and bad headers fail with exit status 1', () => {
  it('reports a truncated data file, a truncated hash file, a bad root hash string and a bad magic', async () => {
    await withTempDir(async (dir) => {
      const data = join(dir, 'data');
      const hash = join(dir, 'hash');
      await writeFile(data, randomBytes(129 * 4096));
      const { rootHash } = await formatVerity({ dataPath: data, hashPath: hash, params: FIXED });
      const short = await failure(verifyVerity({ dataPath: data, hashPath: hash, rootHash: 'abc' }));
      expect([short.code, short.exitCode]).toEqual(['ERR_VERITY_INVALID_ROOT_HASH', 1]);
      await truncate(hash, 14000);
      const hashShort = await failure(verifyVerity({ dataPath: data, hashPath: hash, rootHash }));
      expect([hashShort.code, hashShort.exitCode]).toEqual(['ERR_VERITY_HASH_TOO_SHORT', 1]);
      await formatVerity({ dataPath: data, hashPath: hash, params: FIXED });
      await truncate(data, 400000);
      const dataShort = await failure(verifyVerity({ dataPath: data, hashPath: hash, rootHash }));
      expect([dataShort.code, dataShort.exitCode]).toEqual(['ERR_VERITY_DATA_TOO_SHORT', 1]);
      await writeFile(hash, Buffer.alloc(16384));
      const magic = await failure(verifyVerity({ dataPath: data, hashPath: hash, rootHash }));
      expect([magic.code, magic.exitCode]).toEqual(['ERR_VERITY_BAD_SUPERBLOCK', 1]);
      expect(magic.message).toContain('not a valid VERITY device');
      expect((await stat(hash)).size).toBe(16384);
    });
  });
});
