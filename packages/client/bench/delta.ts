// Delta install vs full install of the same release, measured on one machine: a 512 MiB rootfs
// (ABOTA_BENCH_MIB), v2 = v1 with new, zeroed and moved bytes in 8 places, a real delta
// from @abota/delta's diff, the release's brotli artifact, blobs served over loopback HTTP with
// Range. The installer runs in its own process (the same Installer the agent uses, every block
// verified); the parent samples its peak RSS (VmHWM) and counts the bytes it downloaded. The
// child runs with the agent unit's NODE_OPTIONS and MALLOC_ARENA_MAX, but from source through the
// tsx loader, so its absolute RSS is above the shipped bin's (test/bench/run.ts): compare rows.
//
// npx tsx --conditions=@abota/source bench/delta.ts   (ABOTA_BENCH_MIB=512, ABOTA_BENCH_UNIT_ENV=0)
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { diff } from '@abota/delta';
import { makeTempDir } from '@abota/testkit';
import { formatVerity } from '@abota/verity';
import {
  configOf,
  makeDevice,
  makeRelease,
  makeTrust,
  sha256File,
  writeImage,
} from '../test/release-fixture.js';

const MIB = 1024 * 1024;
const imageMiB = Number(process.env['ABOTA_BENCH_MIB'] ?? 512);

if (process.env['ABOTA_BENCH_CHILD'] !== undefined) {
  await child(JSON.parse(process.env['ABOTA_BENCH_CHILD']) as ChildArgs);
} else {
  await parent();
}

interface ChildArgs {
  config: unknown;
  trustRoot: unknown;
  serverUrl: string;
  manifestJws: string;
  artifacts: Record<string, string>;
  deltas: unknown[];
  activeRootHash: string | undefined;
}

async function child(a: ChildArgs): Promise<void> {
  // Where the memory is at its peak (stderr): V8 heap, external, ArrayBuffers, RSS.
  const peak = { rss: 0, heapUsed: 0, heapTotal: 0, external: 0, arrayBuffers: 0 };
  const { readFileSync } = await import('node:fs');
  let anonFile = '';
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    if (m.rss > peak.rss) {
      Object.assign(peak, m);
      const st = readFileSync('/proc/self/status', 'utf8');
      anonFile = `RssAnon ${/RssAnon:\s+(\d+)/.exec(st)?.[1]} kB RssFile ${/RssFile:\s+(\d+)/.exec(st)?.[1]} kB`;
    }
  }, 10);
  sampler.unref();
  process.once('beforeExit', () => {
    clearInterval(sampler);
    const mib = (n: number) => `${(n / MIB).toFixed(1)}`;
    process.stderr.write(
      `  at the RSS peak: rss ${mib(peak.rss)} heapTotal ${mib(peak.heapTotal)} heapUsed ${mib(peak.heapUsed)} external ${mib(peak.external)} arrayBuffers ${mib(peak.arrayBuffers)} MiB, ${anonFile}\n`,
    );
  });
  const { Installer } = await import('../src/install/installer.js');
  const { ServerReleaseSource } = await import('../src/install/release-source.js');
  const { UpdateServerClient } = await import('../src/http/server-api.js');
  const { DeviceKey } = await import('../src/http/device-auth.js');
  const { FileBootControl } = await import('../src/bootctl/index.js');
  const { parseAgentConfig } = await import('../src/config.js');
  const { verifyTrustRoot } = await import('@abota/manifest');
  const config = parseAgentConfig(a.config);
  const client = new UpdateServerClient({
    baseUrl: a.serverUrl,
    audience: 'abota',
    tokenLifetimeSeconds: 60,
    key: await DeviceKey.generate(join(config.dataDir, 'key.json')),
    deviceId: 'bench',
  });
  const installer = new Installer({
    config,
    bootControl: new FileBootControl({
      statePath: (config.bootControl as { statePath: string }).statePath,
      cmdlinePath: config.kernelCmdlinePath,
    }),
    trustRoot: await verifyTrustRoot(JSON.stringify(a.trustRoot)),
    clock: () => new Date(),
    deviceFacts: async () => ({
      product: config.product,
      hardware: config.hardware,
      currentVersion: '1.0.0',
      securityVersionFloor: 1,
    }),
    bootId: async () => 'bench-boot',
    ...(a.activeRootHash !== undefined
      ? { activeRootHashes: async () => ({ rootfs: a.activeRootHash! }) }
      : {}),
  });
  const j = await installer.install(
    new ServerReleaseSource({
      manifestJws: a.manifestJws,
      artifacts: a.artifacts,
      deltas: a.deltas as never,
      client,
    }),
  );
  process.stdout.write(`${JSON.stringify(j.images['rootfs'])}\n`);
}

