// Bench child: runs one diff or apply from the compiled package in a fresh plain-node process
// (no tsx loader) so its peak RSS is what a device would see. Prints one JSON line.
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';

const [mode, buildDir, ...args] = process.argv.slice(2);
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
  const r = await delta.applyDelta({
    payload: delta.readFileChunks(deltaPath),
    source,
    target,
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
