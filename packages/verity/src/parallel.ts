// Level 0 (the data blocks, by far the most hashing), optionally split into P-aligned ranges
// across worker threads; small images are always hashed on the calling thread, where starting
// workers would cost more than it saves (measured in bench/run.ts).
import type { FileHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { VerityError } from './errors.js';
import type { TreeGeometry } from './geometry.js';
import type { BlockHasher, LevelLayout } from './hashing.js';
import { DEFAULT_CHUNK_BYTES, hashRange } from './hashing.js';
import type { WorkerJob, WorkerMessage } from './level-worker.js';
import type { VerityParams } from './params.js';

/** Below this much data, level 0 is hashed on the calling thread. */
export const PARALLEL_MIN_BYTES = 32 * 1024 * 1024;

/**
 * One hashing thread by default: each worker costs its own V8 isolate (~12 MiB RSS), which
 * breaks the 64 MiB budget for formatting any image size; reads already overlap hashing on
 * libuv's pool. `threads: 2` trades that memory for speed (figures in README.md).
 */
export function defaultThreads(): number {
  return 1;
}

/** Threads worth asking for when memory is not tight: one per core, at most 2. */
export function maxUsefulThreads(): number {
  return Math.min(2, availableParallelism());
}

export interface DataLevelOptions {
  dataPath: string;
  data: FileHandle;
  params: VerityParams;
  geometry: TreeGeometry;
  hasher: BlockHasher;
  /** Worker threads for level 0; 1 = hash on this thread. */
  threads: number;
  /** Force workers even for small inputs (tests of the parallel path). */
  minParallelBytes?: number;
  sink: (firstHashBlock: number, bytes: Uint8Array) => Promise<void>;
  onProgress?: (dataBlocksDone: number) => void;
}

/**
 * How to start the worker: the built `level-worker.js` directly; from the TypeScript sources
 * (tests, tsx) through a tiny bootstrap that registers tsx in the worker first, because
 * loader flags in a worker's execArgv do not reach its module loader on Node 20.
 */
function workerEntry(): { entry: string | URL; evaluate: boolean } {
  if (!import.meta.url.endsWith('.ts'))
    return { entry: new URL('./level-worker.js', import.meta.url), evaluate: false };
  // require.resolve picks tsx's CommonJS build; the worker imports its ESM twin beside it.
  const tsxApiPath = createRequire(import.meta.url)
    .resolve('tsx/esm/api')
    .replace(/\.cjs$/, '.mjs');
  const tsxApi = pathToFileURL(tsxApiPath).href;
  const worker = new URL('./level-worker.ts', import.meta.url).href;
  const code = `import(${JSON.stringify(tsxApi)}).then((api) => { api.register(); return import(${JSON.stringify(worker)}); });`;
  return { entry: code, evaluate: true };
}

/** Hash every data block into the packed leaf level, handing hash blocks to `sink`. */
export async function hashDataLevel(o: DataLevelOptions): Promise<void> {
  const { params, geometry } = o;
  const layout: LevelLayout = {
    hashBlockSize: params.hashBlockSize,
    hashesPerBlock: geometry.hashesPerBlock,
    slotSizeBytes: geometry.slotSizeBytes,
  };
  const leafBlocks = geometry.levelSizes[0] ?? 0;
  const dataBytes = params.dataBlocks * params.dataBlockSize;
  const threads = Math.max(1, Math.min(o.threads, leafBlocks));
  if (threads === 1 || dataBytes < (o.minParallelBytes ?? PARALLEL_MIN_BYTES)) {
    await hashRange({
      source: o.data,
      sourceOffsetBytes: 0,
      sourceBlockSize: params.dataBlockSize,
      firstBlock: 0,
      blockCount: params.dataBlocks,
      hasher: o.hasher,
      layout,
      chunkBytes: DEFAULT_CHUNK_BYTES,
      sink: async (first, bytes, done) => {
        await o.sink(first, bytes);
        o.onProgress?.(done);
      },
    });
    return;
  }
  const entry = workerEntry();
  const perThread = Math.ceil(leafBlocks / threads);
  const progress = new Array<number>(threads).fill(0);
  const runs: Promise<void>[] = [];
  for (let t = 0; t < threads; t++) {
    const firstLeaf = t * perThread;
    const lastLeaf = Math.min(leafBlocks, firstLeaf + perThread);
    if (firstLeaf >= lastLeaf) continue;
    const firstBlock = firstLeaf * geometry.hashesPerBlock;
    const blockCount = Math.min(params.dataBlocks, lastLeaf * geometry.hashesPerBlock) - firstBlock;
    const job: WorkerJob = {
      dataPath: o.dataPath,
      dataBlockSize: params.dataBlockSize,
      firstBlock,
      blockCount,
      algorithm: params.algorithm,
      hashType: params.hashType,
      salt: params.salt,
      layout,
      chunkBytes: DEFAULT_CHUNK_BYTES,
    };
    const report = (done: number): void => {
      progress[t] = done;
      o.onProgress?.(progress.reduce((a, b) => a + b, 0));
    };
    // The calling thread hashes the first range itself: one isolate fewer than threads.
    runs.push(
      t === 0
        ? hashRange({
            source: o.data,
            sourceOffsetBytes: 0,
            sourceBlockSize: params.dataBlockSize,
            firstBlock,
            blockCount,
            hasher: o.hasher,
            layout,
            chunkBytes: DEFAULT_CHUNK_BYTES,
            sink: async (first, bytes, done) => {
              await o.sink(first, bytes);
              report(done);
            },
          })
        : runWorker(entry, job, o.sink, report),
    );
  }
  // Wait for every range (finished or failed) so nothing still reads or writes after we return.
  const results = await Promise.allSettled(runs);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

function runWorker(
  entry: { entry: string | URL; evaluate: boolean },
  job: WorkerJob,
  sink: (firstHashBlock: number, bytes: Uint8Array) => Promise<void>,
  onProgress: (done: number) => void,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const worker = new Worker(entry.entry, {
      workerData: job,
      eval: entry.evaluate,
      execArgv: [],
      resourceLimits: { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 16 },
    });
    let writes: Promise<void> = Promise.resolve();
    let settled = false;
    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      void worker.terminate();
      reject(err);
    };
    worker.on('message', (m: WorkerMessage) => {
      if (m.kind === 'blocks') {
        writes = writes
          .then(() => sink(m.firstHashBlock, m.bytes))
          .then(() => onProgress(m.sourceBlocksDone));
        writes.catch(fail);
      } else if (m.kind === 'done') {
        writes.then(() => {
          if (!settled) {
            settled = true;
            resolve();
          }
        }, fail);
      } else {
        fail(new VerityError(m.code, m.message));
      }
    });
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (code !== 0) fail(new VerityError('ERR_VERITY_IO', `hashing worker exited with status ${code}`));
    });
  });
}
