// `abota release push` of large blobs through resumable upload sessions, against the real update
// server (startServer: PGlite + FsBlobStore in a temporary directory) and real releases from
// `abota keys init` + `abota release build`: a push cut off in the middle of a part is resumed by
// the re-run, which sends only the parts the server lacks — found through .push-state.json, or by
// asking the server when that file is gone; a part whose connection fails is retried alone.
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
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
import { AdminConnection } from '../server-api/client.js';
import { AdminApiError } from '../server-api/error.js';
import { runCli } from '../test-support/run-cli.js';
import { pushReleaseDir } from './push.js';
import { PUSH_STATE_FILE } from './push-upload.js';

const KiB = 1024;
const PART = 512 * KiB;
const PRODUCT = 'resume-test';

/** Zero runs (compressible) and xorshift blocks: `blocks` × 4096 bytes. */
function rawImage(blocks: number, seed: number): Buffer {
  const buf = Buffer.alloc(blocks * 4096);
  let x = seed >>> 0 || 1;
  for (let block = 0; block < blocks; block += 2) {
    for (let i = block * 4096; i < (block + 1) * 4096; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      buf.writeUInt32LE(x >>> 0, i);
    }
  }
  return buf;
}

interface Manifest {
  images: { rootfs: { artifact: { digest: string; sizeBytes: number } } };
}

