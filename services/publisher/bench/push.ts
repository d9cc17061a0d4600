// Benchmark of `abota release push` (npx tsx --conditions=@abota/source bench/push.ts): a release of
// BENCH_PUSH_MIB (512) MiB of incompressible data (codec none, so the artifact is that size) pushed
// to a real update server (in this process: PGlite + FsBlobStore in a temp dir, 127.0.0.1), with
// the CLI in a child process under GNU time. Reference in the same run: `curl -T` of the same
// artifact to the same endpoint. Then a re-push with everything present (HEADs + the manifest).
// Then resumable uploads (upload sessions, 8 MiB parts): the artifact pushed in parts, and a push
// interrupted (SIGINT) once the server holds half of the artifact's parts, re-run to resume.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomFillSync } from 'node:crypto';
import { open, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, DEFAULT_APP_CONFIG, generateSecret, startServer } from '@abota/update-server';
import { initTrustRoot } from '../src/keys/trust-root.js';
import { buildRelease } from '../src/release/build.js';

const MiB = 1024 * 1024;
const sizeMiB = Number(process.env['BENCH_PUSH_MIB'] ?? 512);

interface Timing {
  wallS: number;
  cpuS: number;
  maxRssMiB: number;
  stdout: string;
}

// Asynchronous on purpose: the server runs in this process and must keep answering meanwhile.
function timed(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<Timing> {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', '@@%e %U %S %M', ...argv], { env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (status) => {
      const m = /@@([\d.]+) ([\d.]+) ([\d.]+) (\d+)\s*$/.exec(stderr);
      if (status !== 0 || m === null) {
        reject(new Error(`${argv.join(' ')} failed (${status}): ${stderr} ${stdout}`));
        return;
      }
      resolve({
        wallS: Number(m[1]),
        cpuS: Number(m[2]) + Number(m[3]),
        maxRssMiB: Number(m[4]) / 1024,
        stdout,
      });
    });
  });
}

