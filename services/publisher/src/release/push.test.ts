// `abota release push`, `product create|set-root`, `token create`, `device list` in-process through
// main(), against the real update server (startServer: Hono on 127.0.0.1:0, PGlite, FsBlobStore in
// a temporary directory) and real releases made by `abota keys init` + `abota release build`.
// PUTs are counted by wrapping the global fetch the CLI uses.
import { createHash, generateKeyPairSync } from 'node:crypto';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createLogger,
  DEFAULT_APP_CONFIG,
  generateSecret,
  type RunningServer,
  type ServerConfig,
  startServer,
} from '@abota/update-server';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { type CliRun, runCli } from '../test-support/run-cli.js';
import { AdminConnection } from '../server-api/client.js';
import { AdminApiError } from '../server-api/error.js';
import { pushManifest, putBlobFile, remoteBlobSize } from './push-calls.js';
import { pushReleaseDir } from './push.js';

type Run = CliRun;

const abota = runCli;

function jsonOf<T = Record<string, unknown>>(r: Run): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout} ${r.stderr}`);
  }
}

function errorCode(r: Run): string {
  return jsonOf<{ error: { code: string } }>(r).error.code;
}

/** A raw "filesystem image": zero runs (compressible) and pseudo-random blocks, `blocks` × 4096 bytes. */
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

const PRODUCT = 'push-test';
/** The real fetch, before the tests wrap it. */
const realFetch = globalThis.fetch;
const IMAGE_BLOCKS = 1024; // 4 MiB

describe('abota release push and the admin commands against a real update server', () => {
  let work: string;
  let keys: string;
  let dataDir: string;
  let server: RunningServer;
  let adminKey: string;
  /** Every request the CLI made, as "METHOD path". */
  let requests: string[];
  const releases: Record<string, string> = {};

  const puts = (): string[] => requests.filter((r) => r.startsWith('PUT /v1/admin/blobs/'));

  async function admin<T>(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: T }> {
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${adminKey}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: (text === '' ? undefined : JSON.parse(text)) as T };
  }

  async function buildRelease(version: string, seed: number): Promise<string> {
    const image = join(work, `rootfs-${version}.img`);
    await writeFile(image, rawImage(IMAGE_BLOCKS, seed));
    const out = join(work, 'releases', version);
    const r = await abota(
      'release',
      'build',
      '--image',
      image,
      '--product',
      PRODUCT,
      '--compatible',
      'qemu-x64',
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
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
    return out;
  }

  /** The blobs of a release directory: hex → path. */
  async function blobsOf(dir: string): Promise<Map<string, string>> {
    const names = await readdir(join(dir, 'blobs', 'sha256'));
    return new Map(names.map((hex) => [hex, join(dir, 'blobs', 'sha256', hex)]));
  }

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'abota-push-'));
    keys = join(work, 'keys');
    dataDir = join(work, 'server');
    const init = await abota('keys', 'init', keys, '--json');
    expect(init.code, init.stdout + init.stderr).toBe(0);
    releases['1.0.0'] = await buildRelease('1.0.0', 1);
    releases['1.1.0'] = await buildRelease('1.1.0', 2);
    adminKey = generateSecret('abk');
    const config: ServerConfig = {
      ...DEFAULT_APP_CONFIG,
      blobDelivery: 'stream',
      host: '127.0.0.1',
      port: 0,
      dataDir,
      databaseUrl: undefined,
      databasePoolSize: 1,
      s3: undefined,
      adminKey,
      logLevel: 'silent',
      shutdownTimeoutMs: 2000,
    };
    server = await startServer({ config, logger: createLogger({ level: 'silent' }) });
  }, 120_000);

  afterAll(async () => {
    await server?.close();
    await rm(work, { recursive: true, force: true });
  });

  beforeEach(() => {
    requests = [];
    const original = globalThis.fetch;
    const spy = vi.spyOn(globalThis, 'fetch').mockImplementation((input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      requests.push(`${init?.method ?? 'GET'} ${url.pathname}`);
      return original(input, init);
    });
    vi.stubEnv('ABOTA_SERVER', server.url);
    vi.stubEnv('ABOTA_API_KEY', adminKey);
    return () => {
      spy.mockRestore();
      vi.unstubAllEnvs();
    };
  });

  it('refuses to push for a product the server does not have, naming `abota product create`, and uploads nothing', async () => {
    const r = await abota('release', 'push', releases['1.0.0']!);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^abota: ERR_PRODUCT_NOT_FOUND: product "push-test" does not exist/);
    expect(r.stderr).toContain(`abota product create ${PRODUCT} --root`);
    expect(puts()).toEqual([]);
  });

  it('product create registers the trust root of `abota keys init`', async () => {
    const r = await abota('product', 'create', PRODUCT, '--root', join(keys, 'root.json'), '--json');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(jsonOf(r)).toMatchObject({ ok: true, product: { id: PRODUCT, trustRootVersion: 1 } });
    const again = await abota('product', 'create', PRODUCT, '--root', join(keys, 'root.json'));
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(
      /^abota: ERR_CONFLICT: POST \/v1\/admin\/products: product "push-test" already exists/,
    );
  });

  it('pushes every blob then the manifest; the server lists the release and serves each blob byte-identical', async () => {
    const dir = releases['1.0.0']!;
    const r = await abota('release', 'push', dir, '--json');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const summary = jsonOf<{
      releaseId: string;
      version: string;
      created: boolean;
      blobs: { action: string }[];
    }>(r);
    expect(summary).toMatchObject({ ok: true, product: PRODUCT, version: '1.0.0', created: true });
    expect(summary.blobs.map((b) => b.action)).toEqual(['uploaded', 'uploaded']);
    const local = await blobsOf(dir);
    expect(puts().sort()).toEqual([...local.keys()].map((hex) => `PUT /v1/admin/blobs/sha256/${hex}`).sort());
    // The manifest goes last: the server refuses a release whose blobs are not all there.
    expect(requests.at(-1)).toBe('POST /v1/admin/releases');

    const listed = await admin<{ items: { id: string; version: string }[] }>(
      'GET',
      `/v1/admin/releases?product=${PRODUCT}`,
    );
    expect(listed.body.items).toContainEqual(
      expect.objectContaining({ id: summary.releaseId, version: '1.0.0' }),
    );
    for (const [hex, path] of local) {
      const res = await fetch(`${server.url}/v1/device/blobs/sha256/${hex}`, {
        headers: { authorization: `Bearer ${adminKey}` },
      });
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(await readFile(path))).toBe(true);
    }
  });

  it('a second push of the same release uploads no blob and reports the existing release', async () => {
    const r = await abota('release', 'push', releases['1.0.0']!);
    expect(r.code, r.stderr).toBe(0);
    expect(puts()).toEqual([]);
    expect(r.stdout).toMatch(
      /^already on the server: push-test 1\.0\.0 → http:\/\/127\.0\.0\.1:\d+ \(release id [0-9a-f-]{36}\)/,
    );
    expect(r.stdout).toContain('0 uploaded (0.0 MiB), 2 already present');
  });

  it('a blob whose bytes differ from the manifest digest is caught locally before anything is uploaded', async () => {
    const copy = join(work, 'corrupt-1.1.0');
    await cp(releases['1.1.0']!, copy, { recursive: true });
    const [hex, path] = [...(await blobsOf(copy))][0]!;
    const bytes = await readFile(path);
    const at = bytes.length >> 1;
    bytes[at] = (bytes[at] ?? 0) ^ 0x01;
    await writeFile(path, bytes);
    const r = await abota('release', 'push', copy, '--json');
    expect(r.code).toBe(3);
    expect(errorCode(r)).toBe('ERR_RELEASE_BLOB_DIGEST_MISMATCH');
    expect(jsonOf<{ error: { message: string } }>(r).error.message).toContain(hex);
    expect(puts()).toEqual([]);
  });

  it('a release directory missing a blob is refused before contacting the server', async () => {
    const copy = join(work, 'incomplete-1.1.0');
    await cp(releases['1.1.0']!, copy, { recursive: true });
    const [, path] = [...(await blobsOf(copy))][0]!;
    await rm(path);
    const r = await abota('release', 'push', copy, '--json');
    expect(r.code).toBe(3);
    expect(errorCode(r)).toBe('ERR_RELEASE_BLOB_MISSING');
    expect(requests).toEqual([]);
  });

  it('an interrupted push (aborted in the middle of the second blob) resumes: the re-run uploads only the missing blob', async () => {
    const dir = releases['1.1.0']!;
    const interrupt = new AbortController();
    let putsSeen = 0;
    const client = new AdminConnection({
      serverUrl: server.url,
      apiKey: adminKey,
      fetch: (input, init) => {
        if (init?.method === 'PUT' && ++putsSeen === 2 && init.body instanceof ReadableStream) {
          // Let the first MiB of the second blob go out, then interrupt: the server has a
          // truncated body (fewer bytes than Content-Length) and must store nothing.
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
          return fetch(input, { ...init, body: cut } as RequestInit);
        }
        return fetch(input, init);
      },
    });
    const failure = await pushReleaseDir({ dir, client, signal: interrupt.signal }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(AdminApiError);
    expect((failure as AdminApiError).code).toBe('ERR_INTERRUPTED');
    const local = await blobsOf(dir);
    const attempted = [...local.keys()].filter((hex) =>
      requests.includes(`PUT /v1/admin/blobs/sha256/${hex}`),
    );
    expect(attempted.length, 'both uploads were started').toBe(2);
    const missing: string[] = [];
    for (const hex of local.keys())
      if ((await server.blobs.head(`sha256/${hex}`)) === undefined) missing.push(hex);
    expect(missing.length, 'the aborted upload stored nothing').toBe(1);
    const before = await admin<{ items: { version: string }[] }>(
      'GET',
      `/v1/admin/releases?product=${PRODUCT}`,
    );
    expect(before.body.items.map((i) => i.version)).not.toContain('1.1.0');

    requests = [];
    const r = await abota('release', 'push', dir, '--json');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(puts()).toEqual([`PUT /v1/admin/blobs/sha256/${missing[0]}`]);
    expect(jsonOf(r)).toMatchObject({ version: '1.1.0', created: true });
  });

  it('Ctrl-C during `release push` stops with ERR_INTERRUPTED (exit 130) and the re-run sends only what is missing', async () => {
    const dir = releases['1.0.0']!;
    const local = await blobsOf(dir);
    for (const hex of local.keys()) await server.blobs.delete(`sha256/${hex}`);
    let putsSeen = 0;
    vi.mocked(globalThis.fetch).mockImplementation((input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      requests.push(`${init?.method ?? 'GET'} ${url.pathname}`);
      if (init?.method === 'PUT' && ++putsSeen === 2 && init.body instanceof ReadableStream) {
        const reader = (init.body as ReadableStream<Uint8Array>).getReader();
        let chunks = 0;
        const cut = new ReadableStream<Uint8Array>({
          async pull(controller) {
            if (chunks++ === 1) {
              // What the shell does on Ctrl-C; the command's handler aborts the upload.
              process.emit('SIGINT');
              await new Promise((resolve) => setTimeout(resolve, 50));
            }
            const { done, value } = await reader.read();
            if (done) controller.close();
            else controller.enqueue(value);
          },
        });
        return realFetch(input, { ...init, body: cut } as RequestInit);
      }
      return realFetch(input, init);
    });
    const r = await abota('release', 'push', dir, '--json');
    expect(r.code, r.stdout).toBe(130);
    expect(errorCode(r)).toBe('ERR_INTERRUPTED');
    expect(process.listeners('SIGINT'), 'the handler is removed again').toHaveLength(0);
    const missing: string[] = [];
    for (const hex of local.keys())
      if ((await server.blobs.head(`sha256/${hex}`)) === undefined) missing.push(hex);
    expect(missing).toHaveLength(1);

    vi.mocked(globalThis.fetch).mockImplementation((input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      requests.push(`${init?.method ?? 'GET'} ${url.pathname}`);
      return realFetch(input, init);
    });
    requests = [];
    const again = await abota('release', 'push', dir, '--json');
    expect(again.code, again.stdout).toBe(0);
    expect(puts()).toEqual([`PUT /v1/admin/blobs/sha256/${missing[0]}`]);
  });

  it('a blob that vanished from the server store is uploaded again, and only that blob', async () => {
    const dir = releases['1.0.0']!;
    const [hex] = [...(await blobsOf(dir))][1]!;
    // The store lost it (an operator's cleanup, a restored bucket): the database still lists it.
    await server.blobs.delete(`sha256/${hex}`);
    const r = await abota('release', 'push', dir, '--json');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(puts()).toEqual([`PUT /v1/admin/blobs/sha256/${hex}`]);
    expect(jsonOf(r)).toMatchObject({ created: false });
  });

  it('a tampered manifest.jws is refused by the server and the CLI shows its error code', async () => {
    const copy = join(work, 'tampered-1.0.0');
    await cp(releases['1.0.0']!, copy, { recursive: true });
    const jws = JSON.parse(await readFile(join(copy, 'manifest.jws'), 'utf8')) as {
      signatures: { signature: string }[];
    };
    const sig = jws.signatures[0]!;
    sig.signature = (sig.signature[0] === 'A' ? 'B' : 'A') + sig.signature.slice(1);
    await writeFile(join(copy, 'manifest.jws'), JSON.stringify(jws));
    const r = await abota('release', 'push', copy);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^abota: ERR_(SIGNATURE_INVALID|THRESHOLD_NOT_MET): POST \/v1\/admin\/releases: /,
    );
    expect(puts()).toEqual([]);
  });

  it('without an API key the command stops before any request, with a clear error', async () => {
    vi.stubEnv('ABOTA_API_KEY', '');
    const r = await abota('release', 'push', releases['1.0.0']!, '--json');
    expect(r.code).toBe(2);
    expect(errorCode(r)).toBe('ERR_API_KEY_MISSING');
    expect(requests).toEqual([]);
    const noServer = await abota('device', 'list', '--api-key-env', 'NOPE');
    expect(noServer.code).toBe(2);
    vi.stubEnv('ABOTA_SERVER', '');
    const r2 = await abota('device', 'list');
    expect(r2.stderr).toMatch(/^abota: ERR_USAGE: no update server: pass --server <url> or set ABOTA_SERVER/);
  });

  it('an unknown key is ERR_UNAUTHENTICATED and a viewer key is ERR_FORBIDDEN, from the server', async () => {
    vi.stubEnv('ABOTA_API_KEY', generateSecret('abk'));
    const unknown = await abota('release', 'push', releases['1.0.0']!, '--json');
    expect(unknown.code).toBe(1);
    expect(errorCode(unknown)).toBe('ERR_UNAUTHENTICATED');

    const viewer = await admin<{ key: string }>('POST', '/v1/admin/api-keys', {
      name: 'ci-viewer',
      role: 'viewer',
    });
    vi.stubEnv('ABOTA_API_KEY', viewer.body.key);
    const r = await abota('release', 'push', releases['1.0.0']!);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^abota: ERR_FORBIDDEN: POST \/v1\/admin\/releases: role "viewer" may not do this/,
    );
    // Refusals are answers, not transient failures: each call was made once.
    expect(requests.filter((q) => q === 'POST /v1/admin/releases')).toHaveLength(1);
  });

  it('token create prints the token once; a device registered with it shows in device list', async () => {
    const bad = await abota('token', 'create', '--product', 'nope', '--json');
    expect(errorCode(bad)).toBe('ERR_NOT_FOUND');

    const r = await abota('token', 'create', '--product', PRODUCT, '--expires', '2h', '--max-uses', '1');
    expect(r.code, r.stderr).toBe(0);
    const token = r.stdout.trim();
    expect(token).toMatch(/^abp_/);
    expect(r.stderr).toContain('1 use(s); it is not shown again');

    const empty = await abota('device', 'list');
    expect(empty.stdout).toBe('no devices\n');

    const publicKeyJwk = generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' });
    const reg = await fetch(`${server.url}/v1/device/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token, publicKeyJwk, product: PRODUCT, hardware: 'qemu-x64' }),
    });
    expect(reg.status).toBe(201);
    const { deviceId } = (await reg.json()) as { deviceId: string };

    const table = await abota('device', 'list', '--product', PRODUCT);
    expect(table.code).toBe(0);
    const [header, row] = table.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^ID\s+PRODUCT\s+HARDWARE\s+VERSION\s+SLOT\s+STATE\s+LAST SEEN\s+TAGS$/);
    expect(row).toMatch(new RegExp(`^${deviceId}\\s+${PRODUCT}\\s+qemu-x64\\s+-`));
    const listed = await abota('device', 'list', '--json');
    expect(jsonOf<{ items: { id: string }[]; nextCursor: null }>(listed)).toMatchObject({
      ok: true,
      items: [{ id: deviceId, hardware: 'qemu-x64' }],
      nextCursor: null,
    });

    const once = await abota('token', 'create', '--product', PRODUCT, '--max-uses', '0');
    expect(once.stderr).toMatch(/^abota: ERR_USAGE: --max-uses "0"/);
  });

  it('product set-root rotates to the root of `abota keys rotate`; an older root is refused by the server', async () => {
    const rotated = join(work, 'keys-rotated');
    await cp(keys, rotated, { recursive: true });
    const rot = await abota('keys', 'rotate', rotated, '--root-keys', '1', '--json');
    expect(rot.code, rot.stdout + rot.stderr).toBe(0);
    const r = await abota('product', 'set-root', PRODUCT, '--root', join(rotated, 'root.json'), '--json');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(jsonOf(r)).toMatchObject({ product: { id: PRODUCT, trustRootVersion: 2 } });
    const back = await abota('product', 'set-root', PRODUCT, '--root', join(keys, 'root.json'));
    expect(back.code).toBe(1);
    expect(back.stderr).toMatch(/^abota: ERR_[A-Z_]+: PUT \/v1\/admin\/products\/push-test\/trust-root: /);
  });

  it('a blob PUT answered 503 is retried with the file streamed again from its first byte', async () => {
    const bytes = rawImage(300, 7); // 1.2 MiB: more than one read chunk
    const hex = createHash('sha256').update(bytes).digest('hex');
    const path = join(work, 'retry.blob');
    await writeFile(path, bytes);
    let tries = 0;
    const client = new AdminConnection({
      serverUrl: server.url,
      apiKey: adminKey,
      retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 2 },
      fetch: async (input, init) => {
        if (init?.method === 'PUT' && ++tries === 1) {
          // Read part of the body, as a proxy would before failing, then answer 503.
          const reader = (init.body as ReadableStream<Uint8Array>).getReader();
          await reader.read();
          await reader.cancel();
          return new Response(JSON.stringify({ error: { code: 'ERR_UNAVAILABLE', message: 'try later' } }), {
            status: 503,
          });
        }
        return fetch(input, init);
      },
    });
    expect(await putBlobFile(client, hex, path, bytes.length)).toEqual({ created: true });
    expect(tries).toBe(2);
    expect(client.retriesDone).toBe(1);
    expect((await server.blobs.head(`sha256/${hex}`))?.sizeBytes).toBe(bytes.length);
  });

  it('every command has --help', async () => {
    for (const argv of [
      ['release', 'push'],
      ['product', 'create'],
      ['product', 'set-root'],
      ['token', 'create'],
      ['device', 'list'],
    ]) {
      const r = await abota(...argv, '--help');
      expect(r.code, argv.join(' ')).toBe(0);
      expect(r.stdout).toContain(`Usage: abota ${argv.join(' ')}`);
      expect(r.stdout).toContain('--json');
    }
  });
});

