// The full-image artifact codecs, from node:zlib — native and streaming in the Node 24 the
// device agent runs on, decodable with a bounded window (2^lgwin bytes: the device agent refuses
// more than 2^22, its decoder memory bound). zstd is the default, chosen by measurement (README
// "Compression"): level 19 with a 2^21 window is smaller than brotli q6 and decodes with less
// CPU, and the 2 MiB window keeps the agent under its 64 MiB on Node 24. brotli (the codec of
// releases built before zstd) stays buildable and decodable.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import type { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  constants,
  createBrotliCompress,
  createBrotliDecompress,
  createZstdCompress,
  createZstdDecompress,
} from 'node:zlib';
import { ReleaseError } from './errors.js';

export type ArtifactCodec = 'zstd' | 'brotli' | 'none';

export interface CodecSettings {
  codec: ArtifactCodec;
  /** Compression level: zstd 1..19, brotli quality 0..11 (ignored for none). */
  quality: number;
  /** Window: log2 of the decoder's window in bytes; devices accept at most 22 (4 MiB). */
  lgwin: number;
}

/** What `abota release build` uses unless told otherwise (see README for the figures). */
export const DEFAULT_CODEC: CodecSettings = { codec: 'zstd', quality: 19, lgwin: 21 };

/** brotli q6 — the default before zstd (releases built then carry it; still buildable). */
export const BROTLI_CODEC: CodecSettings = { codec: 'brotli', quality: 6, lgwin: 22 };

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
    await pipeline(input, countInput, compressor(settings, opts.sizeHintBytes), hashOutput, output);
  }
  return { sizeBytes: outBytes, sha256: hash.digest('hex') };
}

/** The encoder of one artifact stream, its window fixed at `settings.lgwin` whatever the input size. */
function compressor(settings: CodecSettings, sizeHintBytes: number | undefined): Transform {
  if (settings.codec === 'zstd') {
    return createZstdCompress({
      params: {
        [constants.ZSTD_c_compressionLevel]: settings.quality,
        [constants.ZSTD_c_windowLog]: settings.lgwin,
        [constants.ZSTD_c_checksumFlag]: 1,
      },
    });
  }
  const params: Record<number, number> = {
    [constants.BROTLI_PARAM_QUALITY]: settings.quality,
    [constants.BROTLI_PARAM_LGWIN]: settings.lgwin,
  };
  if (sizeHintBytes !== undefined)
    params[constants.BROTLI_PARAM_SIZE_HINT] = Math.min(sizeHintBytes, 2 ** 31 - 1);
  return createBrotliCompress({ params });
}

/** Each codec's settings for `--codec NAME`: the default's, brotli's before it, or none. */
const CODEC_BY_NAME: Record<ArtifactCodec, CodecSettings> = {
  zstd: DEFAULT_CODEC.codec === 'zstd' ? DEFAULT_CODEC : { codec: 'zstd', quality: 19, lgwin: 21 },
  brotli: BROTLI_CODEC,
  none: { codec: 'none', quality: 0, lgwin: 0 },
};

/** The levels each codec accepts for `--codec-level` (zstd's non-"ultra" range, brotli's qualities). */
const LEVELS: Record<Exclude<ArtifactCodec, 'none'>, { min: number; max: number }> = {
  zstd: { min: 1, max: 19 },
  brotli: { min: 0, max: 11 },
};

/**
 * `--codec zstd|brotli|none` and `--codec-level N` → the settings; undefined → the default.
 * The level changes only the encoder's effort (a development build at zstd 3 takes seconds where
 * 19 takes minutes); devices decode every level the same way, with the same window.
 */
export function parseCodec(name: string | undefined, level?: string): CodecSettings {
  const codecName = name ?? DEFAULT_CODEC.codec;
  if (!Object.hasOwn(CODEC_BY_NAME, codecName)) {
    throw new ReleaseError(
      'ERR_RELEASE_USAGE',
      `--codec ${JSON.stringify(codecName)}: expected one of ${Object.keys(CODEC_BY_NAME).join(', ')}`,
    );
  }
  const settings = name === undefined ? DEFAULT_CODEC : CODEC_BY_NAME[codecName as ArtifactCodec];
  if (level === undefined) return settings;
  if (settings.codec === 'none') {
    throw new ReleaseError('ERR_RELEASE_USAGE', '--codec-level: --codec none has no level; drop one of them');
  }
  const range = LEVELS[settings.codec];
  const n = /^\d{1,2}$/.test(level) ? Number(level) : Number.NaN;
  if (!(n >= range.min && n <= range.max)) {
    throw new ReleaseError(
      'ERR_RELEASE_USAGE',
      `--codec-level ${JSON.stringify(level)}: ${settings.codec} takes a whole number from ${range.min} to ${range.max} ` +
        `(default ${settings.quality}; lower builds faster, higher makes smaller artifacts)`,
    );
  }
  return { ...settings, quality: n };
}

/**
 * Decode an artifact stream, refusing to produce more than `maxOutputBytes` (a hostile stream
 * must not fill memory or disk). Each decoder keeps at most its window (4 MiB at the default
 * lgwin 22; brotli allows up to 2^24 − 16, zstd here up to 2^27, libzstd's default limit) plus
 * one output chunk.
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
  if (codec !== 'brotli' && codec !== 'zstd') {
    throw new ReleaseError(
      'ERR_RELEASE_CODEC_UNSUPPORTED',
      `artifact codec ${JSON.stringify(codec)} cannot be decoded here (supported: zstd, brotli, none)`,
    );
  }
  const decoder = codec === 'zstd' ? createZstdDecompress() : createBrotliDecompress();
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
      `the ${codec} artifact does not decode after ${produced} bytes of output: ${(err as Error).message}`,
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
