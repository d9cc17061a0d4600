// The one place that knows artifact codecs (manifest `artifact.codec`). `none` passes bytes
// through; `brotli` decompresses with node:zlib as a stream (bounded memory: the decoder's ring
// buffer is the stream's window, at most 2^MAX_BROTLI_WINDOW_BITS). Output beyond the signed
// `uncompressedSizeBytes` is refused as it arrives, so a decompression bomb stops early.
import { Readable } from 'node:stream';
import { constants, createBrotliDecompress } from 'node:zlib';
import { ClientError } from '../errors.js';

export const SUPPORTED_CODECS = ['none', 'brotli'] as const;
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
 * Whether a download of this codec can restart at a compressed byte offset. Brotli cannot (the
 * decoder state at an offset is not serialisable through node:zlib), so a resumed brotli install
 * re-reads the artifact from its start and skips writing blocks already verified on the slot.
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
const BROTLI_OUTPUT_CHUNK_BYTES = 64 * 1024;

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
  const decompressor = createBrotliDecompress({
    chunkSize: BROTLI_OUTPUT_CHUNK_BYTES,
    params: { [constants.BROTLI_DECODER_PARAM_LARGE_WINDOW]: 0 },
  });
  let sourceError: unknown;
  const source = Readable.from(brotliWithinWindow(input, where), { objectMode: false });
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
          `${where}: brotli artifact decompresses to more than the signed ${maxOutputBytes} bytes`,
        );
      }
      yield chunk;
    }
  } catch (e) {
    // Errors of the source (network, file) pass through unchanged; decoder errors mean a broken artifact.
    if (e instanceof ClientError || e === sourceError) throw e;
    throw new ClientError(
      'ERR_INSTALL_ARTIFACT_CORRUPT',
      `${where}: brotli stream is corrupt: ${(e as Error).message}`,
      {
        cause: e,
      },
    );
  } finally {
    source.destroy();
    decompressor.destroy();
  }
}
