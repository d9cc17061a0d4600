// Artifact codecs against node:zlib's brotli encoder as the reference: the window a stream
// declares (RFC 7932 §9.1) and the agent's window limit, which bounds the decoder's memory.
import { randomBytes } from 'node:crypto';
import { brotliCompressSync, constants } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { brotliWindowBits, decode, MAX_BROTLI_WINDOW_BITS } from './codec.js';

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
