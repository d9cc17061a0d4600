// `abota release push` of a release with deltas.json (docs/CONTRACTS.md "Deltas end to end"),
// against the real update server (startServer: PGlite + FsBlobStore) and real releases from
// `abota release build` + `abota release add-delta`: the delta blob is uploaded with the others
// and registered after the manifest (201, then 200 on a re-run); a malformed deltas.json stops the
// push before any request.
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createLogger,
  DEFAULT_APP_CONFIG,
  generateSecret,
  type RunningServer,
  startServer,
} from '@abota/update-server';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { runCli } from '../test-support/run-cli.js';

const PRODUCT = 'delta-push-test';

/** A 4 MiB raw image: xorshift blocks and zero runs; `flip` changes a few blocks for the next version. */
function rawImage(seed: number, flip: number[] = []): Buffer {
  const buf = Buffer.alloc(1024 * 4096);
  let x = seed >>> 0 || 1;
  for (let block = 0; block < 1024; block += 2) {
    for (let i = block * 4096; i < (block + 1) * 4096; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      buf.writeUInt32LE(x >>> 0, i);
    }
  }
  for (const block of flip) buf.fill(0xab, block * 4096, block * 4096 + 4096);
  return buf;
}

describe('release push with deltas.json', () => {
  let work: string;
  let keys: string;
  let server: RunningServer;
  let adminKey: string;
  let requests: string[];
  const realFetch = globalThis.fetch;
  const dirs: Record<string, string> = {};

  async function build(version: string, image: Buffer): Promise<string> {
    const path = join(work, `rootfs-${version}.img`);
    await writeFile(path, image);
    const out = join(work, 'releases', version);
    const r = await runCli(
      ...['release', 'build', '--image', path, '--product', PRODUCT, '--compatible', 'qemu-x64'],
      ...[
        '--version',
        version,
        '--security-version',
        '1',
        '--expires',
        '30d',
        '--keys',
        keys,
        '--out',
        out,
        '--json',
      ],
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
    return out;
  }

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'abota-push-deltas-'));
    keys = join(work, 'keys');
    expect((await runCli('keys', 'init', keys, '--json')).code).toBe(0);
    dirs['1.0.0'] = await build('1.0.0', rawImage(5));
    dirs['1.1.0'] = await build('1.1.0', rawImage(5, [1, 3, 500, 1001]));
    adminKey = generateSecret('abk');
    server = await startServer({
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
        logLevel: 'silent',
        shutdownTimeoutMs: 2000,
      },
      logger: createLogger({ level: 'silent' }),
    });
    const product = await realFetch(`${server.url}/v1/admin/products`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        id: PRODUCT,
        trustRoot: JSON.parse(await readFile(join(keys, 'root.json'), 'utf8')),
      }),
    });
    expect(product.status).toBe(201);
  }, 180_000);

  afterAll(async () => {
    await server?.close();
    await rm(work, { recursive: true, force: true });
  });

  beforeEach(() => {
    requests = [];
    const spy = vi.spyOn(globalThis, 'fetch').mockImplementation((input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      requests.push(`${init?.method ?? 'GET'} ${url.pathname}`);
      return realFetch(input, init);
    });
    vi.stubEnv('ABOTA_SERVER', server.url);
    vi.stubEnv('ABOTA_API_KEY', adminKey);
    return () => {
      spy.mockRestore();
      vi.unstubAllEnvs();
    };
  });

  it('uploads the delta blob, registers the delta after the manifest, and a re-run finds it registered', async () => {
    const first = await runCli('release', 'push', dirs['1.0.0']!, '--json');
    expect(first.code, first.stdout + first.stderr).toBe(0);
    const add = await runCli('release', 'add-delta', dirs['1.1.0']!, '--from', dirs['1.0.0']!, '--json');
    expect(add.code, add.stdout + add.stderr).toBe(0);
    const listed = JSON.parse(await readFile(join(dirs['1.1.0']!, 'deltas.json'), 'utf8')) as {
      deltas: {
        image: string;
        sourceVersion: string;
        sourceRootHash: string;
        digest: string;
        sizeBytes: number;
      }[];
    };
    const [delta] = listed.deltas;
    expect(delta).toBeDefined();

    requests = [];
    const r = await runCli('release', 'push', dirs['1.1.0']!, '--json');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as {
      releaseId: string;
      blobs: { digest: string; role: string; action: string }[];
      deltas: { image: string; sourceVersion: string; digest: string; created: boolean; id: string }[];
    };
    expect(summary.blobs).toContainEqual(
      expect.objectContaining({
        digest: delta?.digest,
        role: 'deltas.rootfs.from.1.0.0',
        action: 'uploaded',
      }),
    );
    expect(summary.deltas).toEqual([
      {
        image: 'rootfs',
        sourceVersion: '1.0.0',
        sourceRootHash: delta?.sourceRootHash,
        digest: delta?.digest,
        sizeBytes: delta?.sizeBytes,
        id: expect.any(String),
        created: true,
      },
    ]);
    const release = requests.indexOf('POST /v1/admin/releases');
    const registration = requests.indexOf(`POST /v1/admin/releases/${summary.releaseId}/deltas`);
    expect(release).toBeGreaterThan(-1);
    expect(registration, 'registered after the manifest').toBeGreaterThan(release);
    expect(requests).toContain(`PUT /v1/admin/blobs/sha256/${delta?.digest.slice(7)}`);

    const onServer = await realFetch(`${server.url}/v1/admin/releases/${summary.releaseId}/deltas`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    expect(onServer.status).toBe(200);
    expect(JSON.stringify(await onServer.json())).toContain(delta?.digest ?? 'missing');

    requests = [];
    const again = await runCli('release', 'push', dirs['1.1.0']!, '--json');
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(requests.filter((q) => q.startsWith('PUT '))).toEqual([]);
    expect((JSON.parse(again.stdout) as typeof summary).deltas.map((d) => d.created)).toEqual([false]);
  });

  it('a malformed deltas.json stops the push before any request', async () => {
    const copy = join(work, 'bad-deltas');
    await cp(dirs['1.0.0']!, copy, { recursive: true });
    await writeFile(
      join(copy, 'deltas.json'),
      JSON.stringify({
        schemaVersion: 1,
        deltas: [{ image: 'rootfs', sourceVersion: '0.9.0', digest: 'sha256:xyz' }],
      }),
    );
    const r = await runCli('release', 'push', copy, '--json');
    expect(r.code).toBe(3);
    expect(JSON.parse(r.stdout)).toMatchObject({
      ok: false,
      error: {
        code: 'ERR_RELEASE_DELTAS_INVALID',
        message: expect.stringContaining('deltas[0].sourceRootHash'),
      },
    });
    expect(requests).toEqual([]);
  });
});
