// Delta benchmark: builds realistic Debian rootfs image pairs (debootstrap minbase → + curl,
// ca-certificates, openssh-client = "feature"; → libssl3 from bookworm-security = "security")
// as ext4, squashfs and erofs, then measures abota's delta against xdelta3 -9 and
// zstd --patch-from -19 --long in the same run: size, create time, apply time, apply peak RSS.
// Trees and images are cached under $ABOTA_BENCH_DIR (default /var/tmp/abota-delta-bench).
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = process.env['ABOTA_BENCH_DIR'] ?? '/var/tmp/abota-delta-bench';
const HERE = dirname(fileURLToPath(import.meta.url));
const PKG = join(HERE, '..');
const TREES = join(ROOT, 'trees');
const IMAGES = join(ROOT, 'img');
const WORK = join(ROOT, 'work');
// Per process, so runs for different file systems (ABOTA_BENCH_FS) can go in parallel.
const BUILD = join(ROOT, `build-${process.pid}`);
const EXT4_SIZE = '384M';
const FIXED_UUID = '6f1c0d2e-4d9b-4a51-9a3e-0b8f3c1e2a77';
const FIXED_TIME = '1700000000';
const PATH = `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin`;

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    env: { ...process.env, PATH, ...opts.env },
    maxBuffer: 1 << 26,
  });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** Run a command under /usr/bin/time; return wall ms and peak RSS bytes. */
function timed(cmd: string, args: string[]): { elapsedMs: number; maxRssBytes: number } {
  const started = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '%M', cmd, ...args], {
    encoding: 'utf8',
    env: { ...process.env, PATH },
  });
  const elapsedMs = Math.round(performance.now() - started);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  return { elapsedMs, maxRssBytes: Number(lines[lines.length - 1]) * 1024 };
}

