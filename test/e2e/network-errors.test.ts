// Network failures as a user meets them, with the real `abota` and `abota-agent` processes:
// what a retry cannot fix (an unknown host name, a certificate for another name, a 4xx) fails at
// once; what it can (a 503, a 429) is retried, each retry told on stderr with its delay; an
// interrupted `abota release push` says how to resume; the agent refuses plain http to another
// machine. Failing servers are loopback sockets that answer with a fixed fault, nothing more.
import { once } from 'node:events';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SimulatedVm } from '@abota/simulator';
import {
  describeWithTool,
  makeTempDir,
  releaseBuildArgs,
  runNode,
  selfSignedCertificate,
  startNode,
} from '@abota/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFleet, type Fleet } from '../fixtures/fleet.js';

const ABOTA = fileURLToPath(new URL('../../services/publisher/bin/abota.js', import.meta.url));
const KEY = { ABOTA_API_KEY: `abk_${'x'.repeat(43)}` };

/** A loopback HTTP server answering each request with `answer(n)` (n = 1 for the first). */
async function faultServer(
  answer: (n: number, req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ url: string; requests: () => number; close: () => Promise<void> }> {
  let n = 0;
  const server: Server = createServer((req, res) => answer(++n, req, res));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests: () => n,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

describe('abota against failing servers', () => {
  it('does not retry an unknown host name', async () => {
    const r = await runNode(ABOTA, ['rollout', 'list'], {
      env: { ...KEY, ABOTA_SERVER: 'https://no-such-host.invalid' },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ERR_SERVER_UNREACHABLE');
    expect(r.stderr).toContain('ENOTFOUND');
    expect(r.stderr).not.toContain('retrying in');
    expect(r.stderr).not.toContain('gave up after');
  });

  it('does not retry a 4xx, and retries 429 and 503 telling each retry and its delay on stderr', async () => {
    const forbidden = await faultServer((_n, _req, res) =>
      json(res, 400, { error: { code: 'ERR_VALIDATION', message: 'bad' } }),
    );
    const r400 = await runNode(ABOTA, ['rollout', 'list'], { env: { ...KEY, ABOTA_SERVER: forbidden.url } });
    expect(r400.code).toBe(1);
    expect(forbidden.requests()).toBe(1);
    expect(r400.stderr).not.toContain('retrying in');
    await forbidden.close();

    const busy = await faultServer((n, _req, res) =>
      n === 1
        ? json(res, 429, { error: { code: 'ERR_UNAVAILABLE', message: 'slow down' } })
        : n === 2
          ? json(res, 503, { error: { code: 'ERR_UNAVAILABLE', message: 'restarting' } })
          : json(res, 200, { items: [], nextCursor: null }),
    );
    const r = await runNode(ABOTA, ['rollout', 'list'], { env: { ...KEY, ABOTA_SERVER: busy.url } });
    expect(r.code, r.stderr).toBe(0);
    expect(busy.requests()).toBe(3);
    expect(r.stderr).toMatch(/slow down; retrying in \d+\.\d s \(try 2 of 5\)/);
    expect(r.stderr).toMatch(/restarting; retrying in \d+\.\d s \(try 3 of 5\)/);
    await busy.close();
  });

  it('an interrupted release push says to run the same command again to resume', async () => {
    const work = await makeTempDir('abota-push-int-');
    const keys = join(work, 'keys');
    expect((await runNode(ABOTA, ['keys', 'init', keys])).code).toBe(0);
    const image = join(work, 'raw.img');
    await writeFile(image, Buffer.alloc(64 * 1024, 7));
    const out = join(work, 'release');
    const built = await runNode(ABOTA, releaseBuildArgs({ image, keys, out }));
    expect(built.code, built.stderr).toBe(0);
    // A server that takes the request and never answers: the push is stopped with Ctrl-C.
    const hung = await faultServer(() => {});
    const push = startNode(ABOTA, ['release', 'push', out], { env: { ...KEY, ABOTA_SERVER: hung.url } });
    while (hung.requests() === 0) await new Promise((r) => setTimeout(r, 50));
    push.child.kill('SIGINT');
    expect(await push.exited).toBe(130);
    expect(push.output().stderr).toContain('ERR_INTERRUPTED');
    expect(push.output().stderr).toContain('run the same command again to resume');
    await hung.close();
    await rm(work, { recursive: true, force: true });
  });
});

describeWithTool('openssl', 'openssl', 'abota against a certificate for another name', (openssl) => {
  it('fails at once with the TLS error instead of retrying', async () => {
    const dir = await makeTempDir('abota-tls-');
    const { key, cert } = selfSignedCertificate(dir, 'updates', '/CN=updates.example.com', {
      openssl,
      keyArgs: ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
      extraArgs: ['-addext', 'subjectAltName=DNS:updates.example.com'],
      days: 1,
    });
    let requests = 0;
    const server = createHttpsServer(
      { key: await readFile(key), cert: await readFile(cert) },
      (_req, res) => {
        requests++;
        res.end('{}');
      },
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    // The certificate is trusted (NODE_EXTRA_CA_CERTS) but names updates.example.com, not 127.0.0.1.
    const r = await runNode(ABOTA, ['rollout', 'list'], {
      env: { ...KEY, ABOTA_SERVER: `https://127.0.0.1:${port}`, NODE_EXTRA_CA_CERTS: cert },
    });
    server.close();
    await rm(dir, { recursive: true, force: true });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ERR_TLS_CERT_ALTNAME_INVALID');
    expect(r.stderr).not.toContain('retrying in');
    expect(r.stderr).not.toContain('gave up after');
    expect(requests).toBe(0);
  });
});

describe('abota-agent against failing servers', () => {
  let fleet: Fleet;
  let vm: SimulatedVm;
  beforeAll(async () => {
    fleet = await createFleet();
    await fleet.buildRelease({ version: '1.0.0', securityVersion: 1 });
    ({ vm } = await fleet.newVm('network'));
    expect((await agentRun(['mark-good'])).code).toBe(0);
  }, 120_000);
  afterAll(async () => {
    await fleet?.close();
  });

  async function agentRun(args: string[], env: Record<string, string> = {}) {
    const p = vm.spawnAgent(args, { env });
    const exit = await p.exited;
    return { code: exit.code, stdout: p.stdout, stderr: p.stderr };
  }

  it('does not retry an unknown host name (ERR_HTTP_NAME_NOT_FOUND, exit 4)', async () => {
    const r = await agentRun(['check'], { ABOTA_SERVER_URL: 'https://no-such-host.invalid' });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('ERR_HTTP_NAME_NOT_FOUND');
    expect(r.stderr).not.toContain('waiting');
  });

  it('logs each retry with its delay, then says when the server wants the next poll', async () => {
    const flaky = await faultServer((n, _req, res) =>
      n === 1
        ? json(res, 503, { error: { code: 'ERR_UNAVAILABLE', message: 'restarting' } })
        : json(res, 200, { status: 'no-update', pollAfterSeconds: 120 }),
    );
    const r = await agentRun(['check'], { ABOTA_SERVER_URL: flaky.url });
    await flaky.close();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warn: ERR_HTTP_UNAVAILABLE: .*HTTP 503.*; waiting \d+\.\d s before try 2 of 8/);
    expect(r.stdout).toBe('no update offered; the server asks for the next poll in 120 s\n');
  });

  it('refuses plain http to another machine unless told to allow it (ERR_CONFIG_INSECURE_HTTP, exit 5)', async () => {
    const refused = await agentRun(['check'], { ABOTA_SERVER_URL: 'http://192.0.2.10:8080' });
    expect(refused.code).toBe(5);
    expect(refused.stderr).toContain('ERR_CONFIG_INSECURE_HTTP');
    expect(refused.stderr).toContain('use https');
    // Allowed: plain http to a host the agent does not count as this machine (an IPv4-mapped
    // IPv6 address, which still reaches the loopback server here).
    const server = await faultServer((_n, _req, res) =>
      json(res, 200, { status: 'no-update', pollAfterSeconds: 60 }),
    );
    const port = new URL(server.url).port;
    const allowed = await agentRun(['check'], {
      ABOTA_SERVER_URL: `http://[::ffff:127.0.0.1]:${port}`,
      ABOTA_ALLOW_INSECURE_HTTP: '1',
    });
    await server.close();
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stdout).toContain('no update offered');
  });
});
