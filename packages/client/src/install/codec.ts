// The one place that knows artifact codecs (manifest `artifact.codec`). `none` passes bytes
// through; `brotli` decompresses with node:zlib as a stream (bounded memory). Output beyond the
// signed `uncompressedSizeBytes` is refused as it arrives, so a decompression bomb stops early.
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
    // 1 MiB output chunks: few, large positional writes; memory stays bounded by the pipeline.
    chunkSize: 1024 * 1024,
    params: { [constants.BROTLI_DECODER_PARAM_LARGE_WINDOW]: 0 },
  });
  let sourceError: unknown;
  const source = Readable.from(input, { objectMode: false });
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
