// Shared by the poll benches (run.ts, conditional-poll.ts, shedding.ts): the PostgreSQL admin
// connection, a scratch database and blob directory per run, pre-signed device JWTs, per-process CPU from /proc, a product with a signed release and an
// active rollout to the `canary` tag, a fleet of devices with their own keys, and the server
// process (server.ts).
import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync, type KeyObject, randomUUID, sign } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createTrustRoot, generateSigningKey, signManifest, signTrustRoot } from '@abota/manifest';
import pg from 'pg';
import { type Database, schema } from '../src/index.js';

export const ADMIN_URL = process.env['ABOTA_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
export const PRODUCT = 'eflow-vm';
const b64url = (s: string | Buffer) => Buffer.from(s).toString('base64url');

export async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: ADMIN_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** A run's own database (on the admin URL's server) and blob directory; `drop()` removes both. */
export async function benchScratch(): Promise<{
  dbName: string;
  dbUrl: string;
  blobDir: string;
  drop: () => Promise<void>;
}> {
  const dbName = `abota_bench_${randomBytes(4).toString('hex')}`;
  const dbUrl = new URL(ADMIN_URL);
  dbUrl.pathname = `/${dbName}`;
  const blobDir = await mkdtemp(join(tmpdir(), 'abota-bench-'));
  await withAdmin((c) => c.query(`CREATE DATABASE ${dbName}`));
  const drop = async () => {
    await withAdmin((c) => c.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`));
    await rm(blobDir, { recursive: true, force: true });
  };
  return { dbName, dbUrl: dbUrl.toString(), blobDir, drop };
}

/** SIGTERM a bench server started by startBenchServer and wait for it to exit (no-op if gone). */
export async function stopBenchServer(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null) return;
  const exited = new Promise((ok) => child.once('exit', ok));
  child.kill('SIGTERM');
  await exited;
}

/** A compact JWS (EdDSA) signed with node:crypto directly: the pool is large, jose's per-call overhead is not needed. */
export function deviceJwt(deviceId: string, key: KeyObject, nowSeconds: number): string {
  const header = b64url('{"alg":"EdDSA"}');
  const payload = b64url(
    JSON.stringify({
      iss: deviceId,
      sub: deviceId,
      aud: 'abota',
      iat: nowSeconds,
      exp: nowSeconds + 300,
      jti: randomUUID(),
    }),
  );
  return `${header}.${payload}.${sign(null, Buffer.from(`${header}.${payload}`), key).toString('base64url')}`;
}

/** CPU time (ms) used so far by each of the given processes, from /proc (Linux): where a request's cost goes. */
export async function cpuMsByPid(
  pids: number[],
  statPath = (pid: number) => `/proc/${pid}/stat`,
): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const pid of pids) {
    try {
      const stat = await readFile(statPath(pid), 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(pid, (Number(fields[11]) + Number(fields[12])) * 10); // utime + stime, USER_HZ = 100
    } catch {
      // the process ended (e.g. a PostgreSQL backend closed)
    }
  }
  return out;
}

export async function cpuMs(pids: number[], statPath?: (pid: number) => string): Promise<number> {
  let ms = 0;
  for (const v of (await cpuMsByPid(pids, statPath)).values()) ms += v;
  return ms;
}

/**
 * A product, a signed release (2.0.0, two blobs) and an active rollout to the `canary` tag: every
 * poll runs the full offer query; canary devices get an offer, the rest no-update.
 */
export async function seedCanaryRelease(db: Database['db']): Promise<void> {
  const rootKey = await generateSigningKey();
  const releaseKey = await generateSigningKey();
  const root = await createTrustRoot({
    version: 1,
    expires: new Date(Date.now() + 86400_000 * 365),
    rootKeys: [rootKey],
    rootThreshold: 1,
    releaseKeys: [releaseKey],
    releaseThreshold: 1,
  });
  await db
    .insert(schema.products)
    .values({ id: PRODUCT, trustRoot: await signTrustRoot(root, [rootKey]), trustRootVersion: 1 });
  const digest = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;
  const manifest = {
    schemaVersion: 1 as const,
    product: PRODUCT,
    compatible: ['hyperv-x64'],
    version: '2.0.0',
    securityVersion: 1,
    created: '2026-11-25T12:00:00Z',
    expires: '2027-11-25T12:00:00Z',
    images: {
      rootfs: {
        sizeBytes: 8192,
        verity: {
          hashType: 1 as const,
          algorithm: 'sha256' as const,
          dataBlockSize: 4096 as const,
          hashBlockSize: 4096 as const,
          dataBlocks: 2,
          salt: '00',
          rootHash: 'ab'.repeat(32),
          superblock: true,
          hashOffset: 0,
          hashTree: { digest: digest(2), sizeBytes: 4096 },
        },
        artifact: {
          digest: digest(1),
          sizeBytes: 8192,
          codec: 'none' as const,
          uncompressedSizeBytes: 8192,
        },
      },
    },
  };
  const jws = JSON.stringify(await signManifest(manifest, [releaseKey], root));
  await db.insert(schema.blobs).values([
    { digest: digest(1), sizeBytes: 8192 },
    { digest: digest(2), sizeBytes: 4096 },
  ]);
  const [release] = await db
    .insert(schema.releases)
    .values({
      product: PRODUCT,
      version: '2.0.0',
      securityVersion: 1,
      compatible: ['hyperv-x64'],
      expires: new Date(manifest.expires),
      manifestJws: jws,
      manifest,
    })
    .returning();
  if (release === undefined) throw new Error('release insert failed');
  await db.insert(schema.releaseBlobs).values([
    { releaseId: release.id, digest: digest(1), role: 'images.rootfs.artifact' },
    { releaseId: release.id, digest: digest(2), role: 'images.rootfs.verity.hashTree' },
  ]);
  await db
    .insert(schema.rollouts)
    .values({ releaseId: release.id, product: PRODUCT, selector: { tags: ['canary'] } });
}

/** `count` devices on 1.0.0, each with its own Ed25519 key, inserted in batches. */
export async function insertDevices(
  db: Database['db'],
  count: number,
  canary: (index: number) => boolean,
): Promise<{ id: string; key: KeyObject }[]> {
  const keys: { id: string; key: KeyObject }[] = [];
  const BATCH = 2000;
  for (let i = 0; i < count; i += BATCH) {
    const rows = [];
    for (let j = i; j < Math.min(count, i + BATCH); j++) {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      const id = randomUUID();
      keys.push({ id, key: privateKey });
      const x = (publicKey.export({ format: 'jwk' }) as { x: string }).x;
      rows.push({
        id,
        product: PRODUCT,
        hardware: 'hyperv-x64',
        publicKeyJwk: { kty: 'OKP' as const, crv: 'Ed25519' as const, x },
        tags: canary(j) ? ['canary'] : [],
        currentVersion: '1.0.0',
      });
    }
    await db.insert(schema.devices).values(rows);
  }
  return keys;
}

/** Start bench/server.ts over `dbUrl`; resolves once it listens. */
export async function startBenchServer(
  dbUrl: string,
  blobDir: string,
): Promise<{ child: ChildProcess; base: string }> {
  const args = [
    ...(process.env['BENCH_PROFILE'] === '1' ? ['--cpu-prof', '--cpu-prof-dir=/tmp/abota-prof'] : []),
    '--conditions=@abota/source',
    '--import',
    'tsx',
    fileURLToPath(new URL('./server.ts', import.meta.url)),
  ];
  // BENCH_SERVER_CPUS (e.g. "0"): the server runs on those cores only (taskset, util-linux), so a
  // load generator pinned elsewhere does not take its CPU.
  // BENCH_SERVER_NICE (e.g. "-10", as root): the server's scheduling priority against
  // PostgreSQL's backends when they share its cores.
  const cpus = process.env['BENCH_SERVER_CPUS'];
  const nice = process.env['BENCH_SERVER_NICE'];
  const command = [
    ...(nice === undefined ? [] : ['nice', '-n', nice]),
    ...(cpus === undefined ? [] : ['taskset', '-c', cpus]),
    process.execPath,
    ...args,
  ];
  const child = spawn(command[0]!, command.slice(1), {
    env: { ...process.env, DATABASE_URL: dbUrl, BENCH_BLOB_DIR: blobDir },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const childOut = child.stdout;
  if (childOut === null) throw new Error('no stdout from the server process');
  const port = await new Promise<number>((ok, fail) => {
    createInterface({ input: childOut }).once('line', (line) =>
      ok((JSON.parse(line) as { port: number }).port),
    );
    child.once('exit', (code) => fail(new Error(`server exited with ${code}`)));
  });
  return { child, base: `http://127.0.0.1:${port}` };
}
