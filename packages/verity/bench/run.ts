// Benchmark: `veritysetup format` against @abota/verity on a 512 MiB file, in the same run, each
// in its own process (abota through the built package), reporting wall time, CPU time and peak
// RSS; plus peak RSS while formatting a 4 GiB (sparse) image and a verify comparison.
// Run: npm run bench -w @abota/verity   (builds dist/ first; needs veritysetup, and /usr/bin/time or python3).
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findTool } from '@abota/testkit';

const PKG_DIR = fileURLToPath(new URL('..', import.meta.url));
const DIST_INDEX = join(PKG_DIR, 'dist', 'index.js');
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 5);
const SALT = 'abcd'.repeat(16);

interface Measure {
  wallS: number;
  cpuS: number;
  maxRssMiB: number;
  stdout: string;
}

// Without GNU time, python3 runs the command and reports the child's rusage.
const MEASURE_PY = `
import json, resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": p.returncode, "wall": wall, "cpu": ru.ru_utime + ru.ru_stime,
                  "rss": ru.ru_maxrss, "out": p.stdout, "err": p.stderr}))
`;

const GNU_TIME = '/usr/bin/time';

function measure(argv: string[], env: NodeJS.ProcessEnv = {}): Measure {
  const childEnv = { ...process.env, ...env };
  if (existsSync(GNU_TIME)) {
    // GNU time is tiny, so the child's peak RSS is the tool's own (python's fork would leave
    // its ~10 MiB in the child's high-water mark before exec).
    const t = spawnSync(GNU_TIME, ['-f', '@@%e %U %S %M', ...argv], {
      encoding: 'utf8',
      env: childEnv,
      maxBuffer: 1 << 20,
    });
    const m = /@@([\d.]+) ([\d.]+) ([\d.]+) (\d+)\s*$/.exec(t.stderr);
    if (t.status !== 0 || !m) throw new Error(`${argv.join(' ')} failed (${t.status}): ${t.stderr}`);
    return {
      wallS: Number(m[1]),
      cpuS: Number(m[2]) + Number(m[3]),
      maxRssMiB: Number(m[4]) / 1024,
      stdout: t.stdout,
    };
  }
  const r = spawnSync('python3', ['-c', MEASURE_PY, ...argv], {
    encoding: 'utf8',
    env: childEnv,
    maxBuffer: 1 << 20,
  });
  if (r.status !== 0) throw new Error(`measure failed: ${r.stderr}`);
  const m = JSON.parse(r.stdout) as {
    rc: number;
    wall: number;
    cpu: number;
    rss: number;
    out: string;
    err: string;
  };
  if (m.rc !== 0) throw new Error(`${argv.join(' ')} exited ${m.rc}: ${m.err}`);
  return { wallS: m.wall, cpuS: m.cpu, maxRssMiB: m.rss / 1024, stdout: m.out };
}

const RUNNER = `
const m = await import(process.env.BENCH_DIST);
const op = process.env.BENCH_OP;
const threads = Number(process.env.BENCH_THREADS);
const dataPath = process.env.BENCH_DATA, hashPath = process.env.BENCH_HASH;
if (op === 'format') {
  const r = await m.formatVerity({ dataPath, hashPath, threads, params: { salt: Buffer.from(process.env.BENCH_SALT, 'hex') } });
  console.log('Root hash:\\t' + r.rootHash);
} else {
  await m.verifyVerity({ dataPath, hashPath, threads, rootHash: process.env.BENCH_ROOT });
}
`;

function abota(
  op: 'format' | 'verify',
  dataPath: string,
  hashPath: string,
  threads: number,
  rootHash = '',
): Measure {
  return measure([process.execPath, '--input-type=module', '-e', RUNNER], {
    BENCH_DIST: DIST_INDEX,
    BENCH_OP: op,
    BENCH_THREADS: String(threads),
    BENCH_DATA: dataPath,
    BENCH_HASH: hashPath,
    BENCH_SALT: SALT,
    BENCH_ROOT: rootHash,
  });
}

