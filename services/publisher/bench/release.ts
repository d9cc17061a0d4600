// Benchmark of `abota release build` / `release verify` on a realistic 512 MiB ext4 image
// (a sample of this machine's /usr and /etc packed by mkfs.ext4 -d), against the same work done
// by the reference tools in the same run: `veritysetup format` + `zstd -L` of the image (build),
// `veritysetup verify` + `zstd -d` (verify). Optional codec sweep (BENCH_CODECS=1): node:zlib's
// brotli (the default before Node 24) against its zstd at several levels, all with the 2^22
// window devices accept — the measurement behind the default codec (README).
import { spawnSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findTool } from '@abota/testkit';
import { initTrustRoot } from '../src/keys/trust-root.js';
import { buildRelease } from '../src/release/build.js';
import { compressFile, DEFAULT_CODEC, decompress } from '../src/release/codec.js';
import { verifyRelease } from '../src/release/verify.js';
import { mkfsExt4, writeHostSampleTree } from './ext4-image.js';

const MiB = 1024 * 1024;

export interface ReleaseBenchOptions {
  imageMiB: number;
  /** Bytes of files copied into the image (the rest is free space, as on a real rootfs). */
  contentMiB: number;
  zstdLevels: number[];
  codecSweep: boolean;
}

interface Timing {
  wallS: number;
  cpuS: number;
  maxRssMiB: number;
}

const GNU_TIME = '/usr/bin/time';

/** Run a reference tool under GNU time: wall, user+sys CPU and peak RSS of the tool itself. */
function timeTool(argv: string[]): Timing {
  const t = spawnSync(GNU_TIME, ['-f', '@@%e %U %S %M', ...argv], { encoding: 'utf8', maxBuffer: 1 << 20 });
  const m = /@@([\d.]+) ([\d.]+) ([\d.]+) (\d+)\s*$/.exec(t.stderr ?? '');
  if (t.status !== 0 || m === null) throw new Error(`${argv.join(' ')} failed (${t.status}): ${t.stderr}`);
  return { wallS: Number(m[1]), cpuS: Number(m[2]) + Number(m[3]), maxRssMiB: Number(m[4]) / 1024 };
}

/** Time an in-process step: wall and this process's CPU (all threads, incl. workers and zlib). */
async function timeSelf<T>(fn: () => Promise<T>): Promise<{ result: T; timing: Timing }> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await fn();
  const wallS = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return {
    result,
    timing: {
      wallS,
      cpuS: (cpu.user + cpu.system) / 1e6,
      maxRssMiB: process.resourceUsage().maxRSS / 1024,
    },
  };
}

function add(a: Timing, b: Timing): Timing {
  return { wallS: a.wallS + b.wallS, cpuS: a.cpuS + b.cpuS, maxRssMiB: Math.max(a.maxRssMiB, b.maxRssMiB) };
}

function fmt(t: Timing): string {
  return `${t.wallS.toFixed(2).padStart(7)} s wall ${t.cpuS.toFixed(2).padStart(7)} s cpu ${t.maxRssMiB.toFixed(0).padStart(5)} MiB rss`;
}

function line(label: string, text: string): void {
  process.stdout.write(`${label.padEnd(44)} ${text}\n`);
}

async function sizeOf(path: string): Promise<number> {
  return (await stat(path)).size;
}

