// The artifact codecs: one zstd or brotli stream in, the exact image out; hostile streams (too long,
// truncated, corrupt) end in ERR_RELEASE_ARTIFACT_CORRUPT without unbounded output.
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTempDir } from '@abota/testkit';
import { describe, expect, it } from 'vitest';
import { parseExpiry, parseSecurityVersion } from './build.js';
import { BROTLI_CODEC, blocksOf, compressFile, DEFAULT_CODEC, decompress, parseCodec } from './codec.js';
import { ReleaseError } from './errors.js';

async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of source) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

async function* chunked(data: Buffer, sizes: number[]): AsyncIterable<Uint8Array> {
  let at = 0;
  let i = 0;
  while (at < data.length) {
    const n = sizes[i++ % sizes.length]!;
    yield data.subarray(at, at + n);
    at += n;
  }
}

describe('blocksOf', () => {
  it('cuts any chunking into the same whole blocks, with a short tail only at the end', async () => {
    const data = randomBytes(4096 * 5 + 100);
    for (const sizes of [[1], [4095, 2], [4096], [10000, 3, 7000], [data.length]]) {
      const blocks: Buffer[] = [];
      for await (const b of blocksOf(chunked(data, sizes), 4096)) blocks.push(Buffer.from(b));
      expect(blocks.map((b) => b.length)).toEqual([4096, 4096, 4096, 4096, 4096, 100]);
      expect(Buffer.concat(blocks).equals(data)).toBe(true);
    }
  });
});

describe('artifact window', () => {
  it('brotli declares the 2^22 window devices accept (client README "Memory"), even with a size hint', async () => {
    await withTempDir(async (dir) => {
      const src = join(dir, 'img');
      await writeFile(src, randomBytes(64 * 1024));
      await compressFile(src, join(dir, 'img.br'), BROTLI_CODEC, { sizeHintBytes: 512 * 1024 * 1024 });
      const first = (await readFile(join(dir, 'img.br')))[0]!;
      // RFC 7932 §9.1 stream header, least significant bit first: 1, then 3 bits 22 − 17 = 0b101.
      expect(first & 0x0f).toBe(0b1011);
    });
  });

  it('zstd (the default) declares a 2^21 window, not the image size, even for a large image', async () => {
    expect(DEFAULT_CODEC).toEqual({ codec: 'zstd', quality: 19, lgwin: 21 });
    await withTempDir(async (dir) => {
      const src = join(dir, 'img');
      await writeFile(src, Buffer.concat([randomBytes(5 << 20), randomBytes(1 << 20)]));
      await compressFile(src, join(dir, 'img.zst'), DEFAULT_CODEC, { sizeHintBytes: 512 * 1024 * 1024 });
      const header = await readFile(join(dir, 'img.zst'));
      // RFC 8878 §3.1.1: magic, then the frame header descriptor: no single-segment flag (bit 5),
      // so a window descriptor follows: exponent 21 − 10 = 11, mantissa 0.
      expect(header.readUInt32LE(0)).toBe(0xfd2fb528);
      expect(header[4]! & 0x20).toBe(0);
      expect(header[5]).toBe(11 << 3);
    });
  });
});

describe.each([DEFAULT_CODEC, BROTLI_CODEC])('$codec artifact', (codec) => {
  it('round-trips a file through compressFile/decompress and reports the digest of the output', async () => {
    await withTempDir(async (dir) => {
      const src = join(dir, 'img');
      const data = Buffer.concat([
        randomBytes(300_000),
        Buffer.alloc(700_000),
        Buffer.from('x'.repeat(50_000)),
      ]);
      await writeFile(src, data);
      const result = await compressFile(src, join(dir, 'img.c'), codec);
      const compressed = await readFile(join(dir, 'img.c'));
      expect(result.sizeBytes).toBe(compressed.length);
      expect(result.sizeBytes).toBeLessThan(data.length / 2);
      const { createHash } = await import('node:crypto');
      expect(result.sha256).toBe(createHash('sha256').update(compressed).digest('hex'));
      const out = await collect(decompress(codec.codec, createReadStream(join(dir, 'img.c')), data.length));
      expect(out.equals(data)).toBe(true);
    });
  });

  it('refuses a stream that decompresses to more than the manifest allows (decompression bomb)', async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, 'zeros'), Buffer.alloc(8 << 20));
      await compressFile(join(dir, 'zeros'), join(dir, 'zeros.c'), codec);
      const err = await collect(
        decompress(codec.codec, createReadStream(join(dir, 'zeros.c')), 1 << 20),
      ).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ReleaseError);
      expect((err as ReleaseError).code).toBe('ERR_RELEASE_ARTIFACT_CORRUPT');
    });
  });

  it('refuses a truncated or corrupted stream with ERR_RELEASE_ARTIFACT_CORRUPT', async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, 'img'), randomBytes(200_000));
      await compressFile(join(dir, 'img'), join(dir, 'img.c'), codec);
      const full = await readFile(join(dir, 'img.c'));
      const truncated = full.subarray(0, full.length - 1000);
      const garbage = Buffer.from(full);
      garbage.fill(0xa5, 0, 64);
      for (const bad of [truncated, garbage]) {
        const err = await collect(decompress(codec.codec, chunked(bad, [4096]), 200_000)).catch(
          (e: unknown) => e,
        );
        expect((err as ReleaseError).code).toBe('ERR_RELEASE_ARTIFACT_CORRUPT');
      }
    });
  });
});

