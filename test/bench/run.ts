// Agent install of a 512 MiB rootfs, measured end to end for each artifact codec in the same run
// (zstd, the default, and brotli, the codec of releases built before): a real server (PGlite,
// loopback HTTP), the agent as it ships — `node packages/client/dist/abota-agent.cjs check` from the
// build (the bundle the agent package's bin runs), with
// the Environment= lines of infra/systemd/abota-agent.service (NODE_OPTIONS, MALLOC_ARENA_MAX) —
// peak RSS from /proc/<pid>/status VmHWM. Floors in the same run: `node -e 0` and the agent's
// `status` (every module loaded, no install). Reference on the same image: `zstd -d` of a
// zstd -3 copy to a file, then `veritysetup verify` — the unverified two-step a shell script
// would do — with their times and peak RSS (GNU time).
//
// npx tsx --conditions=@abota/source bench/run.ts   (after `npm run build`; ABOTA_BENCH_MIB=512;
// ABOTA_BENCH_CODECS=zstd,brotli; ABOTA_BENCH_NODE_OPTIONS replaces the unit's NODE_OPTIONS,
// ABOTA_BENCH_NODE_ARGS adds node command-line flags (V8 flags NODE_OPTIONS refuses),
// ABOTA_BENCH_UNIT_ENV=0 drops the unit's environment: node defaults; ABOTA_BENCH_RUNS=N installs
// each codec N times, interleaved; ABOTA_BENCH_WORK=DIR keeps the keys, image and releases in DIR
// and reuses them on the next run — a 512 MiB zstd 19 build takes minutes)
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ImageManifest, ReleaseManifest } from '@abota/manifest';
import { main as abota } from '@abota/publisher';
import { buildRootfsImage, SimulatedVm } from '@abota/simulator';
import { LabServer } from '@abota/update-server/lab';
import { makeTempDir } from '@abota/testkit';
import { AGENT_BUNDLE, unitEnvironment } from '../fixtures/agent-unit.js';

