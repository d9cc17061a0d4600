// Throughput and memory of FsBlobStore and S3BlobStore for one large blob, against reference
// tools measured in the same run: `sha256sum` (the hashing every put does) and `cat` (a plain
// sequential read). s3rver runs in a child process so the RSS figures are the client's alone.
// Then the same blob through an upload session (8 MiB parts sent one after the other, then
// completeUpload, which assembles and re-hashes the whole blob).
//
//   node --expose-gc --import tsx bench/run.ts [sizeMiB=256]   (or: npm run bench)

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { type BlobStore, FsBlobStore, S3BlobStore } from '../src/index.js';

const MiB = 1024 * 1024;
const sizeBytes = Number(process.argv[2] ?? 256) * MiB;
const CHUNK_BYTES = 256 * 1024;

// Incompressible, reproducible content without holding it in memory: a 1 MiB random pattern
// whose every repetition is tagged with its index.
const pattern = randomBytes(MiB);
async function* content(): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < sizeBytes; offset += CHUNK_BYTES) {
    const chunk = Buffer.from(pattern.subarray(offset % MiB, (offset % MiB) + CHUNK_BYTES));
    chunk.writeUInt32LE(offset / CHUNK_BYTES, 0);
    yield chunk;
  }
}

/** Samples RSS while `fn` runs; returns seconds and the peak RSS increase over the start. */
async function measure(fn: () => Promise<void>): Promise<{ seconds: number; peakRssDeltaMiB: number }> {
  globalThis.gc?.();
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  let ticks = 0;
  const timer = setInterval(() => {
    // With --expose-gc, collect now and then so the peak shows live memory, not garbage V8
    // has not bothered to collect yet.
    if (++ticks % 20 === 0) globalThis.gc?.();
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 5);
  const t0 = process.hrtime.bigint();
  try {
    await fn();
  } finally {
    clearInterval(timer);
  }
  peak = Math.max(peak, process.memoryUsage().rss);
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, peakRssDeltaMiB: (peak - baseline) / MiB };
}

function reference(command: string, args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(command, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`${command} failed`);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function startS3rver(dir: string): Promise<{ child: ChildProcess; endpoint: string }> {
  const bin = createRequire(import.meta.url).resolve('s3rver/bin/s3rver.js');
  const child = spawn(process.execPath, [bin, '-d', dir, '-a', '127.0.0.1', '-p', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const endpoint = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(`http://127.0.0.1:${m[1]}`);
    });
    child.once('exit', () => reject(new Error(`s3rver exited: ${out}`)));
  });
  return { child, endpoint };
}

async function run(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'abota-blobstore-bench-'));
  const refFile = join(work, 'reference.bin');
  const hash = createHash('sha256');
  const out = createWriteStream(refFile);
  for await (const chunk of content()) {
    hash.update(chunk);
    if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((r, j) => out.end((e?: Error | null) => (e ? j(e) : r())));
  const key = `sha256/${hash.digest('hex')}`;
  const mib = sizeBytes / MiB;
  const sha256sumSeconds = reference('sha256sum', [refFile]);
  const catSeconds = reference('sh', ['-c', `cat "${refFile}" > /dev/null`]);
  console.log(
    `blob: ${mib} MiB; sha256sum ${(mib / sha256sumSeconds).toFixed(0)} MiB/s, cat ${(mib / catSeconds).toFixed(0)} MiB/s`,
  );

  const s3Dir = join(work, 's3rver');
  const { child, endpoint } = await startS3rver(s3Dir);
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
  try {
    await client.send(new CreateBucketCommand({ Bucket: 'abota-bench' }));
    const stores: Array<[string, BlobStore]> = [
      ['fs', new FsBlobStore(join(work, 'fs'))],
      ['s3 (s3rver, 8 MiB parts, queue 2)', new S3BlobStore({ client, bucket: 'abota-bench' })],
    ];
    for (const [name, store] of stores) {
      const put = await measure(async () => {
        await store.put(key, content(), { sizeBytes });
      });
      const get = await measure(async () => {
        const read = await store.get(key);
        let n = 0;
        for await (const chunk of read.body) n += chunk.byteLength;
        if (n !== sizeBytes) throw new Error(`read ${n} bytes`);
      });
      console.log(
        `${name}: put ${(mib / put.seconds).toFixed(0)} MiB/s (${(sha256sumSeconds / put.seconds).toFixed(2)}× sha256sum), ` +
          `peak RSS +${put.peakRssDeltaMiB.toFixed(0)} MiB; get ${(mib / get.seconds).toFixed(0)} MiB/s ` +
          `(${(catSeconds / get.seconds).toFixed(2)}× cat), peak RSS +${get.peakRssDeltaMiB.toFixed(0)} MiB`,
      );
      await store.delete(key);
      let completeSeconds = 0;
      let partCount = 0;
      const session = await measure(async () => {
        const { uploadId, partSizeBytes } = await store.createUpload(key, { sizeBytes });
        let part: Uint8Array[] = [];
        let partBytes = 0;
        const send = async (): Promise<void> => {
          partCount++;
          const chunks = part;
          await store.uploadPart(
            uploadId,
            partCount,
            (async function* () {
              yield* chunks;
            })(),
          );
          part = [];
          partBytes = 0;
        };
        for await (const chunk of content()) {
          part.push(chunk);
          partBytes += chunk.byteLength;
          if (partBytes === partSizeBytes) await send();
        }
        if (partBytes > 0) await send();
        const t0 = process.hrtime.bigint();
        await store.completeUpload(uploadId);
        completeSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
      });
      console.log(
        `${name}: upload session of ${partCount} parts ${(mib / session.seconds).toFixed(0)} MiB/s ` +
          `(${(put.seconds / session.seconds).toFixed(2)}× put), of which completeUpload ${completeSeconds.toFixed(2)} s; ` +
          `peak RSS +${session.peakRssDeltaMiB.toFixed(0)} MiB`,
      );
      await store.delete(key);
    }
  } finally {
    client.destroy();
    child.kill();
    await rm(work, { recursive: true, force: true });
  }
}

await run();