export async function runReleaseBench(o: ReleaseBenchOptions): Promise<void> {
  const veritysetup = findTool('veritysetup');
  const zstd = findTool('zstd');
  const mkfs = findTool('mkfs.ext4');
  if (veritysetup === undefined || zstd === undefined || mkfs === undefined) {
    throw new Error('the release bench needs veritysetup (cryptsetup-bin), zstd and mkfs.ext4 (e2fsprogs)');
  }
  const dir = await mkdtemp(join(tmpdir(), 'abota-release-bench-'));
  try {
    const tree = join(dir, 'tree');
    await mkdir(tree);
    const copied = await writeHostSampleTree(tree, o.contentMiB * MiB);
    const image = join(dir, 'rootfs.img');
    mkfsExt4(tree, image, o.imageMiB, mkfs);
    await rm(tree, { recursive: true, force: true });
    const imageBytes = await sizeOf(image);
    process.stdout.write(
      `release bench: ${o.imageMiB} MiB ext4 image with ${(copied / MiB).toFixed(0)} MiB of files from /usr and /etc\n` +
        `codec: ${DEFAULT_CODEC.codec} quality ${DEFAULT_CODEC.quality} lgwin ${DEFAULT_CODEC.lgwin}\n\n`,
    );

    const keys = join(dir, 'keys');
    await initTrustRoot(keys, {
      root: { keys: 1, threshold: 1 },
      release: { keys: 2, threshold: 2 },
      expiresInMs: 365 * 86_400_000,
    });

    // --- build ------------------------------------------------------------------------------
    const out = join(dir, 'release');
    const ours = await timeSelf(() =>
      buildRelease({
        images: { rootfs: image },
        product: 'eflow-vm',
        compatible: ['hyperv-x64'],
        version: '1.0.0',
        securityVersion: 1,
        expires: '180d',
        keysDir: keys,
        outDir: out,
      }),
    );
    const summary = ours.result;
    const rootfs = summary.images.rootfs!;
    line('abota release build', fmt(ours.timing));
    line(
      '  of which (in parallel)',
      `verity ${(rootfs.durationsMs.verity / 1000).toFixed(2)} s, ${DEFAULT_CODEC.codec} ${(rootfs.durationsMs.compress / 1000).toFixed(2)} s`,
    );
    line(
      '  artifact',
      `${(rootfs.artifact.sizeBytes / MiB).toFixed(1)} MiB, ratio ${(imageBytes / rootfs.artifact.sizeBytes).toFixed(2)}`,
    );

    const hashFile = join(dir, 'ref.hash');
    const vs = timeTool([veritysetup, 'format', image, hashFile]);
    line('veritysetup format', fmt(vs));
    let zstdOutput = '';
    for (const level of o.zstdLevels) {
      const zOut = join(dir, `ref.${level}.zst`);
      const z = timeTool([zstd, '-q', `-${level}`, '-f', image, '-o', zOut]);
      const zBytes = await sizeOf(zOut);
      const ref = add(vs, z);
      line(
        `zstd -${level}`,
        `${fmt(z)}  ${(zBytes / MiB).toFixed(1)} MiB, ratio ${(imageBytes / zBytes).toFixed(2)}`,
      );
      line(`reference build (veritysetup + zstd -${level})`, fmt(ref));
      line(
        `  RATIO abota / reference (zstd -${level})`,
        `time ${(ours.timing.wallS / ref.wallS).toFixed(2)}×, cpu ${(ours.timing.cpuS / ref.cpuS).toFixed(2)}×, artifact size ${(rootfs.artifact.sizeBytes / zBytes).toFixed(3)}×`,
      );
      zstdOutput = zOut;
    }

    // --- verify -----------------------------------------------------------------------------
    const verified = await timeSelf(() => verifyRelease({ dir: out, rootPath: join(keys, 'root.json') }));
    process.stdout.write('\n');
    line('abota release verify (sigs, blobs, every block)', fmt(verified.timing));
    const treeBlob = join(out, 'blobs', 'sha256', rootfs.hashTree.digest.slice(7));
    const vv = timeTool([veritysetup, 'verify', image, treeBlob, rootfs.rootHash]);
    line('veritysetup verify', fmt(vv));
    if (zstdOutput !== '') {
      const zd = timeTool([zstd, '-q', '-d', '-f', zstdOutput, '-o', join(dir, 'ref.out')]);
      line('zstd -d', fmt(zd));
      const ref = add(vv, zd);
      line(
        '  RATIO abota verify / (veritysetup verify + zstd -d)',
        `time ${(verified.timing.wallS / ref.wallS).toFixed(2)}×`,
      );
      await rm(join(dir, 'ref.out'), { force: true });
    }

    // --- codec sweep ------------------------------------------------------------------------
    if (o.codecSweep) {
      process.stdout.write('\ncodec sweep (one stream; compress wall / cpu, decompress wall / cpu, size):\n');
      for (const [codec, quality, lgwin] of [
        ['brotli', 6, 22],
        ['zstd', 3, 22],
        ['zstd', 9, 22],
        ['zstd', 19, 22],
      ] as const) {
        const path = join(dir, `sweep.${codec}${quality}`);
        const c = await timeSelf(() => compressFile(image, path, { codec, quality, lgwin }));
        const d = await timeSelf(async () => {
          let n = 0;
          for await (const chunk of decompress(codec, createReadStream(path), imageBytes)) n += chunk.length;
          return n;
        });
        line(
          `${codec} ${codec === 'zstd' ? 'level' : 'q'}${quality} lgwin ${lgwin}`,
          `${c.timing.wallS.toFixed(2)} / ${c.timing.cpuS.toFixed(2)} s, ${d.timing.wallS.toFixed(2)} / ${d.timing.cpuS.toFixed(2)} s, ${(c.result.sizeBytes / MiB).toFixed(1)} MiB (ratio ${(imageBytes / c.result.sizeBytes).toFixed(2)})`,
        );
        await rm(path, { force: true });
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
