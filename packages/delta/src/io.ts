// The I/O seams of apply: positional reads of the source image, positional writes of the
// target, and per-block verification. Files are the shipped implementation; the client
// passes its slot devices through the same interfaces.
import { type FileHandle, open } from 'node:fs/promises';
import { DeltaError } from './errors.js';

/** Read-only positional access to the source image (the active slot). */
export interface SourceReader {
  readonly sizeBytes: number;
  /**
   * Fill `into` with the bytes at `offset` (callers stay inside `sizeBytes`). The caller owns and
   * reuses `into`: apply allocates its buffers once, so its memory does not depend on image size.
   */
  read(offset: number, into: Uint8Array): Promise<void>;
}

/** Positional writes into the target (the inactive slot). Never read back as trusted input. */
export interface TargetWriter {
  write(offset: number, data: Uint8Array): Promise<void>;
}

/**
 * What apply needs from @abota/verity's `BlockVerifier` (docs/CONTRACTS.md): throw when the
 * block at `blockIndex` does not hash to the target's dm-verity tree.
 */
export interface BlockVerifierLike {
  assertBlock(blockIndex: number, data: Uint8Array): void;
}

export interface FileSourceReader extends SourceReader {
  close(): Promise<void>;
}

export interface FileTargetWriter extends TargetWriter {
  /** fsync and close. */
  close(): Promise<void>;
}

async function readExactly(fh: FileHandle, offset: number, buf: Uint8Array, path: string): Promise<void> {
  const length = buf.length;
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
    if (bytesRead === 0) {
      throw new DeltaError(
        'ERR_DELTA_IO',
        `${path}: unexpected end of file reading ${length} bytes at byte ${offset}`,
      );
    }
    done += bytesRead;
  }
}

export async function openSourceFile(path: string): Promise<FileSourceReader> {
  const fh = await open(path, 'r').catch((err: unknown) => {
    throw new DeltaError('ERR_DELTA_IO', `cannot open source image ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  });
  const { size } = await fh.stat();
  return {
    sizeBytes: size,
    read: (offset, into) => readExactly(fh, offset, into, path),
    close: () => fh.close(),
  };
}

/** Open (create or truncate) a target file of exactly `sizeBytes`. */
export async function openTargetFile(path: string, sizeBytes: number): Promise<FileTargetWriter> {
  const fh = await open(path, 'w').catch((err: unknown) => {
    throw new DeltaError('ERR_DELTA_IO', `cannot open target ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  });
  await fh.truncate(sizeBytes);
  return {
    async write(offset, data) {
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await fh.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
    },
    async close() {
      await fh.sync();
      await fh.close();
    },
  };
}

/**
 * Read a file as a stream of chunks (for feeding a payload file to apply). One buffer is reused:
 * a chunk is valid until the next one is requested (applyDelta copies what it keeps).
 */
export async function* readFileChunks(
  path: string,
  start = 0,
  chunkBytes = 64 * 1024,
): AsyncIterable<Uint8Array> {
  const fh = await open(path, 'r').catch((err: unknown) => {
    throw new DeltaError('ERR_DELTA_IO', `cannot open delta ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  });
  try {
    let offset = start;
    const buf = Buffer.allocUnsafe(chunkBytes);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, chunkBytes, offset);
      if (bytesRead === 0) return;
      offset += bytesRead;
      yield buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}
