// `abota-agent status` says why the last release was refused, as its README promises: the real
// agent process (simulated VM) refuses a release and a later `status` / `status --json` shows
// which release, the error code and the message — also when the refusal left no install journal.
import type { SimulatedVm } from '@abota/simulator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFleet, type Fleet, makeCorruptBlockRelease } from '../fixtures/fleet.js';

let fleet: Fleet;

beforeAll(async () => {
  fleet = await createFleet();
  await fleet.buildRelease({ version: '1.0.0', securityVersion: 1 });
  await fleet.buildRelease({ version: '2.0.0', securityVersion: 2 });
  await fleet.buildRelease({ version: '2.3.0', securityVersion: 2, compatible: ['other-hw'] });
  await makeCorruptBlockRelease(fleet, '2.0.0', '2.2.0', 0);
  await fleet.push('2.2.0');
}, 180_000);

afterAll(async () => {
  await fleet?.close();
});

async function agent(vm: SimulatedVm, args: string[]) {
  const p = vm.spawnAgent(args);
  const exit = await p.exited;
  return { code: exit.code, stdout: p.stdout, stderr: p.stderr };
}

describe('abota-agent status after a refusal', () => {
  it('shows a release refused before anything was written (offline install, wrong hardware)', async () => {
    const { vm } = await fleet.newVm('refused-offline');
    expect((await agent(vm, ['mark-good'])).code).toBe(0);
    const install = await agent(vm, ['install', fleet.releases.get('2.3.0')!]);
    expect({ code: install.code, stderr: install.stderr }).toEqual({
      code: 3,
      stderr: expect.stringContaining('ERR_INCOMPATIBLE_HARDWARE'),
    });

    const status = await agent(vm, ['status']);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/^refused: +2\.3\.0 at \S+: ERR_INCOMPATIBLE_HARDWARE: .*hyperv-x64/m);
    const json = await agent(vm, ['status', '--json']);
    expect(JSON.parse(json.stdout).lastRefusal).toMatchObject({
      version: '2.3.0',
      code: 'ERR_INCOMPATIBLE_HARDWARE',
      message: expect.stringContaining('hyperv-x64'),
    });
  });

  it('shows an offered release that failed verification, and forgets it after a good install', async () => {
    const { vm, deviceId } = await fleet.newVm('refused-online');
    await fleet.server.createRollout(fleet.releaseIds.get('2.2.0')!, { deviceIds: [deviceId] });
    expect((await agent(vm, ['mark-good'])).code).toBe(0);
    const check = await agent(vm, ['check']);
    expect(check.code).toBe(3);
    const json = JSON.parse((await agent(vm, ['status', '--json'])).stdout);
    expect(json.lastRefusal).toMatchObject({ version: '2.2.0', code: 'ERR_INSTALL_BLOCK_CORRUPT' });
    expect(json.lastRefusal.rolloutId).toMatch(/^[0-9a-f-]{36}$/);
    expect((await agent(vm, ['status'])).stdout).toMatch(
      /^refused: +2\.2\.0 at .*ERR_INSTALL_BLOCK_CORRUPT/m,
    );

    // A later successful install clears it: status explains the present, not an old failure.
    const ok = await agent(vm, ['install', fleet.releases.get('2.0.0')!]);
    expect(ok.code).toBe(0);
    expect(JSON.parse((await agent(vm, ['status', '--json'])).stdout).lastRefusal).toBeUndefined();
  });
});
