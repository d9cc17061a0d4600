// A canary on a small fleet, as an operator runs it: a real `abota-server` process, the `abota`
// CLI as child processes for keys, releases, product, token and rollout, and three simulated VMs
// whose real agent processes register and poll. With a 1 % first stage exactly one device gets
// the release (a stage reaches at least one device by default), `abota rollout advance` moves
// to the next stage by hand, and `abota rollout abort` without --reason records a readable one.
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildBootImage, buildRootfsImage, SimulatedVm } from '@abota/simulator';
import { makeTempDir, releaseBuildArgs, type RunningProcess, runNode, startNode } from '@abota/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const bin = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));
const ABOTA = bin('services/publisher/bin/abota.js');
const SERVER = bin('services/update-server/bin/abota-server.js');
const PRODUCT = 'eflow-vm';
const HARDWARE = 'hyperv-x64';
const ADMIN_KEY = `abk_${randomBytes(32).toString('base64url')}`;

let work: string;
let server: RunningProcess;
let env: Record<string, string>;
const vms: SimulatedVm[] = [];

async function abota(...args: string[]): Promise<string> {
  const r = await runNode(ABOTA, args, { env });
  if (r.code !== 0) throw new Error(`abota ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function agent(vm: SimulatedVm, args: string[]) {
  const p = vm.spawnAgent(args);
  const exit = await p.exited;
  return { code: exit.code, stdout: p.stdout, stderr: p.stderr };
}

async function release(version: string): Promise<string> {
  const rootfs = join(work, `rootfs-${version}.img`);
  const boot = join(work, `boot-${version}.img`);
  await buildRootfsImage({ path: rootfs, version, sizeBytes: 4 * 1024 * 1024 });
  await buildBootImage({ path: boot, version });
  const out = join(work, 'releases', version);
  await abota(
    ...releaseBuildArgs({
      image: rootfs,
      boot,
      product: PRODUCT,
      compatible: HARDWARE,
      version,
      keys: join(work, 'keys'),
      out,
      json: true,
    }),
  );
  return out;
}

beforeAll(async () => {
  work = await makeTempDir('abota-canary-');
  await mkdir(join(work, 'releases'));
  server = startNode(SERVER, ['--port', '0', '--data-dir', join(work, 'server')], {
    env: { ABOTA_ADMIN_KEY: ADMIN_KEY, ABOTA_LOG_LEVEL: 'info', DATABASE_URL: undefined },
  });
  const listening = await server.waitFor(/abota-server listening/);
  const url = (JSON.parse(listening) as { url: string }).url;
  env = { ABOTA_SERVER: url, ABOTA_API_KEY: ADMIN_KEY };
  await abota('keys', 'init', join(work, 'keys'), '--json');
  const v1 = await release('1.0.0');
  const v2 = await release('2.0.0');
  await abota('product', 'create', PRODUCT, '--root', join(work, 'keys', 'root.json'));
  await abota('release', 'push', v1);
  await abota('release', 'push', v2);
  const token = (await abota('token', 'create', '--product', PRODUCT, '--max-uses', '3')).trim();
  for (const name of ['vm1', 'vm2', 'vm3']) {
    const vm = await SimulatedVm.createFromRelease({
      dir: join(work, 'vms', name),
      trustRootPath: join(work, 'keys', 'root.json'),
      product: PRODUCT,
      hardware: HARDWARE,
      serverUrl: url,
      releaseDir: v1,
    });
    const registered = await agent(vm, ['register', '--token', token]);
    expect(registered.code, registered.stderr).toBe(0);
    expect((await agent(vm, ['mark-good'])).code).toBe(0);
    vms.push(vm);
  }
}, 600_000);

afterAll(async () => {
  await server?.stop('SIGTERM');
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

/** Each VM's agent polls once; returns which ones installed 2.0.0. */
async function pollAll(): Promise<boolean[]> {
  const results: boolean[] = [];
  for (const vm of vms) {
    const r = await agent(vm, ['check', '--json']);
    expect(r.code, r.stderr).toBe(0);
    results.push((JSON.parse(r.stdout) as { status: string }).status === 'installed');
  }
  return results;
}

describe('a canary rollout on a fleet of three devices', { timeout: 300_000 }, () => {
  let id: string;

  it('explains its defaults in `abota rollout create --help`', async () => {
    const help = await abota('rollout', 'create', '--help');
    for (const text of [
      '--min-devices 1',
      '--stages 1,10,100',
      '--bake 1h',
      '--max-failure 5',
      'abota rollout advance',
    ])
      expect(help).toContain(text);
  });

  it('offers a 1 % first stage to exactly one device', async () => {
    const created = JSON.parse(
      await abota(
        'rollout',
        'create',
        '--product',
        PRODUCT,
        '--version',
        '2.0.0',
        '--stages',
        '1,100',
        '--json',
      ),
    ) as { id: string; stages: { percent: number }[] };
    id = created.id;
    expect((await pollAll()).filter(Boolean)).toHaveLength(1);
    const status = JSON.parse(await abota('rollout', 'status', id, '--json')) as {
      status: { currentStage: number; stages: { targeted: number }[] };
    };
    expect(status.status.currentStage).toBe(0);
    expect(status.status.stages.map((s) => s.targeted)).toEqual([1, 2]);
  });

  it('`abota rollout advance` moves to the next stage, and the other two devices get it', async () => {
    const advanced = JSON.parse(await abota('rollout', 'advance', id, '--json')) as { currentStage: number };
    expect(advanced.currentStage).toBe(1);
    const installed = await pollAll();
    // The canary already has it installed (waiting for its reboot); the other two install now.
    expect(installed.filter(Boolean)).toHaveLength(2);
    // There is no stage after the last one.
    const again = await runNode(ABOTA, ['rollout', 'advance', id], { env });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('ERR_ROLLOUT_STATE');
    expect(again.stderr).toContain('last stage');
  });

  it('`abota rollout abort` without --reason records "aborted by operator"', async () => {
    await abota('rollout', 'abort', id);
    const status = JSON.parse(await abota('rollout', 'status', id, '--json')) as {
      rollout: { state: string; stateReason: string };
    };
    expect(status.rollout).toMatchObject({ state: 'aborted', stateReason: 'aborted by operator' });
  });
});