function debianMirror(): string {
  const files = [
    '/etc/apt/sources.list',
    ...safeList('/etc/apt/sources.list.d').map((f) => join('/etc/apt/sources.list.d', f)),
  ];
  for (const f of files) {
    const text = existsSync(f) ? readFileSync(f, 'utf8') : '';
    for (const m of text.matchAll(/(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(https?:\/\/\S+)/g)) {
      if (!m[1]!.includes('security')) return m[1]!;
    }
  }
  return 'http://deb.debian.org/debian';
}

function safeList(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

function cleanTree(tree: string): void {
  // A shipped rootfs carries no package caches or apt lists.
  for (const sub of ['var/cache/apt/archives', 'var/lib/apt/lists']) {
    const dir = join(tree, sub);
    for (const f of safeList(dir))
      if (f.endsWith('.deb') || f.includes('_')) execFileSync('rm', ['-f', join(dir, f)]);
  }
}

async function ensureTrees(): Promise<void> {
  await mkdir(TREES, { recursive: true });
  if (process.getuid?.() !== 0)
    throw new Error('the bench builds root filesystems with debootstrap and must run as root');
  const mirror = debianMirror();
  const boot = (name: string, include: string[]) => {
    const tree = join(TREES, name);
    if (existsSync(join(tree, '.bench-complete'))) return;
    console.error(`debootstrap ${name} from ${mirror} ...`);
    run('rm', ['-rf', tree]);
    const inc = include.length > 0 ? [`--include=${include.join(',')}`] : [];
    run('debootstrap', ['--variant=minbase', ...inc, 'bookworm', tree, mirror]);
    cleanTree(tree);
    writeFileSync(join(tree, '.bench-complete'), '');
  };
  boot('v1', []);
  boot('v2', ['curl', 'ca-certificates', 'openssh-client']);
  const v3 = join(TREES, 'v3');
  if (!existsSync(join(v3, '.bench-complete'))) {
    // The security fix: libssl3 from bookworm-security over v2 (apt's candidate on this host).
    const debs = join(ROOT, 'debs');
    await mkdir(debs, { recursive: true });
    run('sh', ['-c', `cd "${debs}" && apt-get download libssl3 2>/dev/null`]);
    const deb = safeList(debs).find((f) => f.startsWith('libssl3_'));
    if (!deb) throw new Error('apt-get download libssl3 produced no .deb');
    const version = run('dpkg-deb', ['-f', join(debs, deb), 'Version']).trim();
    run('rm', ['-rf', v3]);
    run('cp', ['-a', join(TREES, 'v2'), v3]);
    run('rm', ['-f', join(v3, '.bench-complete')]);
    const status = join(v3, 'var/lib/dpkg/status');
    const old = readFileSync(status, 'utf8');
    const updated = old.replace(/(Package: libssl3\n(?:[^\n]+\n)*?Version: )[^\n]+/, `$1${version}`);
    if (updated === old)
      throw new Error(`libssl3 ${version} is what v2 already has: no security update to bench`);
    run('dpkg-deb', ['-x', join(debs, deb), v3]);
    writeFileSync(status, updated);
    writeFileSync(join(v3, '.bench-complete'), '');
    console.error(`v3 = v2 + libssl3 ${version}`);
  }
}

type Fs = 'ext4' | 'squashfs' | 'erofs';

function buildImage(fs: Fs, version: string): string {
  const tree = join(TREES, version);
  const img = join(IMAGES, `${version}.${fs}`);
  if (existsSync(img) && statSync(img).mtimeMs > statSync(join(tree, '.bench-complete')).mtimeMs) return img;
  // Reproducible builds (fixed UUID, hash seed, timestamps), as a release pipeline would do.
  if (fs === 'ext4') {
    run(
      'mkfs.ext4',
      [
        '-q',
        '-F',
        '-b',
        '4096',
        '-U',
        FIXED_UUID,
        '-E',
        `hash_seed=${FIXED_UUID},root_owner=0:0`,
        '-d',
        tree,
        img,
        EXT4_SIZE,
      ],
      { env: { E2FSPROGS_FAKE_TIME: FIXED_TIME } },
    );
  } else if (fs === 'squashfs') {
    run('mksquashfs', [
      tree,
      img,
      '-noappend',
      '-quiet',
      '-no-progress',
      '-comp',
      'zstd',
      '-mkfs-time',
      FIXED_TIME,
      '-e',
      '.bench-complete',
    ]);
  } else {
    run('mkfs.erofs', ['-zlz4hc', `-T${FIXED_TIME}`, `-U${FIXED_UUID}`, '--quiet', img, tree]);
  }
  const size = statSync(img).size;
  if (size % 4096 !== 0) run('truncate', ['-s', String(Math.ceil(size / 4096) * 4096), img]);
  return img;
}

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * How the device runs apply: the flags and environment of infra/systemd/abota-agent.service
 * (packages/client README "Memory"). Node's default young generation (16 MiB semi-spaces)
 * would otherwise dominate apply's footprint; --jitless drops V8's compiler and its code pages;
 * MALLOC_ARENA_MAX=1 keeps glibc from giving each thread-pool thread (brotli, fs) its own arena.
 * ABOTA_BENCH_COLLECT=1: the child also collects dead Buffers every 4 MiB, as the agent does.
 */
const TUNED_NODE_FLAGS = ['--max-semi-space-size=1', '--jitless'];
const TUNED_ENV = { MALLOC_ARENA_MAX: '1', ABOTA_BENCH_COLLECT: '1' };

function child(
  mode: string,
  args: string[],
  tuned = false,
): Record<string, unknown> & { elapsedMs: number; maxRssBytes: number } {
  const flags = tuned ? TUNED_NODE_FLAGS : [];
  const out = run(
    process.execPath,
    [...flags, join(HERE, 'child.mjs'), mode, BUILD, ...args],
    tuned ? { env: TUNED_ENV } : {},
  );
  return JSON.parse(out.trim().split('\n').pop()!);
}

interface Row {
  fs: Fs;
  pair: string;
  targetSizeBytes: number;
  abota: {
    sizeBytes: number;
    makeMs: number;
    makeRssBytes: number;
    applyMs: number;
    applyRssBytes: number;
    applyTunedRssBytes: number;
  };
  xdelta3: { sizeBytes: number; makeMs: number; applyMs: number; applyRssBytes: number };
  zstd: { sizeBytes: number; makeMs: number; applyMs: number; applyRssBytes: number };
}

async function measure(fs: Fs, pair: string, oldImg: string, newImg: string): Promise<Row> {
  const base = join(WORK, `${fs}-${pair}`);
  const out = `${base}.out`;
  const expected = await sha256(newImg);
  const check = async (tool: string) => {
    if ((await sha256(out)) !== expected) throw new Error(`${tool} did not reproduce ${newImg}`);
    await rm(out, { force: true });
  };

  const hashFile = `${base}.verity`;
  const root = /Root hash:\s+([0-9a-f]+)/.exec(run('veritysetup', ['format', newImg, hashFile]))![1]!;
  const made = child('make', [oldImg, newImg, `${base}.abota`]);
  const applied = child('apply', [oldImg, `${base}.abota`, out, hashFile, root]);
  await check('abota');
  const appliedTuned = child('apply', [oldImg, `${base}.abota`, out, hashFile, root], true);
  await check('abota (tuned)');

  const xMake = timed('xdelta3', ['-9', '-e', '-f', '-s', oldImg, newImg, `${base}.xd3`]);
  const xApply = timed('xdelta3', ['-d', '-f', '-s', oldImg, `${base}.xd3`, out]);
  await check('xdelta3');

  const zMake = timed('zstd', [
    '-q',
    '-f',
    '-19',
    '--long=30',
    `--patch-from=${oldImg}`,
    newImg,
    '-o',
    `${base}.zst`,
  ]);
  const zApply = timed('zstd', [
    '-q',
    '-f',
    '-d',
    '--long=30',
    `--patch-from=${oldImg}`,
    `${base}.zst`,
    '-o',
    out,
  ]);
  await check('zstd');

  return {
    fs,
    pair,
    targetSizeBytes: statSync(newImg).size,
    abota: {
      sizeBytes: statSync(`${base}.abota`).size,
      makeMs: made.elapsedMs,
      makeRssBytes: made.maxRssBytes,
      applyMs: applied.elapsedMs,
      applyRssBytes: applied.maxRssBytes,
      applyTunedRssBytes: appliedTuned.maxRssBytes,
    },
    xdelta3: {
      sizeBytes: statSync(`${base}.xd3`).size,
      makeMs: xMake.elapsedMs,
      applyMs: xApply.elapsedMs,
      applyRssBytes: xApply.maxRssBytes,
    },
    zstd: {
      sizeBytes: statSync(`${base}.zst`).size,
      makeMs: zMake.elapsedMs,
      applyMs: zApply.elapsedMs,
      applyRssBytes: zApply.maxRssBytes,
    },
  };
}

const MiB = 1024 * 1024;
const mb = (n: number) => (n / MiB).toFixed(2);
const sec = (ms: number) => (ms / 1000).toFixed(1);

async function main(): Promise<void> {
  await mkdir(IMAGES, { recursive: true });
  await mkdir(WORK, { recursive: true });
  await ensureTrees();
  // Plain-node children: compile the package sources (and @abota/verity for the verifier).
  await rm(BUILD, { recursive: true, force: true });
  run('npx', [
    'tsc',
    '-p',
    join(PKG, 'tsconfig.build.json'),
    '--outDir',
    join(BUILD, 'delta'),
    '--sourceMap',
    'false',
    '--declaration',
    'false',
  ]);
  run('npx', [
    'tsc',
    '-p',
    join(PKG, '../verity/tsconfig.build.json'),
    '--outDir',
    join(BUILD, 'verity'),
    '--sourceMap',
    'false',
    '--declaration',
    'false',
  ]);
  const baseline = child('baseline', []);
  const baselineTuned = child('baseline', [], true);
  const only = process.env['ABOTA_BENCH_FS']?.split(',') as Fs[] | undefined;
  // ABOTA_BENCH_PAIR=security (or feature): one update per file system, for quick iteration.
  const pairs = process.env['ABOTA_BENCH_PAIR']?.split(',');
  const rows: Row[] = [];
  for (const fs of only ?? (['ext4', 'squashfs', 'erofs'] as const)) {
    const img = { v1: buildImage(fs, 'v1'), v2: buildImage(fs, 'v2'), v3: buildImage(fs, 'v3') };
    for (const [pair, a, b] of [
      ['feature', img.v1, img.v2],
      ['security', img.v2, img.v3],
    ] as const) {
      if (pairs && !pairs.includes(pair)) continue;
      console.error(`measuring ${fs} ${pair} ...`);
      const row = await measure(fs, pair, a, b);
      rows.push(row);
      console.error(JSON.stringify(row));
    }
  }
  const lines = [
    `| image | pair | target MiB | abota MiB | xdelta3 -9 MiB | zstd --patch-from MiB | abota / best | make s (abota/xd3/zstd) | apply s (abota/xd3/zstd) | apply peak RSS MiB (abota tuned / abota default / xd3 / zstd) |`,
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const best = Math.min(r.xdelta3.sizeBytes, r.zstd.sizeBytes);
    lines.push(
      `| ${r.fs} | ${r.pair} | ${mb(r.targetSizeBytes)} | ${mb(r.abota.sizeBytes)} | ${mb(r.xdelta3.sizeBytes)} | ${mb(r.zstd.sizeBytes)} | ${(r.abota.sizeBytes / best).toFixed(3)} | ` +
        `${sec(r.abota.makeMs)} / ${sec(r.xdelta3.makeMs)} / ${sec(r.zstd.makeMs)} | ${sec(r.abota.applyMs)} / ${sec(r.xdelta3.applyMs)} / ${sec(r.zstd.applyMs)} | ` +
        `${mb(r.abota.applyTunedRssBytes)} / ${mb(r.abota.applyRssBytes)} / ${mb(r.xdelta3.applyRssBytes)} / ${mb(r.zstd.applyRssBytes)} |`,
    );
  }
  lines.push(
    '',
    `plain node peak RSS doing nothing: ${mb(baseline.maxRssBytes)} MiB default, ${mb(baselineTuned.maxRssBytes)} MiB tuned ` +
      `(tuned = node ${TUNED_NODE_FLAGS.join(' ')}, MALLOC_ARENA_MAX=1 and a minor GC every 4 MiB of payload + output, as the agent runs apply). abota apply verifies every block with @abota/verity's BlockVerifier.`,
  );
  console.log(lines.join('\n'));
  const tag = [only ? only.join('-') : 'all', ...(pairs ?? [])].join('-');
  writeFileSync(
    join(ROOT, `results-${tag}.json`),
    `${JSON.stringify({ baselineRssBytes: baseline.maxRssBytes, rows }, null, 2)}\n`,
  );
  await rm(BUILD, { recursive: true, force: true });
}

await main();
