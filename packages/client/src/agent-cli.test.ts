// The abota-agent bin entry as its own process under the systemd unit's `--jitless` (no
// WebAssembly, so no undici fetch): register and poll against a stand-in device API on
// 127.0.0.1 must work through node:http alone (http/node-http.ts; README "Memory").
import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTempDir, type ProgramResult, runProgram } from '@abota/testkit';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeDevice, makeTrust, type Trust } from '../test/release-fixture.js';

const ENTRY = fileURLToPath(new URL('./agent-cli.ts', import.meta.url));
const PACKAGE_DIR = fileURLToPath(new URL('..', import.meta.url));

let trust: Trust;
const cleanup: (() => Promise<void>)[] = [];
beforeAll(async () => {
  trust = await makeTrust();
});
afterEach(async () => {
  for (const f of cleanup.splice(0)) await f();
});

function runBin(args: string[]): Promise<ProgramResult> {
  return runProgram(
    process.execPath,
    ['--jitless', '--conditions=@abota/source', '--import', 'tsx', ENTRY, ...args],
    { cwd: PACKAGE_DIR, env: { ...process.env, NODE_OPTIONS: '' } },
  );
}

describe('abota-agent bin', () => {
  it('registers and polls under --jitless, through node:http only', async () => {
    const root = await makeTempDir('abota-bin-');
    const requests: { url: string; auth: string | undefined }[] = [];
    const server: Server = createServer((req: IncomingMessage, res) => {
      req.resume().on('end', () => {
        requests.push({ url: req.url ?? '', auth: req.headers.authorization });
        res.setHeader('content-type', 'application/json');
        if (req.url === '/v1/device/register')
          res.writeHead(201).end(JSON.stringify({ deviceId: 'dev-bin' }));
        else if (req.url === '/v1/device/poll')
          res.end(JSON.stringify({ status: 'no-update', pollAfterSeconds: 600 }));
        else res.writeHead(404).end('{}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await rm(root, { recursive: true, force: true });
    });
    const dev = await makeDevice(join(root, 'device'), trust);
    const configPath = join(root, 'agent.json');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await writeFile(configPath, JSON.stringify({ ...dev.configInput, server: { url } }));

    const reg = await runBin(['register', '--token', 'prov', '--config', configPath, '--json']);
    expect(reg, reg.stderr).toMatchObject({ code: 0 });
    const check = await runBin(['check', '--config', configPath, '--json']);
    expect(check, check.stderr).toMatchObject({ code: 0 });
    expect(requests.map((r) => r.url)).toEqual(['/v1/device/register', '/v1/device/poll']);
    expect(requests[1]!.auth).toMatch(/^Bearer ey/);
  }, 60_000);
});