describe('release push resumes inside a large blob (upload sessions)', () => {
  let work: string;
  let keys: string;
  let server: RunningServer;
  let adminKey: string;
  let requests: string[];
  const realFetch = globalThis.fetch;

  const partPuts = (): string[] =>
    requests.filter((r) => /^PUT \/v1\/admin\/uploads\/[0-9a-f]{32}\/parts\//.test(r));

  async function buildRelease(
    version: string,
    seed: number,
  ): Promise<{ dir: string; artifact: { digest: string; sizeBytes: number } }> {
    const image = join(work, `rootfs-${version}.img`);
    await writeFile(image, rawImage(2048, seed));
    const dir = join(work, 'releases', version);
    const r = await runCli(
      ...['release', 'build', '--image', image, '--product', PRODUCT, '--compatible', 'qemu-x64'],
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
        dir,
        '--json',
      ],
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest;
    return { dir, artifact: manifest.images.rootfs.artifact };
  }

  async function openSessions(
    digest: string,
  ): Promise<{ uploadId: string; parts: { partNumber: number }[] }[]> {
    const res = await realFetch(`${server.url}/v1/admin/uploads?digest=${digest}`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    return ((await res.json()) as { items: { uploadId: string; parts: { partNumber: number }[] }[] }).items;
  }

  /**
   * A client whose 4th part PUT sends the first half of the part, then the push is interrupted
   * (the AbortSignal fires, the stream fails): three parts are stored, the fourth is not.
   */
  async function interruptedPush(dir: string): Promise<void> {
    const interrupt = new AbortController();
    let parts = 0;
    const client = new AdminConnection({
      serverUrl: server.url,
      apiKey: adminKey,
      fetch: (input, init) => {
        const url = String(input instanceof Request ? input.url : input);
        if (init?.method === 'PUT' && url.includes('/parts/') && ++parts === 4) {
          const reader = (init.body as ReadableStream<Uint8Array>).getReader();
          let chunks = 0;
          const cut = new ReadableStream<Uint8Array>({
            async pull(controller) {
              if (chunks++ === 1) {
                interrupt.abort();
                controller.error(new Error('interrupted by the test'));
                return;
              }
              const { done, value } = await reader.read();
              if (done) controller.close();
              else controller.enqueue(value);
            },
          });
          return realFetch(input, { ...init, body: cut } as RequestInit);
        }
        return realFetch(input, init);
      },
    });
    const failure = await pushReleaseDir({
      dir,
      client,
      signal: interrupt.signal,
      sessionThresholdBytes: 1024 * KiB,
      partSizeBytes: PART,
    }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(AdminApiError);
    expect((failure as AdminApiError).code).toBe('ERR_INTERRUPTED');
  }

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'abota-push-resume-'));
    keys = join(work, 'keys');
    expect((await runCli('keys', 'init', keys, '--json')).code).toBe(0);
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
  }, 120_000);

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

  it('a push cut off in the middle of part 4 is resumed by the re-run, which sends only parts 4.. and reports the resumed bytes', async () => {
    const { dir, artifact } = await buildRelease('1.0.0', 11);
    const partCount = Math.ceil(artifact.sizeBytes / PART);
    expect(partCount, 'the artifact spans several parts').toBeGreaterThanOrEqual(6);
    await interruptedPush(dir);

    const [session, ...others] = await openSessions(artifact.digest);
    expect(others).toEqual([]);
    expect(session?.parts.map((p) => p.partNumber)).toEqual([1, 2, 3]);
    const state = JSON.parse(await readFile(join(dir, PUSH_STATE_FILE), 'utf8')) as {
      uploads: Record<string, Record<string, string>>;
    };
    expect(Object.values(state.uploads)[0]?.[artifact.digest]).toBe(session?.uploadId);
    expect(await server.blobs.head(`sha256/${artifact.digest.slice(7)}`)).toBeUndefined();

    requests = [];
    const r = await runCli('release', 'push', dir, '--json', '--resumable-over-mib', '1');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const expected = Array.from(
      { length: partCount - 3 },
      (_, i) => `PUT /v1/admin/uploads/${session?.uploadId}/parts/${i + 4}`,
    );
    expect(partPuts()).toEqual(expected);
    expect(requests.filter((q) => q.startsWith('PUT /v1/admin/blobs/'))).toEqual([]);
    expect(requests.filter((q) => q.startsWith('POST /v1/admin/uploads'))).toEqual([
      `POST /v1/admin/uploads/${session?.uploadId}/complete`,
    ]);
    const summary = JSON.parse(r.stdout) as {
      created: boolean;
      resumedBytes: number;
      uploadedBytes: number;
      blobs: {
        digest: string;
        sizeBytes: number;
        action: string;
        method?: string;
        uploadedBytes: number;
        resumedBytes: number;
        uploadId?: string;
      }[];
    };
    expect(summary.created).toBe(true);
    expect(summary.blobs.find((b) => b.digest === artifact.digest)).toEqual({
      digest: artifact.digest,
      sizeBytes: artifact.sizeBytes,
      role: 'images.rootfs.artifact',
      action: 'uploaded',
      method: 'parts',
      uploadedBytes: artifact.sizeBytes - 3 * PART,
      resumedBytes: 3 * PART,
      uploadId: session?.uploadId,
    });
    expect(summary.resumedBytes).toBe(3 * PART);
    await expect(
      stat(join(dir, PUSH_STATE_FILE)),
      'the state file is removed when nothing is open',
    ).rejects.toThrow();
    const res = await realFetch(`${server.url}/v1/device/blobs/sha256/${artifact.digest.slice(7)}`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    const local = await readFile(join(dir, 'blobs', 'sha256', artifact.digest.slice(7)));
    expect(Buffer.from(await res.arrayBuffer()).equals(local)).toBe(true);
  });

  it('without .push-state.json the re-run finds the open session by digest on the server', async () => {
    const { dir, artifact } = await buildRelease('1.1.0', 12);
    await interruptedPush(dir);
    await rm(join(dir, PUSH_STATE_FILE));
    const [session] = await openSessions(artifact.digest);
    requests = [];
    const r = await runCli('release', 'push', dir, '--json', '--resumable-over-mib', '1');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(partPuts()[0]).toBe(`PUT /v1/admin/uploads/${session?.uploadId}/parts/4`);
    expect(partPuts()).toHaveLength(Math.ceil(artifact.sizeBytes / PART) - 3);
    expect(requests).toContain(`GET /v1/admin/uploads`);
    expect(await openSessions(artifact.digest)).toEqual([]);
  });

  it('when the remembered session expired on the server, the re-run starts a new one and sends every part', async () => {
    const { dir, artifact } = await buildRelease('1.3.0', 14);
    await interruptedPush(dir);
    const [session] = await openSessions(artifact.digest);
    // What the server's maintenance does to a session idle for too long.
    expect(await server.blobs.gcUploads(new Date(Date.now() + 3600_000))).toBeGreaterThanOrEqual(1);
    requests = [];
    const r = await runCli('release', 'push', dir, '--json', '--resumable-over-mib', '1');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(requests).toContain(`GET /v1/admin/uploads/${session?.uploadId}`);
    const blob = (
      JSON.parse(r.stdout) as {
        blobs: { digest: string; uploadedBytes: number; resumedBytes: number; uploadId?: string }[];
      }
    ).blobs.find((b) => b.digest === artifact.digest);
    expect(blob).toMatchObject({ uploadedBytes: artifact.sizeBytes, resumedBytes: 0 });
    expect(blob?.uploadId).not.toBe(session?.uploadId);
    // The new session has the server's default part size (8 MiB): the whole artifact in part 1.
    expect(partPuts()).toEqual([`PUT /v1/admin/uploads/${blob?.uploadId}/parts/1`]);
  });

  it('a part whose connection fails mid-way is retried alone with the same bytes; the blob arrives intact', async () => {
    const { dir, artifact } = await buildRelease('1.2.0', 13);
    const attempts = new Map<string, number>();
    let failed = false;
    const client = new AdminConnection({
      serverUrl: server.url,
      apiKey: adminKey,
      retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 2 },
      fetch: (input, init) => {
        const url = String(input instanceof Request ? input.url : input);
        if (init?.method === 'PUT' && url.includes('/parts/')) {
          const n = url.slice(url.lastIndexOf('/') + 1);
          attempts.set(n, (attempts.get(n) ?? 0) + 1);
          if (n === '2' && !failed) {
            failed = true;
            const reader = (init.body as ReadableStream<Uint8Array>).getReader();
            let chunks = 0;
            const cut = new ReadableStream<Uint8Array>({
              async pull(controller) {
                if (chunks++ === 1) {
                  controller.error(Object.assign(new Error('connection reset'), { code: 'ECONNRESET' }));
                  return;
                }
                const { done, value } = await reader.read();
                if (done) controller.close();
                else controller.enqueue(value);
              },
            });
            return realFetch(input, { ...init, body: cut } as RequestInit);
          }
        }
        return realFetch(input, init);
      },
    });
    const summary = await pushReleaseDir({
      dir,
      client,
      sessionThresholdBytes: 1024 * KiB,
      partSizeBytes: PART,
    });
    const partCount = Math.ceil(artifact.sizeBytes / PART);
    expect([...attempts.entries()].sort((a, b) => Number(a[0]) - Number(b[0]))).toEqual(
      Array.from({ length: partCount }, (_, i) => [String(i + 1), i === 1 ? 2 : 1]),
    );
    expect(client.retriesDone).toBe(1);
    expect(summary.blobs.find((b) => b.digest === artifact.digest)).toMatchObject({
      method: 'parts',
      uploadedBytes: artifact.sizeBytes,
      resumedBytes: 0,
    });
    const stored = await server.blobs.get(`sha256/${artifact.digest.slice(7)}`);
    const hash = createHash('sha256');
    for await (const chunk of stored.body) hash.update(chunk);
    expect(`sha256:${hash.digest('hex')}`).toBe(artifact.digest);
  });

  it('against a server without upload sessions (an older one: "no route"), a large blob goes as one PUT', async () => {
    const { dir, artifact } = await buildRelease('1.4.0', 15);
    const client = new AdminConnection({
      serverUrl: server.url,
      apiKey: adminKey,
      fetch: (input, init) => {
        const url = new URL(String(input instanceof Request ? input.url : input));
        requests.push(`${init?.method ?? 'GET'} ${url.pathname}`);
        if (url.pathname.startsWith('/v1/admin/uploads')) {
          // What this server's notFound handler answers for a path it does not route.
          return Promise.resolve(
            new Response(
              JSON.stringify({
                error: {
                  code: 'ERR_NOT_FOUND',
                  message: `no route for ${init?.method ?? 'GET'} ${url.pathname}`,
                },
              }),
              { status: 404, headers: { 'content-type': 'application/json' } },
            ),
          );
        }
        return realFetch(input, init);
      },
    });
    const summary = await pushReleaseDir({
      dir,
      client,
      sessionThresholdBytes: 1024 * KiB,
      partSizeBytes: PART,
    });
    expect(summary.blobs.find((b) => b.digest === artifact.digest)).toMatchObject({
      action: 'uploaded',
      method: 'put',
      uploadedBytes: artifact.sizeBytes,
    });
    expect(requests).toContain(`POST /v1/admin/uploads`);
    expect(partPuts()).toEqual([]);
    expect(requests).toContain(`PUT /v1/admin/blobs/sha256/${artifact.digest.slice(7)}`);
  });

  it('--resumable-over-mib must be a whole number of MiB', async () => {
    const r = await runCli('release', 'push', join(work, 'nowhere'), '--resumable-over-mib', 'lots');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^abota: ERR_USAGE: --resumable-over-mib "lots"/);
  });
});
