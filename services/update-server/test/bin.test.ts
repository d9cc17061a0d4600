// The `abota-server` process as an operator runs it: --help, usage errors, and one server per
// embedded data directory (a second one exits naming the directory and the pid holding it; a
// server killed with SIGKILL does not block the restart).
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTempDir, type RunningProcess, runNode, startNode } from '@abota/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const BIN = fileURLToPath(new URL('../bin/abota-server.js', import.meta.url));
const QUIET = { ABOTA_LOG_LEVEL: 'warn', ABOTA_DATA_DIR: undefined, DATABASE_URL: undefined };

describe('abota-server --help and usage errors', () => {
  it.each(['--help', '-h'])('%s prints the options and environment variables and exits 0', async (flag) => {
    const r = await runNode(BIN, [flag], { env: QUIET });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: abota-server \[options\]/);
    for (const name of [
      '--data-dir',
      '--port',
      'ABOTA_DATA_DIR',
      'DATABASE_URL',
      'ABOTA_S3_BUCKET',
      'ABOTA_ADMIN_KEY',
    ])
      expect(r.stdout).toContain(name);
    expect(r.stderr).toBe('');
  });

  it('exits 2 on a usage error and names every bad option at once', async () => {
    const r = await runNode(BIN, ['--no-such-flag', '--port'], { env: QUIET });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown option "--no-such-flag"');
    expect(r.stderr).toContain('option --port needs a value');
    expect(r.stderr).toContain('--help');
  });

  it('exits 2 on an invalid setting', async () => {
    const r = await runNode(BIN, ['--port', 'eighty'], { env: QUIET });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('ABOTA_PORT');
  });
});

describe('abota-server holds its data directory alone', { timeout: 600_000 }, () => {
  let dir: string;
  const running: RunningProcess[] = [];
  const start = (): RunningProcess => {
    const p = startNode(BIN, ['--port', '0', '--data-dir', dir], {
      env: { ...QUIET, ABOTA_LOG_LEVEL: 'info' },
    });
    running.push(p);
    return p;
  };
  beforeEach(async () => {
    dir = await makeTempDir('abota-server-lock-');
  });
  afterEach(async () => {
    for (const p of running.splice(0)) await p.stop('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a second server on the same directory, naming the directory and the holder pid', async () => {
    const first = start();
    await first.waitFor(/abota-server listening/);
    const second = await runNode(BIN, ['--port', '0', '--data-dir', dir], { env: QUIET });
    expect(second.code).toBe(1);
    expect(second.stderr).toContain('ERR_DATA_DIR_LOCKED');
    expect(second.stderr).toContain(dir);
    expect(second.stderr).toContain(`pid ${first.pid}`);
    // The first one is untouched and still serving.
    expect(first.child.exitCode).toBeNull();
    // A clean stop releases the lock: the next server starts.
    expect(await first.stop('SIGTERM')).toBe(0);
    const third = start();
    await third.waitFor(/abota-server listening/);
  });

  it('takes over the lock of a server killed with SIGKILL', async () => {
    const first = start();
    await first.waitFor(/abota-server listening/);
    const lock = JSON.parse(await readFile(join(dir, 'abota-server.lock'), 'utf8')) as { pid: number };
    expect(lock.pid).toBe(first.pid);
    await first.stop('SIGKILL');
    const restarted = start();
    await restarted.waitFor(/abota-server listening/);
    const now = JSON.parse(await readFile(join(dir, 'abota-server.lock'), 'utf8')) as { pid: number };
    expect(now.pid).toBe(restarted.pid);
  });
});