const MIB = 1024 * 1024;
const imageMiB = Number(process.env['ABOTA_BENCH_MIB'] ?? 512);
const codecs = (process.env['ABOTA_BENCH_CODECS'] ?? 'zstd,brotli').split(',').filter((c) => c !== '');
const runs = Math.max(1, Number(process.env['ABOTA_BENCH_RUNS'] ?? 1));
const keptWork = process.env['ABOTA_BENCH_WORK'];
const nodeArgs = (process.env['ABOTA_BENCH_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
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

const GNU_TIME = '/usr/bin/time';

/** Run a short command to completion: wall time and, with GNU time, its peak RSS. */
function measured(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): { ms: number; peakMiB: number | undefined; stdout: string } {
  const t = performance.now();
  const gnuTime = existsSync(GNU_TIME);
  const r = gnuTime
    ? spawnSync(GNU_TIME, ['-f', 'abota-bench-maxrss %M', cmd, ...args], { env, encoding: 'utf8' })
    : spawnSync(cmd, args, { env, encoding: 'utf8' });
  const ms = performance.now() - t;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  const kib = /abota-bench-maxrss (\d+)/.exec(r.stderr ?? '');
  return { ms, peakMiB: kib ? Number(kib[1]) / 1024 : undefined, stdout: r.stdout };
}

const mib = (v: number | undefined): string => (v === undefined ? 'n/a' : `${v.toFixed(1)} MiB`);

/** Peak RSS (VmHWM, KiB) and current thread count of a running process. */
async function procStatus(pid: number): Promise<{ peakKiB: number; threads: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
  const threads = /Threads:\s+(\d+)/.exec(status);
  return { peakKiB: hwm ? Number(hwm[1]) : 0, threads: threads ? Number(threads[1]) : 0 };
}

const work = keptWork ?? (await makeTempDir('abota-bench-install-'));
/** Reuse what an earlier run with the same ABOTA_BENCH_WORK made; `make` it otherwise. */
async function kept<T>(path: string, make: () => Promise<T>): Promise<T | undefined> {
  if (keptWork !== undefined && existsSync(path)) return undefined;
  return make();
}
const log = (s: string) => process.stdout.write(`${s}\n`);
try {
  log(`abota install bench: ${imageMiB} MiB rootfs, work dir ${work}`);
  const keys = join(work, 'keys');
  await kept(join(keys, 'root.json'), () => cli(['keys', 'init', keys]));
  await mkdir(join(work, 'releases'), { recursive: true });
  const bigPath = join(work, 'v2.img');
  const big = await timed(() =>
    kept(bigPath, () =>
      buildRootfsImage({ path: bigPath, version: '2.0.0', sizeBytes: imageMiB * MIB, fillFraction: 0.3 }),
    ),
  );
  log(
    big.value === undefined
      ? `image     ${imageMiB} MiB, reused from ${bigPath}`
      : `image     ${imageMiB} MiB ${big.value.kind}, 30 % filled (${(big.ms / 1000).toFixed(1)} s to make)`,
  );
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
  const v1 = join(work, 'releases', 'v1');
  await kept(join(v1, 'manifest.json'), async () => {
    const small = await buildRootfsImage({
      path: join(work, 'v1.img'),
      version: '1.0.0',
      sizeBytes: 4 * MIB,
    });
    await cli(['release', 'build', '--image', small.path, '--version', '1.0.0', ...common, '--out', v1]);
  });
  // One release of the same image per codec (versions 2.0.0, 2.0.1, ...).
  const releases: { codec: string; version: string; dir: string; buildMs: number; rootfs: ImageManifest }[] =
    [];
  for (const [i, codec] of codecs.entries()) {
    const version = `2.0.${i}`;
    const dir = join(work, 'releases', `v2-${codec}`);
    const build = await timed(() =>
      kept(join(dir, 'manifest.json'), () =>
        cli([
          'release',
          'build',
          '--image',
          bigPath,
          '--version',
          version,
          ...common,
          '--codec',
          codec,
          '--out',
          dir,
        ]),
      ),
    );
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as ReleaseManifest;
    const rootfs = manifest.images.rootfs;
    releases.push({ codec, version, dir, buildMs: build.ms, rootfs });
    log(
      `release   ${codec} ${(rootfs.artifact.sizeBytes / MIB).toFixed(1)} MiB, hash tree ${(rootfs.verity.hashTree.sizeBytes / MIB).toFixed(2)} MiB (${build.value === undefined ? 'reused' : `${(build.ms / 1000).toFixed(1)} s to build`})`,
    );
  }

  await rm(join(work, 'server'), { recursive: true, force: true });
  const server = await LabServer.start({ dataDir: join(work, 'server') });
  try {
    await server.createProduct('bench', join(keys, 'root.json'));
    await server.pushRelease(join(work, 'releases', 'v1'));
    const releaseIds = new Map<string, string>();
    for (const r of releases) releaseIds.set(r.codec, (await server.pushRelease(r.dir)).id);

    // The measured process: the built agent bin, one poll + install, no reboot.
    const unitEnv = process.env['ABOTA_BENCH_UNIT_ENV'] === '0' ? {} : await unitEnvironment();
    const benchOptions = process.env['ABOTA_BENCH_NODE_OPTIONS'];
    const agentEnv: NodeJS.ProcessEnv = {
      ...process.env,
      ...unitEnv,
      NODE_OPTIONS: benchOptions ?? unitEnv['NODE_OPTIONS'] ?? '',
    };
    const how =
      Object.entries(unitEnv)
        .filter(([k]) => k !== 'NODE_ENV')
        .map(([k, v]) => (k === 'NODE_OPTIONS' ? `NODE_OPTIONS="${agentEnv['NODE_OPTIONS']}"` : `${k}=${v}`))
        .concat(
          benchOptions !== undefined && unitEnv['NODE_OPTIONS'] === undefined
            ? [`NODE_OPTIONS="${benchOptions}"`]
            : [],
        )
        .join(' ') || 'node defaults';

    /** A fresh VM on v1 installs the codec's v2 through the agent bin; the VM is removed after. */
    const installWith = async (codec: string) => {
      const vmDir = join(work, `vm-${codec}`);
      const vm = await SimulatedVm.createFromRelease({
        dir: vmDir,
        trustRootPath: join(keys, 'root.json'),
        product: 'bench',
        hardware: 'hw',
        serverUrl: server.url,
        releaseDir: join(work, 'releases', 'v1'),
      });
      const agent = await vm.openAgent();
      const deviceId = await agent.register(await server.createProvisioningToken('bench'));
      await agent.afterBoot();
      await server.createRollout(releaseIds.get(codec)!, { deviceIds: [deviceId] });
      const t = performance.now();
      const child = spawn(
        process.execPath,
        [...nodeArgs, AGENT_BUNDLE, 'check', '--json', '--config', vm.paths.agentConfig],
        {
          env: agentEnv,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
      });
      child.stdout.resume();
      const exited = new Promise<number | null>((resolve, reject) => {
        child.once('error', reject);
        child.once('close', (code) => resolve(code));
      });
      const pid = child.pid!;
      let peakKiB = 0;
      let maxThreads = 0;
      const sampler = setInterval(() => {
        void procStatus(pid).then((p) => {
          peakKiB = Math.max(peakKiB, p.peakKiB);
          maxThreads = Math.max(maxThreads, p.threads);
        });
      }, 20);
      const code = await exited;
      clearInterval(sampler);
      const installMs = performance.now() - t;
      if (code !== 0) throw new Error(`agent check (${codec}) exited ${code}: ${stderr}`);
      const j = await vm.journal();
      if (j?.phase !== 'boot-pending') throw new Error(`install (${codec}) ended in ${j?.phase}`);
      const slotBytes = (await stat(vm.paths.slots.B.rootfs)).size;
      const statusArgs = [...nodeArgs, AGENT_BUNDLE, 'status', '--json', '--config', vm.paths.agentConfig];
      const idle = measured(process.execPath, statusArgs, agentEnv);
      await rm(vmDir, { recursive: true, force: true });
      return { codec, installMs, peakMiB: peakKiB / 1024, maxThreads, slotBytes, idlePeakMiB: idle.peakMiB };
    };
    const installs = [];
    for (let run = 0; run < runs; run++) for (const r of releases) installs.push(await installWith(r.codec));

    // Floor: node itself (the agent's idle floor, `status`, is measured on each VM above).
    const bareNode = measured(process.execPath, [...nodeArgs, '-e', '0'], agentEnv);

    // Reference: zstd -3 copy of the image (made here, not timed), `zstd -d` to a file, then
    // veritysetup verify against the release's hash tree and root hash.
    const rootfs = releases[0]!.rootfs;
    const blob = (d: string) => join(releases[0]!.dir, 'blobs', 'sha256', d.slice(7));
    const zst = join(work, 'v2.img.zst');
    spawnSync('zstd', ['-3', '-q', '-f', '-T1', bigPath, '-o', zst]);
    const zstBytes = (await stat(zst)).size;
    const out = join(work, 'ref.img');
    const decompress = measured('zstd', ['-d', '-q', '-f', zst, '-o', out]);
    const verify = measured('veritysetup', [
      'verify',
      out,
      blob(rootfs.verity.hashTree.digest),
      rootfs.verity.rootHash,
    ]);
    // The reference also has to write the image: sync so its page cache write-back counts too.
    const sync = await timed(
      () => new Promise<void>((resolve) => spawn('sync', [out]).once('close', () => resolve())),
    );
    const refTotal = decompress.ms + verify.ms + sync.ms;

    log(`node      ${process.version} (${process.execPath})`);
    for (const i of installs) {
      log(
        `agent     ${i.codec.padEnd(6)} install ${(i.installMs / 1000).toFixed(2)} s (poll, download over loopback, ${i.codec}, per-block verity, write, fsync), ratio to the reference ${(i.installMs / refTotal).toFixed(2)}`,
      );
      log(
        `          peak RSS ${i.peakMiB.toFixed(1)} MiB (limit ${RSS_LIMIT_MIB} MiB) ${i.peakMiB < RSS_LIMIT_MIB ? 'OK' : 'OVER'}; idle (status) ${mib(i.idlePeakMiB)}; up to ${i.maxThreads} threads`,
      );
    }
    log(`          with ${how}${nodeArgs.length > 0 ? ` and node ${nodeArgs.join(' ')}` : ''}`);
    log(`floors    node -e 0 ${mib(bareNode.peakMiB)}`);
    log(
      `reference zstd -3 copy ${(zstBytes / MIB).toFixed(1)} MiB: zstd -d → file ${(decompress.ms / 1000).toFixed(2)} s (peak ${mib(decompress.peakMiB)}) + veritysetup verify ${(verify.ms / 1000).toFixed(2)} s (peak ${mib(verify.peakMiB)}) + sync ${(sync.ms / 1000).toFixed(2)} s = ${(refTotal / 1000).toFixed(2)} s`,
    );
    const loadavg = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
    log(
      JSON.stringify({
        imageMiB,
        node: process.version,
        agentEnvironment: how,
        installs: installs.map((i) => {
          const r = releases.find((x) => x.codec === i.codec)!;
          return {
            codec: i.codec,
            artifactBytes: r.rootfs.artifact.sizeBytes,
            buildMs: Math.round(r.buildMs),
            agentInstallMs: Math.round(i.installMs),
            agentPeakRssMiB: Number(i.peakMiB.toFixed(1)),
            idlePeakRssMiB: i.idlePeakMiB,
            agentMaxThreads: i.maxThreads,
            ratio: Number((i.installMs / refTotal).toFixed(2)),
            slotBytes: i.slotBytes,
          };
        }),
        floorsPeakRssMiB: { bareNode: bareNode.peakMiB },
        reference: {
          zstdBytes: zstBytes,
          decompressMs: Math.round(decompress.ms),
          decompressPeakRssMiB: decompress.peakMiB,
          veritysetupVerifyMs: Math.round(verify.ms),
          veritysetupPeakRssMiB: verify.peakMiB,
          syncMs: Math.round(sync.ms),
        },
        loadavg,
      }),
    );
    if (installs.some((i) => i.peakMiB >= RSS_LIMIT_MIB)) process.exitCode = 1;
  } finally {
    await server.close();
  }
} finally {
  if (keptWork === undefined) await rm(work, { recursive: true, force: true });
  else await rm(join(work, 'server'), { recursive: true, force: true });
}
