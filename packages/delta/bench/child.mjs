// Bench child: runs one diff or apply from the compiled package in a fresh plain-node process
// (no tsx loader) so its peak RSS is what a device would see. Prints one JSON line.
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

const [mode, buildDir, ...args] = process.argv.slice(2);

function bufferCollector(everyBytes) {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc');
  let since = 0;
  return (bytes) => {
    since += bytes;
    if (since >= everyBytes) {
      since = 0;
      gc({ type: 'minor' });
    }
  };
}
const delta = await import(pathToFileURL(`${buildDir}/delta/index.js`).href);
const started = performance.now();
let result = {};
if (mode === 'make') {
  const [sourcePath, targetPath, outPath] = args;
  const r = await delta.diff({ sourcePath, targetPath, outPath });
  result = {
    payloadSizeBytes: r.payloadSizeBytes,
    opCounts: r.opCounts,
    patchLiteralBytes: r.patchLiteralBytes,
  };
} else if (mode === 'apply') {
  const [sourcePath, deltaPath, outPath, hashPath, rootHash] = args;
  const verity = await import(pathToFileURL(`${buildDir}/verity/index.js`).href);
  const { open } = await import('node:fs/promises');
  const fh = await open(hashPath, 'r');
  const params = await verity.readParamsFromHashFile(fh, hashPath, 0);
  await fh.close();
  const verifier = verity.BlockVerifier.fromHashFile(await readFile(hashPath), params, rootHash);
  const source = await delta.openSourceFile(sourcePath);
  const dh = await open(deltaPath, 'r');
  const head = Buffer.alloc(delta.HEADER_SIZE_BYTES);
  await dh.read(head, 0, head.length, 0);
  await dh.close();
  const { header } = delta.decodeHeader(head);
  const target = await delta.openTargetFile(outPath, header.target.sizeBytes);
  // As the device's agent runs apply (packages/client src/install/delta-install.ts, buffer-gc.ts):
  // a minor GC every 4 MiB of payload plus output frees dead stream Buffers that V8, scheduling
  // by JS heap allocation, would otherwise let pile up in native memory.
  const collect = process.env.ABOTA_BENCH_COLLECT === '1' ? bufferCollector(4 * 1024 * 1024) : () => {};
  const payload = (async function* () {
    for await (const chunk of delta.readFileChunks(deltaPath)) {
      collect(chunk.length);
      yield chunk;
    }
  })();
  const r = await delta.applyDelta({
    payload,
    source,
    target: {
      write: (offset, data) => {
        collect(data.length);
        return target.write(offset, data);
      },
    },
    verifier,
    expectedTargetRootHash: rootHash,
  });
  await source.close();
  await target.close();
  result = { blocksWritten: r.blocksWritten };
} else if (mode !== 'baseline') {
  throw new Error(`unknown mode ${mode}`);
}
const elapsedMs = Math.round(performance.now() - started);
process.stdout.write(
  `${JSON.stringify({ ...result, elapsedMs, maxRssBytes: process.resourceUsage().maxRSS * 1024 })}\n`,
);