function rootOf(stdout: string): string {
  const m = /^Root hash:\s+([0-9a-f]+)$/m.exec(stdout);
  if (!m) throw new Error(`no root hash in ${stdout}`);
  return m[1]!;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

async function writeRandom(path: string, bytes: number): Promise<void> {
  const fh = await open(path, 'w');
  try {
    for (let at = 0; at < bytes; at += 4 << 20)
      await fh.write(randomBytes(Math.min(4 << 20, bytes - at)), 0, undefined, at);
  } finally {
    await fh.close();
  }
}

function summary(name: string, runs: Measure[]): { wall: number; cpu: number; rss: number } {
  const s = {
    wall: median(runs.map((r) => r.wallS)),
    cpu: median(runs.map((r) => r.cpuS)),
    rss: Math.max(...runs.map((r) => r.maxRssMiB)),
  };
  console.log(
    `  ${name.padEnd(24)} wall ${s.wall.toFixed(3)} s (median of ${runs.length})  cpu ${s.cpu.toFixed(3)} s  peak RSS ${s.rss.toFixed(1)} MiB`,
  );
  return s;
}

async function main(): Promise<void> {
  const veritysetup = findTool('veritysetup');
  if (veritysetup === undefined)
    throw new Error('veritysetup is not installed (apt-get install cryptsetup-bin)');
  const build = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: PKG_DIR, stdio: 'inherit' });
  if (build.status !== 0) throw new Error('build failed');
  const dir = await mkdtemp(join(tmpdir(), 'abota-verity-bench-'));
  try {
    const data = join(dir, 'data.img');
    await writeRandom(data, 512 << 20);
    console.log(
      `load average: ${(await import('node:os'))
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
    console.log(`format 512 MiB (131072 × 4 KiB blocks, sha256), ${ROUNDS} alternating rounds:`);
    const ref: Measure[] = [];
    const one: Measure[] = [];
    const two: Measure[] = [];
    measure([veritysetup, 'format', data, join(dir, 'warm.img'), `--salt=${SALT}`]); // page cache warm-up
    for (let i = 0; i < ROUNDS; i++) {
      ref.push(measure([veritysetup, 'format', data, join(dir, `ref-${i}.img`), `--salt=${SALT}`]));
      one.push(abota('format', data, join(dir, `one-${i}.img`), 1));
      two.push(abota('format', data, join(dir, `two-${i}.img`), 2));
      const roots = new Set([rootOf(ref[i]!.stdout), rootOf(one[i]!.stdout), rootOf(two[i]!.stdout)]);
      if (roots.size !== 1) throw new Error(`root hashes differ: ${[...roots].join(' ')}`);
    }
    const r = summary('veritysetup format', ref);
    const a1 = summary('abota (1 thread, default)', one);
    const a2 = summary('abota (2 threads)', two);
    console.log(
      `  speed ratio veritysetup/abota: 1 thread ${(r.wall / a1.wall).toFixed(2)}, 2 threads ${(r.wall / a2.wall).toFixed(2)}`,
    );

    const root = rootOf(ref[0]!.stdout);
    console.log('verify 512 MiB, 3 alternating rounds:');
    const vref: Measure[] = [];
    const vone: Measure[] = [];
    for (let i = 0; i < 3; i++) {
      vref.push(measure([veritysetup, 'verify', data, join(dir, 'ref-0.img'), root]));
      vone.push(abota('verify', data, join(dir, 'one-0.img'), 1, root));
    }
    const vr = summary('veritysetup verify', vref);
    const va = summary('abota verify (1 thread)', vone);
    console.log(`  speed ratio veritysetup/abota: ${(vr.wall / va.wall).toFixed(2)}`);

    if (process.env['BENCH_SKIP_4G'] !== '1') {
      await rm(data);
      const big = join(dir, 'big.img');
      const fh = await open(big, 'w');
      await fh.truncate(4 * 1024 ** 3); // sparse: reads cost no disk, the hashing is real
      await fh.close();
      console.log('format 4 GiB sparse image (1048576 blocks), once each:');
      const bref = measure([veritysetup, 'format', big, join(dir, 'big-ref.img'), `--salt=${SALT}`]);
      const bone = abota('format', big, join(dir, 'big-one.img'), 1);
      if (rootOf(bref.stdout) !== rootOf(bone.stdout)) throw new Error('4 GiB root hashes differ');
      summary('veritysetup format', [bref]);
      const b1 = summary('abota (1 thread)', [bone]);
      console.log(`  abota peak RSS ${b1.rss.toFixed(1)} MiB ${b1.rss <= 64 ? '≤' : '>'} 64 MiB budget`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
