// nodeHttpFetch against a real node:http server on 127.0.0.1, read the way the update-server API
// client reads responses (bounded-body.ts); httpGet's redirect rules are covered through
// downloadRange in download.test.ts.
import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { readBoundedBody, readBoundedJson } from './bounded-body.js';
import { networkError } from './download.js';
import { nodeHttpFetch } from './node-http.js';

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function serve(
  handler: (req: IncomingMessage, res: ServerResponse, body: string) => void,
): Promise<{ url: string; requests: { req: IncomingMessage; body: string }[] }> {
  const requests: { req: IncomingMessage; body: string }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => {
      body += d;
    });
    req.on('end', () => {
      requests.push({ req, body });
      handler(req, res, body);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

describe('nodeHttpFetch', () => {
  it('POSTs a JSON body with its headers and reads the JSON answer', async () => {
    const { url, requests } = await serve((_req, res, body) => {
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ echo: JSON.parse(body) }));
    });
    const res = await nodeHttpFetch(`${url}/v1/device/poll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer jwt' },
      body: JSON.stringify({ version: '1.0.0', bootedSlot: 'A' }),
      redirect: 'error',
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('Content-Type')).toBe('application/json');
    expect(await readBoundedJson(res, 'poll')).toEqual({ echo: { version: '1.0.0', bootedSlot: 'A' } });
    expect(requests[0]!.req.method).toBe('POST');
    expect(requests[0]!.req.headers.authorization).toBe('Bearer jwt');
    expect(requests[0]!.req.headers['content-length']).toBe(String(requests[0]!.body.length));
  });

  it('lets a bounded reader refuse an oversized answer part-way', async () => {
    const { url } = await serve((_req, res) => {
      res.writeHead(200); // chunked: the size is only seen while reading
      res.end(Buffer.alloc(3 * 1024 * 1024, 0x20));
    });
    const res = await nodeHttpFetch(`${url}/big`);
    await expect(readBoundedBody(res, 1024 * 1024, 'poll')).rejects.toMatchObject({
      code: 'ERR_HTTP_TOO_LARGE',
    });
  });

  it('treats a redirect as a network error under redirect: "error", like fetch', async () => {
    const { url } = await serve((_req, res) => {
      res.writeHead(302, { location: 'http://127.0.0.1:9/elsewhere' }).end();
    });
    const failure = await nodeHttpFetch(`${url}/v1/device/report`, {
      method: 'POST',
      body: '{}',
      redirect: 'error',
    }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(TypeError);
    expect(networkError(failure, 'POST /v1/device/report')).toMatchObject({ code: 'ERR_HTTP_NETWORK' });
  });

  it('rejects with the socket error when nothing listens, which the API client maps to ERR_HTTP_NETWORK', async () => {
    const { url } = await serve(() => {});
    servers[0]!.close();
    await new Promise((r) => setTimeout(r, 20));
    const failure = await nodeHttpFetch(`${url}/v1/device/poll`, { method: 'POST', body: '{}' }).catch(
      (e: unknown) => e,
    );
    expect(networkError(failure, 'POST poll')).toMatchObject({
      code: 'ERR_HTTP_NETWORK',
      message: expect.stringContaining('ECONNREFUSED'),
    });
  });

  it('follows a GET redirect to another origin without the Authorization header', async () => {
    const cdn = await serve((_req, res) => {
      res.end('blob');
    });
    const api = await serve((_req, res) => {
      res.writeHead(302, { location: `${cdn.url}/x?sig=1` }).end();
    });
    const res = await nodeHttpFetch(`${api.url}/v1/device/blobs/sha256/ab`, {
      headers: { authorization: 'Bearer jwt' },
    });
    expect(await res.text()).toBe('blob');
    expect(api.requests[0]!.req.headers.authorization).toBe('Bearer jwt');
    expect(cdn.requests[0]!.req.headers.authorization).toBeUndefined();
  });
});

describe('TLS only for https: URLs', () => {
  it('speaks TLS to an https: URL and checks the server certificate (a self-signed one is refused)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'abota-tls-'));
    try {
      const made = spawnSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-days',
          '1',
        ].concat(['-subj', '/CN=127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')]),
        { encoding: 'utf8' },
      );
      expect(made.status, made.stderr).toBe(0);
      const server = createHttpsServer(
        { key: await readFile(join(dir, 'key.pem')), cert: await readFile(join(dir, 'cert.pem')) },
        (_req, res) => res.end('{}'),
      );
      servers.push(server);
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/v1/device/poll`;
      await expect(nodeHttpFetch(url, { method: 'POST', body: '{}' })).rejects.toMatchObject({
        code: 'DEPTH_ZERO_SELF_SIGNED_CERT',
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('loads neither node:tls nor undici for plain http (on Node 24 they cost the agent ~12 MiB)', async () => {
    const { url } = await serve((_req, res) => res.end('{"ok":true}'));
    // Asynchronously: the server answering the child runs in this process.
    const child = await promisify(execFile)(process.execPath, [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `const { nodeHttpFetch } = await import(${JSON.stringify(join(import.meta.dirname, 'node-http.ts'))});
       const res = await nodeHttpFetch(${JSON.stringify(`${url}/healthz`)}, { method: 'GET' });
       const loaded = (m) => process.moduleLoadList.includes('NativeModule ' + m);
       console.log(res.status, loaded('tls'), loaded('internal/deps/undici/undici'));`,
    ]);
    expect(child.stderr).toBe('');
    expect(child.stdout.trim()).toBe('200 false false');
  });
});
