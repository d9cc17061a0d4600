// Agent install of a 512 MiB rootfs, measured end to end: a real server (PGlite, loopback HTTP),
// the agent as its own process from the build (`node packages/simulator/dist/agent-process.js
// check`, no tsx loader in the measured process), peak RSS from /proc/<pid>/status VmHWM.
// Reference in the same run on the same image: the release's brotli artifact decompressed to a
// file with node:zlib (no `brotli` CLI here; same C decoder) followed by
// `veritysetup verify` — the unverified two-step a shell script would do.
//
// npx tsx --conditions=@abota/source bench/run.ts   (after `npm run build`; ABOTA_BENCH_MIB=512)
import { spawn, spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createBrotliDecompress } from 'node:zlib';
import { main as abota } from '@abota/publisher';
import { buildRootfsImage, LabServer, SimulatedVm } from '@abota/simulator';
import { makeTempDir } from '@abota/testkit';

const MIB = 1024 * 1024;
const imageMiB = Number(process.env['ABOTA_BENCH_MIB'] ?? 512);
const RSS_LIMIT_MIB = 64;

async function quietly<T>(fn: () => Promise<T>): Promise<T> {
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    return await fn();
  } finally {
    process.stdout.write = write;
  }
}

async function cli(args: string[]): Promise<void> {
  const code = await quietly(() => abota(args));
  process.exitCode = undefined;
  if (code !== 0) throw new Error(`abota ${args.join(' ')} exited ${code}`);
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - t };
}

/** Peak RSS (VmHWM, KiB) and current thread count of a running process. */
async function procStatus(pid: number): Promise<{ peakKiB: number; threads: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
  const threads = /Threads:\s+(\d+)/.exec(status);
  return { peakKiB: hwm ? Number(hwm[1]) : 0, threads: threads ? Number(threads[1]) : 0 };
}

