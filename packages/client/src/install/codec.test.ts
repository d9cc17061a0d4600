// Artifact codecs against node:zlib's brotli and zstd encoders as the reference: the window a
// stream declares (RFC 7932 §9.1, RFC 8878 §3.1.1.1) and the agent's window limit, which bounds
// the decoder's memory.
import { randomBytes } from 'node:crypto';
import { brotliCompressSync, constants, zstdCompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { brotliWindowBits, decode, MAX_BROTLI_WINDOW_BITS, MAX_ZSTD_WINDOW_BITS } from './codec.js';

const compress = (data: Uint8Array, lgwin: number, largeWindow = false): Buffer =>
  brotliCompressSync(data, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: 5, // quality 0 and 1 raise lgwin to at least 18
      [constants.BROTLI_PARAM_LGWIN]: lgwin,
      [constants.BROTLI_PARAM_LARGE_WINDOW]: largeWindow ? 1 : 0,
      // Without a size hint the encoder keeps the window it is given, even for small inputs.
    },
  });

async function* inChunks(data: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

async function decodeAll(stream: Uint8Array, maxOutputBytes: number): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const chunk of decode('brotli', inChunks(stream, 1000), maxOutputBytes, 'image rootfs')) {
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}

describe('brotli window', () => {
  it('reads the window every lgwin from 10 to 24 declares, as the encoder writes it', () => {
    const data = randomBytes(64 * 1024);
    for (let lgwin = 10; lgwin <= 24; lgwin++) {
      const first = compress(data, lgwin)[0]!;
      expect({ lgwin, bits: brotliWindowBits(first) }).toEqual({ lgwin, bits: lgwin });
    }
  });

  it('does not mistake a large-window (non-RFC) stream for a standard window', () => {
    expect(brotliWindowBits(compress(randomBytes(1024), 26, true)[0]!)).toBeUndefined();
  });

  it(`decodes a stream with a window of 2^${MAX_BROTLI_WINDOW_BITS} byte for byte`, async () => {
    const data = Buffer.concat([randomBytes(300_000), Buffer.alloc(500_000, 7), randomBytes(100_000)]);
    const out = await decodeAll(compress(data, MAX_BROTLI_WINDOW_BITS), data.length);
    expect(out.equals(data)).toBe(true);
  });

  it('refuses a larger window before decoding anything, naming the window and the fix', async () => {
    const data = randomBytes(10_000);
    const stream = compress(data, MAX_BROTLI_WINDOW_BITS + 2);
    const produced: number[] = [];
    const run = async () => {
      for await (const chunk of decode('brotli', inChunks(stream, 1000), data.length, 'image rootfs')) {
        produced.push(chunk.byteLength);
      }
    };
    await expect(run()).rejects.toMatchObject({
      code: 'ERR_INSTALL_UNSUPPORTED_CODEC',
      message: expect.stringMatching(/image rootfs: .*2\^24-byte window.*up to 2\^22 .*lgwin ≤ 22/),
    });
    expect(produced).toEqual([]);
  });

  it('stops a stream that decodes to more than the signed size', async () => {
    const stream = compress(Buffer.alloc(4 * 1024 * 1024), 20);
    await expect(decodeAll(stream, 1024 * 1024)).rejects.toMatchObject({ code: 'ERR_INSTALL_ARTIFACT_SIZE' });
  });
});

describe('zstd window', () => {
  const zstd = (data: Uint8Array, windowLog: number): Buffer =>
    // The one-shot encoder writes the content size into the frame header; an input that fits
    // the window becomes a single-segment frame whose window is the content size.
    zstdCompressSync(data, {
      params: {
        [constants.ZSTD_c_compressionLevel]: 3,
        [constants.ZSTD_c_windowLog]: windowLog,
        [constants.ZSTD_c_checksumFlag]: 1, // as the publisher writes it
      },
    });
  const decodeZstd = async (stream: Uint8Array, maxOutputBytes: number, produced: number[] = []) => {
    const parts: Uint8Array[] = [];
    for await (const chunk of decode('zstd', inChunks(stream, 1000), maxOutputBytes, 'image rootfs')) {
      produced.push(chunk.byteLength);
      parts.push(chunk);
    }
    return Buffer.concat(parts);
  };
  // 9 MiB with a repeat 8 MiB back: only a window above 8 MiB finds it, and the sync encoder
  // declares the content size (a single-segment frame), so the frame needs a 9 MiB window.
  const block = randomBytes(1 << 20);
  const nineMiB = Buffer.concat([block, Buffer.alloc(7 << 20, 3), block]);

  it(`decodes a stream with a window of 2^${MAX_ZSTD_WINDOW_BITS} byte for byte, in 64 KiB chunks`, async () => {
    const data = Buffer.concat([randomBytes(300_000), Buffer.alloc(3_000_000, 7), randomBytes(100_000)]);
    const produced: number[] = [];
    const out = await decodeZstd(zstd(data, MAX_ZSTD_WINDOW_BITS), data.length, produced);
    expect(out.equals(data)).toBe(true);
    expect(Math.max(...produced)).toBeLessThanOrEqual(64 * 1024);
  });

  it('refuses a frame that needs a larger window before decoding anything, naming the bound and the fix', async () => {
    const produced: number[] = [];
    await expect(decodeZstd(zstd(nineMiB, 24), nineMiB.length, produced)).rejects.toMatchObject({
      code: 'ERR_INSTALL_UNSUPPORTED_CODEC',
      message: expect.stringMatching(/image rootfs: .*window larger than .* 2\^22 \(4 MiB\).*windowLog ≤ 22/),
    });
    expect(produced).toEqual([]);
  });

  it('stops a stream that decodes to more than the signed size', async () => {
    const stream = zstd(Buffer.alloc(4 * 1024 * 1024), 20);
    await expect(decodeZstd(stream, 1024 * 1024)).rejects.toMatchObject({
      code: 'ERR_INSTALL_ARTIFACT_SIZE',
    });
  });

  it('reports a truncated or damaged stream (the frame checksum catches stored blocks) as corrupt', async () => {
    const data = randomBytes(200_000);
    const full = zstd(data, 20);
    const damaged = Buffer.from(full);
    damaged.fill(0xa5, 1000, 1100);
    for (const bad of [full.subarray(0, full.length - 1000), damaged]) {
      await expect(decodeZstd(bad, data.length)).rejects.toMatchObject({
        code: 'ERR_INSTALL_ARTIFACT_CORRUPT',
        message: expect.stringContaining('image rootfs: zstd stream is corrupt'),
      });
    }
  });
});
