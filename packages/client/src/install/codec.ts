// The one place that knows artifact codecs (manifest `artifact.codec`). `none` passes bytes
// through; `zstd` (the publisher's default since Node 24) and `brotli` (releases built before)
// decompress with node:zlib as a stream (bounded memory: the decoder's buffer is the stream's
// window, at most 2^MAX_ZSTD_WINDOW_BITS / 2^MAX_BROTLI_WINDOW_BITS). Output beyond the signed
// `uncompressedSizeBytes` is refused as it arrives, so a decompression bomb stops early.
import { Readable, type Transform } from 'node:stream';
import { constants, createBrotliDecompress, createZstdDecompress } from 'node:zlib';
import { ClientError } from '../errors.js';

export const SUPPORTED_CODECS = ['none', 'zstd', 'brotli'] as const;
export type ArtifactCodec = (typeof SUPPORTED_CODECS)[number];

export function assertSupportedCodec(codec: string, where: string): asserts codec is ArtifactCodec {
  if (!(SUPPORTED_CODECS as readonly string[]).includes(codec)) {
    throw new ClientError(
      'ERR_INSTALL_UNSUPPORTED_CODEC',
      `${where}: artifact codec "${codec}" is not supported by this agent (supported: ${SUPPORTED_CODECS.join(', ')})`,
    );
  }
}

/**
 * Whether a download of this codec can restart at a compressed byte offset. zstd and brotli
 * cannot (the decoder state at an offset is not serialisable through node:zlib), so a resumed
 * compressed install re-reads the artifact from its start and skips writing blocks already
 * verified on the slot.
 */
export function canResumeMidStream(codec: ArtifactCodec): boolean {
  return codec === 'none';
}

/**
 * The largest brotli window (log2 of bytes) this agent decodes: 4 MiB. The decoder allocates
 * its ring buffer at the stream's window size, so this is the decoder's memory bound; lgwin 24
 * (16 MiB) would be a quarter of the agent's 64 MiB budget for 2.7 % less download on a real
 * rootfs (README "Memory"). `abota release build` writes lgwin 22.
 */
export const MAX_BROTLI_WINDOW_BITS = 22;

/**
 * The largest zstd window (log2 of bytes) this agent decodes: 4 MiB, the same bound as brotli's.
 * The decoder holds the window plus two 128 KiB blocks; libzstd refuses a frame that declares a
 * larger window (or, single-segment, a larger content size) before allocating it
 * (ZSTD_d_windowLogMax). `abota release build` writes windowLog 22.
 */
export const MAX_ZSTD_WINDOW_BITS = 22;

/**
 * The window (WBITS) a brotli stream declares in its first byte (RFC 7932 §9.1), or undefined
 * for the reserved pattern (used by the non-standard "large window" extension).
 */
export function brotliWindowBits(firstByte: number): number | undefined {
  if ((firstByte & 1) === 0) return 16;
  const n = (firstByte >> 1) & 7;
  if (n !== 0) return 17 + n;
  const m = (firstByte >> 4) & 7;
  if (m === 0) return 17;
  return m === 1 ? undefined : 8 + m;
}

/** Passes `input` on after checking the stream header's window against MAX_BROTLI_WINDOW_BITS. */
async function* brotliWithinWindow(
  input: AsyncIterable<Uint8Array>,
  where: string,
): AsyncGenerator<Uint8Array, void, undefined> {
  let checked = false;
  for await (const chunk of input) {
    if (!checked && chunk.byteLength > 0) {
      const bits = brotliWindowBits(chunk[0]!);
      if (bits === undefined || bits > MAX_BROTLI_WINDOW_BITS) {
        throw new ClientError(
          'ERR_INSTALL_UNSUPPORTED_CODEC',
          `${where}: the brotli artifact needs a ${bits === undefined ? 'large (non-RFC 7932)' : `2^${bits}-byte`} window; this agent decodes windows up to 2^${MAX_BROTLI_WINDOW_BITS} (${2 ** (MAX_BROTLI_WINDOW_BITS - 20)} MiB) — rebuild the release with lgwin ≤ ${MAX_BROTLI_WINDOW_BITS} (abota release build's default)`,
        );
      }
      checked = true;
    }
    yield chunk;
  }
}

/**
 * Decoder output chunk: small, because every chunk is a fresh Buffer that lives until a GC
 * (buffer-gc.ts), and the writer copies it into its batch anyway.
 */
const OUTPUT_CHUNK_BYTES = 64 * 1024;

/** The decoder of one artifact stream, and what it does to its input before decoding it. */
function decoderFor(
  codec: 'zstd' | 'brotli',
  input: AsyncIterable<Uint8Array>,
  where: string,
): { decompressor: Transform; source: AsyncIterable<Uint8Array> } {
  if (codec === 'zstd') {
    return {
      decompressor: createZstdDecompress({
        chunkSize: OUTPUT_CHUNK_BYTES,
        params: { [constants.ZSTD_d_windowLogMax]: MAX_ZSTD_WINDOW_BITS },
      }),
      source: input,
    };
  }
  return {
    decompressor: createBrotliDecompress({
      chunkSize: OUTPUT_CHUNK_BYTES,
      params: { [constants.BROTLI_DECODER_PARAM_LARGE_WINDOW]: 0 },
    }),
    source: brotliWithinWindow(input, where),
  };
}

/** A decoder error as the installer reports it: a window over the bound, or a broken artifact. */
function decoderError(codec: 'zstd' | 'brotli', e: unknown, where: string): ClientError {
  if ((e as { code?: unknown }).code === 'ZSTD_error_frameParameter_windowTooLarge') {
    return new ClientError(
      'ERR_INSTALL_UNSUPPORTED_CODEC',
      `${where}: the zstd artifact declares a window larger than this agent decodes, 2^${MAX_ZSTD_WINDOW_BITS} (${2 ** (MAX_ZSTD_WINDOW_BITS - 20)} MiB) — rebuild the release with windowLog ≤ ${MAX_ZSTD_WINDOW_BITS} (abota release build's default)`,
      { cause: e },
    );
  }
  return new ClientError(
    'ERR_INSTALL_ARTIFACT_CORRUPT',
    `${where}: ${codec} stream is corrupt: ${(e as Error).message}`,
    {
      cause: e,
    },
  );
}

export async function* decode(
  codec: ArtifactCodec,
  input: AsyncIterable<Uint8Array>,
  maxOutputBytes: number,
  where: string,
): AsyncGenerator<Uint8Array, void, undefined> {
  if (codec === 'none') {
    yield* input;
    return;
  }
  const { decompressor, source: checked } = decoderFor(codec, input, where);
  let sourceError: unknown;
  const source = Readable.from(checked, { objectMode: false });
  source.on('error', (e) => {
    sourceError = e;
    decompressor.destroy(e);
  });
  source.pipe(decompressor);
  let total = 0;
  try {
    for await (const chunk of decompressor as AsyncIterable<Buffer>) {
      total += chunk.byteLength;
      if (total > maxOutputBytes) {
        throw new ClientError(
          'ERR_INSTALL_ARTIFACT_SIZE',
          `${where}: ${codec} artifact decompresses to more than the signed ${maxOutputBytes} bytes`,
        );
      }
      yield chunk;
    }
  } catch (e) {
    // Errors of the source (network, file) pass through unchanged; decoder errors mean a broken artifact.
    if (e instanceof ClientError || e === sourceError) throw e;
    throw decoderError(codec, e, where);
  } finally {
    source.destroy();
    decompressor.destroy();
  }
}
