// docs/getting-started.md, run as written: its `sh` blocks are extracted in order into one bash
// script (test/fixtures/guide-script.ts) and run in an empty directory with this checkout's
// commands on PATH — a real abota-server, the abota CLI and abota-agent as processes. Each
// step's output is then checked against what the guide says happens, `abota device list`
// included at every step, and the device's slot files against the images at the end.
import { spawn } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { describeWithTool, makeTempDir } from '@abota/testkit';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { guideScript, readGuide, splitSteps } from '../fixtures/guide-script.js';

const ROOT = resolve(import.meta.dirname, '../..');
const GUIDE = join(ROOT, 'docs/getting-started.md');
const GUIDE_PORT = '8080';

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => res(port));
    });
  });
}

/** The row of the one device in each `abota device list` table of `text`, by column name. */
function deviceRows(text: string): Record<string, string>[] {
  const lines = text.split('\n');
  const rows: Record<string, string>[] = [];
  lines.forEach((line, i) => {
    if (!/^ID\s+PRODUCT\s+HARDWARE\s+VERSION\s+SLOT\s+STATE/.test(line)) return;
    const names = line.trim().split(/\s{2,}/);
    const values = (lines[i + 1] ?? '').trim().split(/\s{2,}/);
    rows.push(Object.fromEntries(names.map((n, j) => [n, values[j] ?? ''])));
  });
  return rows;
}

let work: string;
let run: { status: number | null; output: string; steps: Map<string, string> };

function step(name: string): string {
  const out = run.steps.get(name);
  if (out === undefined)
    throw new Error(`step ${name} did not run (exit ${run.status}); the script's output:\n${run.output}`);
  return out;
}

describeWithTool('mkfs.ext4', 'e2fsprogs', 'docs/getting-started.md, command by command', () => {
  beforeAll(async () => {
    const guide = await readGuide(GUIDE);
    // The one block the test does not run is the checkout and build it runs in; its PATH line is
    // reproduced here for this checkout.
    expect(guide.prerequisites).toContain('npm ci && npm run build');
    expect(guide.prerequisites).toContain('export PATH="$PWD/node_modules/.bin:$PATH:/usr/sbin:/sbin"');
    const port = String(await freePort());
    const commands = guide.steps.map((s) => ({ ...s, commands: s.commands.replaceAll(GUIDE_PORT, port) }));
    expect(guide.steps.filter((s) => s.commands.includes(GUIDE_PORT)).length).toBeGreaterThan(0);
    work = await makeTempDir('abota-guide-');
    await writeFile(join(work, 'guide.sh'), guideScript(commands));
    const child = spawn('bash', [join(work, 'guide.sh')], {
      cwd: work,
      detached: true, // its own process group: the server it starts goes with it on failure
      env: {
        PATH: `${join(ROOT, 'node_modules/.bin')}:${process.env['PATH'] ?? '/usr/bin:/bin'}:/usr/sbin:/sbin`,
        HOME: work,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      output += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      output += d;
    });
    const status = await new Promise<number | null>((res) => {
      const timer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 420_000);
      child.on('close', (code) => {
        clearTimeout(timer);
        res(code);
      });
    });
    try {
      process.kill(-child.pid!, 'SIGKILL'); // whatever is left of the group (a server after a failed step)
    } catch {
      // the group is gone: the guide stopped its server itself
    }
    run = { status, output, steps: splitSteps(output) };
  }, 480_000);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('runs every command of the guide without an error', () => {
    expect(run.status, run.output).toBe(0);
    expect([...run.steps.keys()]).toEqual([
      'workdir',
      'server',
      'keys',
      'images',
      'releases',
      'push',
      'device',
      'doctor-new',
      'init',
      'register',
      'canary',
      'install',
      'commit',
      'rollback',
      'stop',
    ]);
  });

  it('builds, signs and pushes two releases, the second with a delta', () => {
    expect(step('keys')).toContain('created product demo-vm');
    expect(step('releases')).toMatch(/delta rootfs from 1\.0\.0: /);
    expect(step('releases')).toContain('OK');
    expect(step('push')).toContain('deltas: rootfs from 1.0.0 (registered)');
  });

  it('doctor lists what a new device lacks with its fixes; after init it passes', () => {
    const before = step('doctor-new');
    for (const code of [
      'ERR_BOOTCTL_BOOTED_SLOT_UNKNOWN',
      'ERR_BOOTCTL_STATE_MISSING',
      'ERR_DOCTOR_DATA_DIR',
    ])
      expect(before).toContain(`error ${code}`);
    expect(before).toContain('fix: run "abota-agent init"');
    expect(before).toContain('doctor exit status: 5');
    const after = step('init');
    expect(after).toContain('booted slot A');
    expect(after).toContain('warning ERR_DOCTOR_NOT_REGISTERED');
    expect(after).toContain('no problems found (1 warning)');
  });

  it('shows the device in `abota device list` at every step: 1.0.0 on A, 2.0.0 on B, back to 1.0.0 on A', () => {
    expect(step('register')).toMatch(/registered as [0-9a-f-]{36}/);
    expect(step('register')).toContain('no update offered');
    expect(deviceRows(step('register'))).toEqual([
      expect.objectContaining({ PRODUCT: 'demo-vm', VERSION: '1.0.0', SLOT: 'A' }),
    ]);

    expect(step('canary')).toContain('running stage 1/1 (100%)');
    const install = step('install');
    expect(install).toContain('installed 2.0.0; rebooting');
    expect(install).toMatch(/rootfs: +delta [\d.]+ KiB of [\d.]+ KiB full/);
    expect(install).toContain('running:   2.0.0 on slot B, on trial: not committed');
    // Rebooted into the trial: nothing is committed yet, so the server still counts 1.0.0.
    expect(deviceRows(install)).toEqual([expect.objectContaining({ VERSION: '1.0.0', STATE: 'rebooting' })]);

    const commit = step('commit');
    expect(commit).toContain('committed 2.0.0 on slot B');
    expect(deviceRows(commit)).toEqual([
      expect.objectContaining({ VERSION: '2.0.0', SLOT: 'B', STATE: 'committed' }),
    ]);
    expect(commit).toMatch(/overall +1 targeted, 1 committed/);

    const rollback = step('rollback');
    expect(rollback).toContain('installed 1.0.0; rebooting');
    expect(rollback).toContain('committed 1.0.0 on slot A');
    expect(rollback).toMatch(/running: +1\.0\.0 on slot A/);
    expect(deviceRows(rollback)).toEqual([
      expect.objectContaining({ VERSION: '1.0.0', SLOT: 'A', STATE: 'committed' }),
    ]);
    expect(rollback).toMatch(/overall +1 targeted, 1 committed/);
    expect(rollback).toMatch(/\[rollback\] +downgrade allowed\npolicy .*\nstate +completed\n/);
  });

  it('leaves each slot holding exactly the release it was given', async () => {
    const tour = join(work, 'abota-tour');
    const same = async (a: string, b: string) =>
      expect((await readFile(join(tour, a))).equals(await readFile(join(tour, b))), `${a} = ${b}`).toBe(true);
    await same('device/rootfs-a.img', 'rootfs-1.0.0.img');
    await same('device/rootfs-b.img', 'rootfs-2.0.0.img');
    // What the agent committed into each slot: A was written again by the rollback.
    const state = JSON.parse(await readFile(join(tour, 'device/data/state.json'), 'utf8'));
    expect(state.slots).toMatchObject({ A: { version: '1.0.0' }, B: { version: '2.0.0' } });
  });
});