describe('codec none and unknown codecs', () => {
  it('codec none stores the image verbatim and still enforces the size limit on reading', async () => {
    await withTempDir(async (dir) => {
      const data = randomBytes(100_000);
      await writeFile(join(dir, 'img'), data);
      const result = await compressFile(join(dir, 'img'), join(dir, 'img.raw'), parseCodec('none'));
      expect(result.sizeBytes).toBe(data.length);
      expect((await readFile(join(dir, 'img.raw'))).equals(data)).toBe(true);
      const out = await collect(decompress('none', createReadStream(join(dir, 'img.raw')), data.length));
      expect(out.equals(data)).toBe(true);
      const err = await collect(decompress('none', createReadStream(join(dir, 'img.raw')), 99_999)).catch(
        (e: unknown) => e,
      );
      expect((err as ReleaseError).code).toBe('ERR_RELEASE_ARTIFACT_CORRUPT');
    });
  });

  it('refuses codecs it cannot decode by name', async () => {
    const err = await collect(decompress('lz4', chunked(Buffer.alloc(10), [10]), 10)).catch(
      (e: unknown) => e,
    );
    expect((err as ReleaseError).code).toBe('ERR_RELEASE_CODEC_UNSUPPORTED');
    expect((err as ReleaseError).message).toContain('supported: zstd, brotli, none');
  });

  it('--codec names zstd (the default), brotli (quality 6, the default before) or none', () => {
    expect(parseCodec(undefined)).toBe(DEFAULT_CODEC);
    expect(parseCodec('zstd')).toBe(DEFAULT_CODEC);
    expect(parseCodec('brotli')).toEqual({ codec: 'brotli', quality: 6, lgwin: 22 });
    expect(parseCodec('none').codec).toBe('none');
    for (const bad of ['gzip', 'ZSTD', 'toString', '']) {
      expect(() => parseCodec(bad)).toThrow(expect.objectContaining({ code: 'ERR_RELEASE_USAGE' }));
    }
  });

  it("--codec-level sets the encoder effort within the codec's range, and the stream decodes the same", async () => {
    expect(parseCodec(undefined, '3')).toEqual({ codec: 'zstd', quality: 3, lgwin: 21 });
    expect(parseCodec('brotli', '11')).toEqual({ codec: 'brotli', quality: 11, lgwin: 22 });
    expect(DEFAULT_CODEC.quality).toBe(19); // the default object is not changed by a level
    for (const [codec, bad] of [
      ['zstd', '0'],
      ['zstd', '20'],
      ['zstd', '3.5'],
      ['zstd', '-1'],
      ['zstd', ''],
      ['brotli', '12'],
      ['none', '1'],
    ] as const) {
      expect(() => parseCodec(codec, bad), `${codec} ${bad}`).toThrow(
        expect.objectContaining({
          code: 'ERR_RELEASE_USAGE',
          message: expect.stringContaining('--codec-level'),
        }),
      );
    }
    await withTempDir(async (dir) => {
      // Compressible input: a fast level makes a larger artifact than the default, both decode exactly.
      const image = Buffer.concat(
        Array.from({ length: 64 }, (_, i) => Buffer.alloc(16 * 1024, `block ${i % 7} `)),
      );
      const src = join(dir, 'img');
      await writeFile(src, image);
      const sizes: number[] = [];
      for (const [name, settings] of [
        ['fast', parseCodec('zstd', '1')],
        ['default', DEFAULT_CODEC],
      ] as const) {
        const out = join(dir, `img.${name}.zst`);
        sizes.push((await compressFile(src, out, settings)).sizeBytes);
        expect((await collect(decompress('zstd', createReadStream(out), image.length))).equals(image)).toBe(
          true,
        );
      }
      expect(sizes[0]).toBeGreaterThan(sizes[1]!);
    });
  });
});

describe('build argument parsing', () => {
  const now = new Date('2026-11-25T12:00:00Z');
  it('reads --expires as a duration from now or an absolute timestamp', () => {
    expect(parseExpiry('180d', now).toISOString()).toBe('2027-05-24T12:00:00.000Z');
    expect(parseExpiry('12h', now).toISOString()).toBe('2026-11-26T00:00:00.000Z');
    expect(parseExpiry('2027-01-01T00:00:00Z', now).toISOString()).toBe('2027-01-01T00:00:00.000Z');
  });
  it('refuses an expiry in the past and text that is neither duration nor timestamp', () => {
    expect(() => parseExpiry('2026-01-01T00:00:00Z', now)).toThrow(
      expect.objectContaining({ code: 'ERR_RELEASE_EXPIRY_IN_PAST' }),
    );
    expect(() => parseExpiry('0s', now)).toThrow(
      expect.objectContaining({ code: 'ERR_RELEASE_EXPIRY_IN_PAST' }),
    );
    for (const bad of ['soon', '10 days', '-5d', '2027-13-45']) {
      expect(() => parseExpiry(bad, now)).toThrow(expect.objectContaining({ code: 'ERR_RELEASE_USAGE' }));
    }
  });
  it('accepts security versions 0 … 2^32−1 only', () => {
    expect(parseSecurityVersion('0')).toBe(0);
    expect(parseSecurityVersion('4294967295')).toBe(4294967295);
    for (const bad of ['-1', '4294967296', '1.5', 'x', '']) {
      expect(() => parseSecurityVersion(bad)).toThrow(expect.objectContaining({ code: 'ERR_RELEASE_USAGE' }));
    }
  });
});
