// The update server the VM talks to: the real `abota-server` CLI as a child process with its
// embedded defaults (PGlite + filesystem blobs in a directory) on 127.0.0.1, and the real
// `abota` CLI for the operator's calls (product, release push, token, rollout, device list).
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { abota as abotaCli } from './fixture.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SERVER_BIN = join(REPO_ROOT, 'services', 'update-server', 'bin', 'abota-server.js');
const START_TIMEOUT_MS = 120_000;

export interface DeviceRow {
  id: string;
  product: string;
  hardware: string;
  currentVersion: string | null;
  bootedSlot: string | null;
  installState: { version?: string; state?: string; errorCode?: string | null } | string | null;
  lastSeenAt: string | null;
}

export interface HostServer {
  url: string;
  port: number;
  dataDir: string;
  /** Run `abota …args --json` against this server; its JSON document. */
  abota(args: string[]): Promise<Record<string, unknown>>;
  /** `abota device list --json`. */
  devices(product: string): Promise<DeviceRow[]>;
  close(): Promise<void>;
}

function waitForListening(child: ChildProcess, logPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`abota-server did not listen within ${START_TIMEOUT_MS} ms (log: ${logPath})`)),
      START_TIMEOUT_MS,
    );
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`abota-server exited with ${code} before listening (log: ${logPath})`));
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /"url":"(http:\/\/127\.0\.0\.1:\d+)".*abota-server listening/.exec(line);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
}

/** Start abota-server with its data in `dir` (created); the admin key is generated here. */
export async function startHostServer(dir: string): Promise<HostServer> {
  const dataDir = join(dir, 'server');
  await mkdir(dataDir, { recursive: true });
  const adminKey = `abk_${randomBytes(32).toString('base64url')}`;
  const logPath = join(dir, 'abota-server.log');
  const log = createWriteStream(logPath);
  const child = spawn(
    process.execPath,
    [SERVER_BIN, '--host', '127.0.0.1', '--port', '0', '--data-dir', dataDir, '--log-level', 'info'],
    { env: { ...process.env, ABOTA_ADMIN_KEY: adminKey }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  const url = await waitForListening(child, logPath);
  const env = { ABOTA_SERVER: url, ABOTA_API_KEY: adminKey };
  const abota = (args: string[]): Promise<Record<string, unknown>> => abotaCli(args, env);
  return {
    url,
    port: Number(new URL(url).port),
    dataDir,
    abota,
    async devices(product) {
      const out = (await abota(['device', 'list', '--product', product])) as unknown as {
        items: DeviceRow[];
      };
      return out.items;
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