const work = await makeTempDir('abota-bench-install-');
const log = (s: string) => process.stdout.write(`${s}\n`);
try {
  log(`abota install bench: ${imageMiB} MiB rootfs, work dir ${work}`);
  const keys = join(work, 'keys');
  await cli(['keys', 'init', keys]);
  await mkdir(join(work, 'releases'));
  const small = await buildRootfsImage({ path: join(work, 'v1.img'), version: '1.0.0', sizeBytes: 4 * MIB });
  const big = await timed(() =>
    buildRootfsImage({
      path: join(work, 'v2.img'),
      version: '2.0.0',
      sizeBytes: imageMiB * MIB,
      fillFraction: 0.3,
    }),
  );
  log(`image     ${imageMiB} MiB ${big.value.kind}, 30 % filled (${(big.ms / 1000).toFixed(1)} s to make)`);
  const common = [
    '--product',
    'bench',
    '--compatible',
    'hw',
    '--security-version',
    '1',
    '--expires',
    '7d',
    '--keys',
    keys,
  ];
  await cli([
    'release',
    'build',
    '--image',
    small.path,
    '--version',
    '1.0.0',
    ...common,
    '--out',
    join(work, 'releases', 'v1'),
  ]);
  const build = await timed(() =>
    cli([
      'release',
      'build',
      '--image',
      big.value.path,
      '--version',
      '2.0.0',
      ...common,
      '--out',
      join(work, 'releases', 'v2'),
    ]),
  );
  const manifest = JSON.parse(await readFile(join(work, 'releases', 'v2', 'manifest.json'), 'utf8'));
  const rootfs = manifest.images.rootfs;
  log(
    `release   brotli ${(rootfs.artifact.sizeBytes / MIB).toFixed(1)} MiB, hash tree ${(rootfs.verity.hashTree.sizeBytes / MIB).toFixed(2)} MiB (${(build.ms / 1000).toFixed(1)} s to build)`,
  );

  const server = await LabServer.start({ dataDir: join(work, 'server') });
  try {
    await server.createProduct('bench', join(keys, 'root.json'));
    await server.pushRelease(join(work, 'releases', 'v1'));
    const { id } = await server.pushRelease(join(work, 'releases', 'v2'));
    const vm = await SimulatedVm.createFromRelease({
      dir: join(work, 'vm'),
      trustRootPath: join(keys, 'root.json'),
      product: 'bench',
      hardware: 'hw',
      serverUrl: server.url,
      releaseDir: join(work, 'releases', 'v1'),
    });
    const agent = await vm.openAgent();
    const deviceId = await agent.register(await server.createProvisioningToken('bench'));
    await agent.afterBoot();
    await server.createRollout(id, { deviceIds: [deviceId] });

    // The measured process: the built agent, one poll + install, no reboot.
    const t = performance.now();
    const nodeOptions = process.env['ABOTA_BENCH_NODE_OPTIONS'];
    const proc = vm.spawnAgent(['check', '--json'], {
      useBuild: true,
      ...(nodeOptions ? { env: { NODE_OPTIONS: nodeOptions } } : {}),
    });
    const pid = proc.child.pid!;
    let peakKiB = 0;
    let maxThreads = 0;
    const sampler = setInterval(() => {
      void procStatus(pid).then((p) => {
        peakKiB = Math.max(peakKiB, p.peakKiB);
        maxThreads = Math.max(maxThreads, p.threads);
      });
    }, 20);
    const exit = await proc.exited;
    clearInterval(sampler);
    const installMs = performance.now() - t;
    if (exit.code !== 0) throw new Error(`agent check exited ${exit.code}: ${proc.stderr}`);
    const j = await vm.journal();
    if (j?.phase !== 'boot-pending') throw new Error(`install ended in ${j?.phase}`);

    // Reference: decompress to a file, then veritysetup verify, on the same artifact and tree.
    const blob = (d: string) => join(work, 'releases', 'v2', 'blobs', 'sha256', d.slice(7));
    const out = join(work, 'ref.img');
    const decompress = await timed(() =>
      pipeline(
        createReadStream(blob(rootfs.artifact.digest)),
        createBrotliDecompress(),
        createWriteStream(out),
      ),
    );
    const verify = await timed(async () => {
      const r = spawnSync('veritysetup', [
        'verify',
        out,
        blob(rootfs.verity.hashTree.digest),
        rootfs.verity.rootHash,
      ]);
      if (r.status !== 0) throw new Error(`veritysetup verify failed: ${r.stderr}`);
    });
    const refMs = decompress.ms + verify.ms;
    // The reference also has to write the image: sync so its page cache write-back counts too.
    const sync = await timed(
      () => new Promise<void>((resolve) => spawn('sync', [out]).once('close', () => resolve())),
    );
    const refTotal = refMs + sync.ms;

    const peakMiB = peakKiB / 1024;
    log(
      `agent     install ${(installMs / 1000).toFixed(2)} s (poll, download over loopback, brotli, per-block verity, write, fsync)`,
    );
    log(
      `          peak RSS ${peakMiB.toFixed(1)} MiB (limit ${RSS_LIMIT_MIB} MiB) ${peakMiB < RSS_LIMIT_MIB ? 'OK' : 'OVER'}${nodeOptions ? ` with NODE_OPTIONS="${nodeOptions}"` : ' with node defaults'}; up to ${maxThreads} threads`,
    );
    log(
      `reference brotli -d → file ${(decompress.ms / 1000).toFixed(2)} s + veritysetup verify ${(verify.ms / 1000).toFixed(2)} s + sync ${(sync.ms / 1000).toFixed(2)} s = ${(refTotal / 1000).toFixed(2)} s`,
    );
    log(`ratio     agent / reference = ${(installMs / refTotal).toFixed(2)}`);
    log(
      JSON.stringify({
        imageMiB,
        artifactBytes: rootfs.artifact.sizeBytes,
        agentInstallMs: Math.round(installMs),
        agentPeakRssMiB: Number(peakMiB.toFixed(1)),
        agentMaxThreads: maxThreads,
        referenceMs: {
          decompress: Math.round(decompress.ms),
          veritysetupVerify: Math.round(verify.ms),
          sync: Math.round(sync.ms),
        },
        ratio: Number((installMs / refTotal).toFixed(2)),
        slotBytes: (await stat(vm.paths.slots.B.rootfs)).size,
      }),
    );
    if (peakMiB >= RSS_LIMIT_MIB) process.exitCode = 1;
  } finally {
    await server.close();
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