describe('admin client retries', () => {
  const fast = { attempts: 3, baseDelayMs: 1, maxDelayMs: 2 };

  it('retries network failures with backoff and gives up with ERR_SERVER_UNREACHABLE', async () => {
    let calls = 0;
    const client = new AdminConnection({
      serverUrl: 'http://127.0.0.1:9',
      apiKey: generateSecret('abk'),
      retry: fast,
      fetch: () => {
        calls++;
        return Promise.reject(new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } }));
      },
    });
    const err = await remoteBlobSize(client, '0'.repeat(64)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdminApiError);
    expect((err as AdminApiError).code).toBe('ERR_SERVER_UNREACHABLE');
    expect((err as AdminApiError).message).toContain('ECONNREFUSED (gave up after 3 tries)');
    expect(calls).toBe(3);
  });

  it('retries a 5xx and succeeds; never retries a 4xx', async () => {
    const answers = [
      new Response(JSON.stringify({ error: { code: 'ERR_UNAVAILABLE', message: 'db down' } }), {
        status: 503,
      }),
      new Response(null, { status: 200, headers: { 'content-length': '42' } }),
    ];
    let calls = 0;
    const client = new AdminConnection({
      serverUrl: 'http://127.0.0.1:9',
      apiKey: generateSecret('abk'),
      retry: fast,
      fetch: () => {
        calls++;
        return Promise.resolve(answers.shift()!);
      },
    });
    expect(await remoteBlobSize(client, '0'.repeat(64))).toBe(42);
    expect(calls).toBe(2);
    expect(client.retriesDone).toBe(1);

    let forbidden = 0;
    const refusing = new AdminConnection({
      serverUrl: 'http://127.0.0.1:9',
      apiKey: generateSecret('abk'),
      retry: fast,
      fetch: () => {
        forbidden++;
        return Promise.resolve(
          new Response(JSON.stringify({ error: { code: 'ERR_FORBIDDEN', message: 'no' } }), { status: 403 }),
        );
      },
    });
    const err = await pushManifest(refusing, '{}').catch((e: unknown) => e);
    expect((err as AdminApiError).code).toBe('ERR_FORBIDDEN');
    expect(forbidden).toBe(1);
  });

  it('refuses to send the API key over plain http to a non-loopback host', () => {
    expect(() => new AdminConnection({ serverUrl: 'http://updates.example.com', apiKey: 'abk_x' })).toThrow(
      /plain http would send the API key in clear text/,
    );
  });
});