const work = await mkdtemp(join(tmpdir(), 'abota-push-bench-'));
try {
  const image = join(work, 'rootfs.img');
  const fh = await open(image, 'w');
  const chunk = Buffer.alloc(4 * MiB);
  for (let i = 0; i < sizeMiB / 4; i++) await fh.write(randomFillSync(chunk));
  await fh.close();
  const keys = join(work, 'keys');
  await initTrustRoot(keys, {
    root: { keys: 1, threshold: 1 },
    release: { keys: 1, threshold: 1 },
    expiresInMs: 86_400_000,
  });
  const dir = join(work, 'release');
  const built = await buildRelease({
    images: { rootfs: image },
    product: 'bench',
    compatible: ['qemu-x64'],
    version: '1.0.0',
    securityVersion: 1,
    expires: '1d',
    keysDir: keys,
    outDir: dir,
    codec: { codec: 'none', quality: 0, lgwin: 24 },
  });
  const artifact = built.images.rootfs!.artifact;
  const adminKey = generateSecret('abk');
  const server = await startServer({
    config: {
      ...DEFAULT_APP_CONFIG,
      blobDelivery: 'stream',
      host: '127.0.0.1',
      port: 0,
      dataDir: join(work, 'server'),
      databaseUrl: undefined,
      databasePoolSize: 1,
      s3: undefined,
      adminKey,
      logLevel: 'warn',
      shutdownTimeoutMs: 2000,
    },
    logger: createLogger({ level: 'warn' }),
  });
  try {
    const hex = artifact.digest.slice('sha256:'.length);
    const blobUrl = `${server.url}/v1/admin/blobs/sha256/${hex}`;
    // Reference: curl streams the same artifact to the same endpoint; then the blob is removed
    // again (straight from the store) so the push below uploads it too.
    const curl = await timed([
      'curl',
      '-sS',
      '--fail-with-body',
      '-T',
      join(dir, 'blobs', 'sha256', hex),
      '-H',
      `authorization: Bearer ${adminKey}`,
      '-H',
      'content-type: application/octet-stream',
      '-H',
      'expect:',
      blobUrl,
    ]);
    await server.blobs.delete(`sha256/${hex}`);

    const env = { ...process.env, ABOTA_SERVER: server.url, ABOTA_API_KEY: adminKey };
    const cli = ['npx', 'tsx', '--conditions=@abota/source', join(import.meta.dirname, 'push-cli.ts')];
    const baseline = await timed([...cli, 'keys', 'show', keys, '--json'], env);
    const create = await timed(
      [...cli, 'product', 'create', 'bench', '--root', join(keys, 'root.json')],
      env,
    );
    const push = await timed([...cli, 'release', 'push', dir, '--json'], env);
    const again = await timed([...cli, 'release', 'push', dir, '--json'], env);
    const first = JSON.parse(push.stdout) as {
      uploadedBytes: number;
      durationsMs: { check: number; upload: number };
    };
    const second = JSON.parse(again.stdout) as { uploadedBytes: number; durationsMs: { total: number } };
    // Resumable uploads: the artifact again, in parts of an upload session.
    const key = `sha256/${hex}`;
    await server.blobs.delete(key);
    const inParts = await timed([...cli, 'release', 'push', dir, '--json', '--resumable-over-mib', '1'], env);
    const partsSummary = JSON.parse(inParts.stdout) as {
      uploadedBytes: number;
      durationsMs: { upload: number };
    };
    // Interrupted at half (SIGINT, as Ctrl-C), then resumed by a re-run.
    await server.blobs.delete(key);
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--conditions=@abota/source',
        join(import.meta.dirname, 'push-cli.ts'),
        'release',
        'push',
        dir,
        '--json',
        '--resumable-over-mib',
        '1',
      ],
      { env, stdio: 'ignore' },
    );
    const exited = once(child, 'exit');
    let heldAtCut = 0;
    for (;;) {
      await new Promise((r) => setTimeout(r, 50));
      const [session] = await server.blobs.listUploads({ key });
      if (session !== undefined && session.receivedBytes >= artifact.sizeBytes / 2) {
        child.kill('SIGINT');
        heldAtCut = session.receivedBytes;
        break;
      }
    }
    const [cutStatus] = (await exited) as [number | null];
    const [afterCut] = await server.blobs.listUploads({ key });
    const resumed = await timed([...cli, 'release', 'push', dir, '--json', '--resumable-over-mib', '1'], env);
    const resumedSummary = JSON.parse(resumed.stdout) as {
      uploadedBytes: number;
      resumedBytes: number;
      durationsMs: { upload: number };
    };
    const mib = (artifact.sizeBytes + built.images.rootfs!.hashTree.sizeBytes) / MiB;
    const row = (name: string, t: Timing, extra = '') =>
      console.log(
        `${name.padEnd(34)} wall ${t.wallS.toFixed(2)} s  cpu ${t.cpuS.toFixed(2)} s  peak RSS ${t.maxRssMiB.toFixed(0)} MiB${extra}`,
      );
    console.log(
      `release: ${sizeMiB} MiB image, codec none → ${mib.toFixed(1)} MiB of blobs; server in-process on ${server.url}`,
    );
    row(
      'curl -T artifact (reference)',
      curl,
      `  ${(artifact.sizeBytes / MiB / curl.wallS).toFixed(0)} MiB/s`,
    );
    row('abota keys show (process baseline)', baseline);
    row('abota product create', create);
    row(
      'abota release push (all blobs)',
      push,
      `  local check ${first.durationsMs.check} ms, upload ${first.durationsMs.upload} ms = ${(first.uploadedBytes / MiB / (first.durationsMs.upload / 1000)).toFixed(0)} MiB/s`,
    );
    row(
      'abota release push (all present)',
      again,
      `  uploaded ${second.uploadedBytes} bytes in ${second.durationsMs.total} ms`,
    );
    row(
      'abota release push (artifact in parts)',
      inParts,
      `  upload ${partsSummary.durationsMs.upload} ms = ${(partsSummary.uploadedBytes / MiB / (partsSummary.durationsMs.upload / 1000)).toFixed(0)} MiB/s`,
    );
    console.log(
      `interrupted push: SIGINT when the server held ${(heldAtCut / MiB).toFixed(0)} MiB of ${(artifact.sizeBytes / MiB).toFixed(0)}; exit ${cutStatus}; session kept ${((afterCut?.receivedBytes ?? 0) / MiB).toFixed(0)} MiB in ${afterCut?.parts.length ?? 0} parts`,
    );
    row(
      'abota release push (resumed)',
      resumed,
      `  sent ${(resumedSummary.uploadedBytes / MiB).toFixed(0)} MiB, resumed ${(resumedSummary.resumedBytes / MiB).toFixed(0)} MiB, upload phase ${resumedSummary.durationsMs.upload} ms`,
    );
    console.log(
      `push upload time / curl wall: ${(first.durationsMs.upload / 1000 / curl.wallS).toFixed(2)}×; peak RSS of the uploading push above the all-present one: ${(push.maxRssMiB - again.maxRssMiB).toFixed(0)} MiB for ${mib.toFixed(0)} MiB pushed`,
    );
  } finally {
    await server.close();
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
