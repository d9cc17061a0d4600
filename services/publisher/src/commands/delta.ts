// `abota delta make|apply`: standalone delta commands (packages/delta, FORMAT.md there), used
// by benchmarks and to check a delta by hand. `apply` verifies every block against a dm-verity
// hash file when given --root-hash and --hash-file; otherwise only against the whole-image
// SHA-256 the delta itself claims (integrity, not authenticity — said in the output).
import { open, readFile, rm } from 'node:fs/promises';
import {
  applyDelta,
  type BlockVerifierLike,
  DeltaError,
  diff,
  openSourceFile,
  openTargetFile,
  readFileChunks,
  decodeHeader,
  HEADER_SIZE_BYTES,
} from '@abota/delta';
import { BlockVerifier, readParamsFromHashFile } from '@abota/verity';
import { printJson } from '../output.js';

interface MakeOptions {
  json?: boolean;
  blockSize?: string;
  quality?: string;
  sourceRootHash?: string;
  targetRootHash?: string;
}

interface ApplyOptions {
  json?: boolean;
  rootHash?: string;
  hashFile?: string;
}

function integerOption(name: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) {
    throw new DeltaError(
      'ERR_DELTA_INPUT_INVALID',
      `--${name} must be an integer in ${min}..${max}, got "${text}"`,
    );
  }
  return n;
}

export async function makeCommand(
  oldPath: string,
  newPath: string,
  outPath: string,
  o: MakeOptions,
): Promise<void> {
  const started = Date.now();
  const result = await diff({
    sourcePath: oldPath,
    targetPath: newPath,
    outPath,
    blockSize: integerOption('block-size', o.blockSize, 512, 65536) ?? 4096,
    brotliQuality: integerOption('quality', o.quality, 0, 11) ?? 11,
    ...(o.sourceRootHash === undefined ? {} : { sourceRootHash: o.sourceRootHash.toLowerCase() }),
    ...(o.targetRootHash === undefined ? {} : { targetRootHash: o.targetRootHash.toLowerCase() }),
  });
  const elapsedMs = Date.now() - started;
  if (o.json) {
    printJson({ ok: true, delta: outPath, ...result, elapsedMs });
    return;
  }
  const { header } = result;
  process.stdout.write(
    `delta ${outPath}: ${result.payloadSizeBytes} bytes for a ${header.target.sizeBytes}-byte target ` +
      `(${((100 * result.payloadSizeBytes) / Math.max(1, header.target.sizeBytes)).toFixed(3)}%), ` +
      `${header.opCount} ops (zero ${result.opCounts.zero}, copy ${result.opCounts.sourceCopy}, ` +
      `replace ${result.opCounts.replace}, patch ${result.opCounts.patch}) in ${elapsedMs} ms\n`,
  );
}

/** A dm-verity BlockVerifier from a veritysetup hash file (superblock at byte 0). */
async function verityVerifier(hashFile: string, rootHash: string): Promise<BlockVerifier> {
  const fh = await open(hashFile, 'r');
  let params: Awaited<ReturnType<typeof readParamsFromHashFile>>;
  try {
    params = await readParamsFromHashFile(fh, hashFile, 0);
  } finally {
    await fh.close();
  }
  return BlockVerifier.fromHashFile(await readFile(hashFile), params, rootHash.toLowerCase());
}

async function readHeader(deltaPath: string) {
  const fh = await open(deltaPath, 'r').catch((err: unknown) => {
    throw new DeltaError('ERR_DELTA_IO', `cannot open delta ${deltaPath}: ${(err as Error).message}`, {
      cause: err,
    });
  });
  try {
    const buf = Buffer.alloc(HEADER_SIZE_BYTES);
    const { bytesRead } = await fh.read(buf, 0, HEADER_SIZE_BYTES, 0);
    return decodeHeader(buf.subarray(0, bytesRead)).header;
  } finally {
    await fh.close();
  }
}

export async function applyCommand(
  oldPath: string,
  deltaPath: string,
  outPath: string,
  o: ApplyOptions,
): Promise<void> {
  if ((o.rootHash === undefined) !== (o.hashFile === undefined)) {
    throw new DeltaError(
      'ERR_DELTA_INPUT_INVALID',
      '--root-hash and --hash-file go together (the trusted root and its tree)',
    );
  }
  const started = Date.now();
  const header = await readHeader(deltaPath);
  let verifier: BlockVerifierLike;
  let verifiedBy: string;
  if (o.rootHash !== undefined && o.hashFile !== undefined) {
    const v = await verityVerifier(o.hashFile, o.rootHash);
    if (
      v.params.dataBlockSize !== header.blockSize ||
      v.params.dataBlocks * v.params.dataBlockSize !== header.target.sizeBytes
    ) {
      throw new DeltaError(
        'ERR_DELTA_WRONG_TARGET',
        `the hash file covers ${v.params.dataBlocks} blocks of ${v.params.dataBlockSize} bytes; the delta produces ${header.target.sizeBytes} bytes in ${header.blockSize}-byte blocks`,
      );
    }
    verifier = v;
    verifiedBy = 'dm-verity';
  } else {
    // No trusted tree: every block passes here and the whole-image SHA-256 from the delta
    // header is the only check (catches corruption, not a forged delta).
    verifier = { assertBlock() {} };
    verifiedBy = 'delta-sha256';
  }
  const source = await openSourceFile(oldPath);
  const target = await openTargetFile(outPath, header.target.sizeBytes);
  let ok = false;
  try {
    const result = await applyDelta({
      payload: readFileChunks(deltaPath),
      source,
      target,
      verifier,
      ...(o.rootHash === undefined ? {} : { expectedTargetRootHash: o.rootHash.toLowerCase() }),
    });
    ok = true;
    const elapsedMs = Date.now() - started;
    if (o.json) {
      printJson({
        ok: true,
        output: outPath,
        verifiedBy,
        targetSizeBytes: header.target.sizeBytes,
        opsApplied: result.opsApplied,
        blocksWritten: result.blocksWritten,
        payloadBytesRead: result.payloadBytesRead,
        elapsedMs,
        maxRssBytes: process.resourceUsage().maxRSS * 1024,
      });
    } else {
      process.stdout.write(
        `wrote ${outPath}: ${header.target.sizeBytes} bytes, ${result.blocksWritten} blocks verified by ${verifiedBy}, ${result.opsApplied} ops in ${elapsedMs} ms\n`,
      );
    }
  } finally {
    await source.close();
    await target.close();
    // A partial target must not be mistaken for a good image.
    if (!ok) await rm(outPath, { force: true });
  }
}
