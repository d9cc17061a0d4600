// The full-image artifact codec. Chosen by measurement (README "Compression"): brotli from
// node:zlib — native, streaming, in every Node the device agent runs on (Node 20 has no zstd),
// decodable with a bounded window (2^lgwin bytes) — at quality 6, window 2^22 (4 MiB: the device
// agent refuses larger windows, its decoder memory bound; lgwin 24 would save 2.7 % of bytes).
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { constants, createBrotliCompress, createBrotliDecompress } from 'node:zlib';
import { ReleaseError } from './errors.js';

export type ArtifactCodec = 'brotli' | 'none';

export interface CodecSettings {
  codec: ArtifactCodec;
  /** brotli quality 0..11. */
  quality: number;
  /** brotli window: log2 of the decoder's ring buffer, 10..24. */
  lgwin: number;
}

/** What `abota release build` uses unless told otherwise (see README for the figures). */
export const DEFAULT_CODEC: CodecSettings = { codec: 'brotli', quality: 6, lgwin: 22 };

/** Read size for images: large enough for throughput, small enough to keep memory flat. */
const READ_CHUNK_BYTES = 1 << 20;

export interface CompressResult {
  /** Bytes of the compressed artifact. */
  sizeBytes: number;
  /** Lower-case hex sha256 of the compressed artifact. */
  sha256: string;
}

/**
 * Compress `srcPath` into a new file `dstPath` as ONE stream (a client decodes it front to back),
 * hashing the output on the way so the blob is read once. `onProgress` gets input bytes read.
 */
export async function compressFile(
  srcPath: string,
  dstPath: string,
  settings: CodecSettings,
  opts: { sizeHintBytes?: number; onProgress?: (readBytes: number) => void } = {},
): Promise<CompressResult> {
  const hash = createHash('sha256');
  let outBytes = 0;
  let inBytes = 0;
  const countInput = async function* (source: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
    for await (const chunk of source) {
      inBytes += chunk.length;
      opts.onProgress?.(inBytes);
      yield chunk;
    }
  };
  const hashOutput = async function* (source: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
    for await (const chunk of source) {
      hash.update(chunk);
      outBytes += chunk.length;
      yield chunk;
    }
  };
  const input = createReadStream(srcPath, { highWaterMark: READ_CHUNK_BYTES });
  const output = createWriteStream(dstPath, { flags: 'wx' });
  if (settings.codec === 'none') {
    await pipeline(input, countInput, hashOutput, output);
  } else {
    const params: Record<number, number> = {
      [constants.BROTLI_PARAM_QUALITY]: settings.quality,
      [constants.BROTLI_PARAM_LGWIN]: settings.lgwin,
    };
    if (opts.sizeHintBytes !== undefined) {
      params[constants.BROTLI_PARAM_SIZE_HINT] = Math.min(opts.sizeHintBytes, 2 ** 31 - 1);
    }
    await pipeline(input, countInput, createBrotliCompress({ params }), hashOutput, output);
  }
  return { sizeBytes: outBytes, sha256: hash.digest('hex') };
}

/**
 * Decode an artifact stream, refusing to produce more than `maxOutputBytes` (a hostile stream
 * must not fill memory or disk). brotli's decoder keeps at most its 2^lgwin window (4 MiB at
 * the default lgwin 22; RFC 7932 allows up to 2^24 − 16) plus one output chunk.
 */
export async function* decompress(
  codec: string,
  source: AsyncIterable<Uint8Array>,
  maxOutputBytes: number,
): AsyncIterable<Buffer> {
  let produced = 0;
  const limit = (chunk: Buffer): Buffer => {
    produced += chunk.length;
    if (produced > maxOutputBytes) {
      throw new ReleaseError(
        'ERR_RELEASE_ARTIFACT_CORRUPT',
        `the artifact decompresses to more than the manifest's ${maxOutputBytes} bytes`,
      );
    }
    return chunk;
  };
  if (codec === 'none') {
    for await (const chunk of source) yield limit(Buffer.from(chunk));
    return;
  }
  if (codec !== 'brotli') {
    throw new ReleaseError(
      'ERR_RELEASE_CODEC_UNSUPPORTED',
      `artifact codec ${JSON.stringify(codec)} cannot be decoded here (supported: brotli, none)`,
    );
  }
  const decoder = createBrotliDecompress();
  // Feed the decoder from the source without buffering more than the stream's highWaterMark.
  const feeding = pipeline(source, decoder).catch((err: unknown) => {
    decoder.destroy(err instanceof Error ? err : new Error(String(err)));
  });
  try {
    for await (const chunk of decoder as AsyncIterable<Buffer>) yield limit(chunk);
  } catch (err) {
    if (err instanceof ReleaseError) throw err;
    throw new ReleaseError(
      'ERR_RELEASE_ARTIFACT_CORRUPT',
      `the brotli artifact does not decode after ${produced} bytes of output: ${(err as Error).message}`,
      { cause: err },
    );
  } finally {
    decoder.destroy();
    await feeding;
  }
}

/**
 * Cut a byte stream into blocks of exactly `blockSize` bytes (the last may be shorter), copying
 * only the bytes that straddle chunk boundaries. A yielded block is valid only until the next
 * one is requested (the straddling buffer is reused), so consume it before iterating on.
 */
export async function* blocksOf(source: AsyncIterable<Uint8Array>, blockSize: number): AsyncIterable<Buffer> {
  const carry = Buffer.alloc(blockSize);
  let carried = 0;
  for await (const input of source) {
    let chunk = Buffer.from(input.buffer, input.byteOffset, input.length);
    if (carried > 0) {
      const take = Math.min(blockSize - carried, chunk.length);
      chunk.copy(carry, carried, 0, take);
      carried += take;
      chunk = chunk.subarray(take);
      if (carried < blockSize) continue;
      yield carry;
      carried = 0;
    }
    let at = 0;
    for (; at + blockSize <= chunk.length; at += blockSize) yield chunk.subarray(at, at + blockSize);
    if (at < chunk.length) {
      chunk.copy(carry, 0, at);
      carried = chunk.length - at;
    }
  }
  if (carried > 0) yield carry.subarray(0, carried);
}