async function parent(): Promise<void> {
  const work = await makeTempDir('abota-bench-delta-');
  const log = (s: string) => process.stdout.write(`${s}\n`);
  try {
    log(`delta install bench: ${imageMiB} MiB rootfs, work dir ${work}`);
    const started = performance.now();
    const trust = await makeTrust();
    const v1 = join(work, 'v1.img');
    await writeImage(v1, imageMiB * MIB, 5);
    const v1RootHash = (await formatVerity({ dataPath: v1, hashPath: join(work, 'v1.hash') })).rootHash;
    const v2 = join(work, 'v2.img');
    await copyFile(v1, v2);
    // In 8 places: `newKiB` of new (random) bytes, 1 MiB zeroed, 2 MiB moved from elsewhere in v1.
    // New bytes are kept small: diff's matcher slows down badly on changed data against a source
    // this large (about 1 MiB of random bytes in 10 minutes at 512 MiB, against 30 s at 128 MiB).
    const newKiB = Number(process.env['ABOTA_BENCH_NEW_KIB'] ?? (imageMiB > 128 ? 32 : 2048));
    const v1Bytes = await open(v1, 'r');
    const fh = await open(v2, 'r+');
    for (let i = 0; i < 8; i++) {
      const at = Math.floor(((i + 0.5) * imageMiB) / 8) * MIB;
      await fh.write(randomBytes(newKiB * 1024), 0, newKiB * 1024, at);
      await fh.write(Buffer.alloc(MIB), 0, MIB, at + 2 * MIB);
      const moved = Buffer.alloc(2 * MIB);
      await v1Bytes.read(moved, 0, 2 * MIB, ((i * 3 + 1) % 8) * Math.floor(imageMiB / 8) * MIB);
      await fh.write(moved, 0, 2 * MIB, at + 3 * MIB);
    }
    await fh.close();
    await v1Bytes.close();
    const rel = await makeRelease({
      dir: join(work, 'rel'),
      trust,
      version: '2.0.0',
      securityVersion: 2,
      codec: 'brotli',
      rootfsImagePath: v2,
    });
    const img = rel.manifest.images.rootfs;
    const deltaPath = join(work, 'v1-v2.delta');
    log(`release built (${((performance.now() - started) / 1000).toFixed(0)} s)`);
    const t0 = performance.now();
    let lastProgressLog = 0;
    await diff({
      sourcePath: v1,
      targetPath: v2,
      outPath: deltaPath,
      blockSize: 4096,
      sourceRootHash: v1RootHash,
      targetRootHash: img.verity.rootHash,
      brotliQuality: 9,
      onProgress: (p) => {
        const now = performance.now();
        if (now - lastProgressLog < 10_000) return;
        lastProgressLog = now;
        log(`  diff ${p.phase}: ${(p.doneBytes / MIB).toFixed(0)} of ${(p.totalBytes / MIB).toFixed(0)} MiB`);
      },
    });
    log(`diff: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const deltaHex = await sha256File(deltaPath);
    await copyFile(deltaPath, join(rel.dir, 'blobs', 'sha256', deltaHex));
    const deltaBytes = (await stat(deltaPath)).size;

    const server = createServer((req, res) => {
      void (async () => {
        const hex = /^\/blobs\/([0-9a-f]{64})$/.exec(req.url ?? '')?.[1];
        if (hex === undefined) return void res.writeHead(404).end();
        const path = join(rel.dir, 'blobs', 'sha256', hex);
        const size = (await stat(path)).size;
        const r = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
        const start = r ? Number(r[1]) : 0;
        const end = r && r[2] !== '' ? Number(r[2]) : size - 1;
        res.writeHead(r ? 206 : 200, {
          'content-length': end - start + 1,
          ...(r ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
        });
        createReadStream(path, { start, end }).pipe(res);
      })();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const serverUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const url = (digest: string) => `/blobs/${digest.slice(7)}`;
    const args = {
      trustRoot: JSON.parse(trust.signedRootText) as unknown,
      serverUrl,
      manifestJws: await readFile(join(rel.dir, 'manifest.jws'), 'utf8'),
      artifacts: Object.fromEntries(
        [img.artifact.digest, img.verity.hashTree.digest].map((d) => [d, url(d)]),
      ),
      deltas: [
        {
          image: 'rootfs',
          digest: `sha256:${deltaHex}`,
          sizeBytes: deltaBytes,
          url: url(`sha256:${deltaHex}`),
          sourceVersion: '1.0.0',
          sourceRootHash: v1RootHash,
        },
      ],
    };

    const rows: string[] = [];
    for (const method of ['delta', 'full'] as const) {
      const dev = await makeDevice(join(work, `device-${method}`), trust);
      await copyFile(v1, dev.slotFiles.A);
      await writeFile(dev.slotFiles.B, '');
      const config = configOf(dev);
      const t = performance.now();
      const proc = spawn(
        process.execPath,
        ['--conditions=@abota/source', '--import', 'tsx', import.meta.filename],
        {
          env: {
            ...process.env,
            // The agent unit's environment (infra/systemd/abota-agent.service); none with ABOTA_BENCH_UNIT_ENV=0.
            ...(process.env['ABOTA_BENCH_UNIT_ENV'] === '0'
              ? {}
              : { NODE_OPTIONS: '--max-semi-space-size=1 --jitless', MALLOC_ARENA_MAX: '1' }),
            ABOTA_BENCH_CHILD: JSON.stringify({
              ...args,
              config: dev.configInput,
              activeRootHash: method === 'delta' ? v1RootHash : undefined,
            }),
          },
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      let peakKiB = 0;
      const sampler = setInterval(() => {
        void readFile(`/proc/${proc.pid}/status`, 'utf8')
          .then((s) => {
            peakKiB = Math.max(peakKiB, Number(/VmHWM:\s+(\d+) kB/.exec(s)?.[1] ?? 0));
          })
          .catch(() => {});
      }, 20);
      let out = '';
      proc.stdout.on('data', (c: Buffer) => {
        out += c.toString();
      });
      const code = await new Promise<number | null>((r) => proc.on('exit', r));
      clearInterval(sampler);
      if (code !== 0) throw new Error(`${method} install exited ${code}`);
      const seconds = (performance.now() - t) / 1000;
      const p = JSON.parse(out.trim().split('\n').at(-1)!) as { method: string; downloadedBytes: number };
      if (p.method !== method) throw new Error(`expected a ${method} install, the journal says ${p.method}`);
      if ((await sha256File(dev.slotFiles.B)) !== (await sha256File(rel.imagePath)))
        throw new Error(`${method}: slot B differs from the release image`);
      if ((await sha256File(dev.slotFiles.A)) !== (await sha256File(v1)))
        throw new Error(`${method}: slot A changed`);
      rows.push(
        `| ${method} | ${(p.downloadedBytes / MIB).toFixed(1)} MiB | ${seconds.toFixed(1)} s | ${(peakKiB / 1024).toFixed(0)} MiB |`,
      );
      void config;
    }
    server.close();
    log(
      `\nrelease: ${imageMiB} MiB image, brotli artifact ${(img.artifact.sizeBytes / MIB).toFixed(1)} MiB, delta ${(deltaBytes / MIB).toFixed(1)} MiB`,
    );
    log('| install | downloaded | time (incl. tsx start) | peak RSS (VmHWM, tsx loader included) |');
    log('| --- | --- | --- | --- |');
    for (const r of rows) log(r);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
