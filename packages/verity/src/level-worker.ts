// Worker thread entry: hashes one P-aligned range of data blocks into packed leaf hash blocks
// and posts them to the parent (see parallel.ts). Reads the data with its own file handle.
import { open } from 'node:fs/promises';
import { parentPort, workerData } from 'node:worker_threads';
import { VerityError, type VerityErrorCode } from './errors.js';
import { BlockHasher, hashRange } from './hashing.js';
import type { LevelLayout } from './hashing.js';

// What parallel.ts sends a worker and hears back (defined here: the worker does not import parallel.ts).
export interface WorkerJob {
  dataPath: string;
  dataBlockSize: number;
  firstBlock: number;
  blockCount: number;
  algorithm: string;
  hashType: 0 | 1;
  salt: Uint8Array;
  layout: LevelLayout;
  chunkBytes: number;
}

export type WorkerMessage =
  | { kind: 'blocks'; firstHashBlock: number; bytes: Uint8Array; sourceBlocksDone: number }
  | { kind: 'done' }
  | { kind: 'error'; code: VerityErrorCode; message: string };

const job = workerData as WorkerJob;
const port = parentPort!;
const post = (m: WorkerMessage): void => port.postMessage(m);

try {
  const fh = await open(job.dataPath, 'r');
  try {
    await hashRange({
      source: fh,
      sourceOffsetBytes: 0,
      sourceBlockSize: job.dataBlockSize,
      firstBlock: job.firstBlock,
      blockCount: job.blockCount,
      hasher: new BlockHasher(job.algorithm, job.hashType, job.salt),
      layout: job.layout,
      chunkBytes: job.chunkBytes,
      sink: (firstHashBlock, bytes, sourceBlocksDone) => {
        post({ kind: 'blocks', firstHashBlock, bytes: new Uint8Array(bytes), sourceBlocksDone });
      },
    });
  } finally {
    await fh.close();
  }
  post({ kind: 'done' });
} catch (err) {
  const code = err instanceof VerityError ? err.code : 'ERR_VERITY_IO';
  post({ kind: 'error', code, message: (err as Error).message });
}
