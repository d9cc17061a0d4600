// A simulated device's reboot (simulate-reboot) drives the agent's after-boot logic through the
// config's kernelCmdlinePath and bootIdPath alone: before it the install waits for its reboot,
// after it the trial boot of the new slot is committed.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from '@abota/testkit';
import { afterEach, expect, it } from 'vitest';
import { makeDevice, makeRelease, makeTrust, sha256File } from '../test/release-fixture.js';
import { Agent } from './agent.js';
import { loadAgentConfig } from './config.js';
import { simulateReboot } from './simulate-reboot.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

it('an offline install waits for its reboot until simulate-reboot boots the trial, which then commits', async () => {
  const root = await makeTempDir('abota-simboot-');
  dirs.push(root);
  const trust = await makeTrust();
  const dev = await makeDevice(join(root, 'device'), trust);
  const configPath = join(root, 'agent.json');
  await writeFile(configPath, JSON.stringify({ ...dev.configInput, bootIdPath: join(root, 'boot-id') }));
  const config = await loadAgentConfig(configPath, {});
  const first = await simulateReboot(config);
  expect(first.slot).toBe('A');

  const rel = await makeRelease({ dir: join(root, 'rel'), trust, version: '2.0.0' });
  // No bootId option: the agent reads config.bootIdPath, as the bin does.
  const installed = await (await Agent.open({ config })).installFromDirectory(rel.dir);
  expect(installed).toMatchObject({ phase: 'boot-pending', targetSlot: 'B', bootId: first.bootId });
  // Same boot: the trial is armed (again), nothing is committed.
  expect(await (await Agent.open({ config })).afterBoot()).toEqual({
    action: 'reboot-pending',
    version: '2.0.0',
  });

  const second = await simulateReboot(config);
  expect(second).toMatchObject({ slot: 'B' });
  expect(second.bootId).not.toBe(first.bootId);
  expect(await readFile(config.bootIdPath, 'utf8')).toBe(`${second.bootId}\n`);
  expect(await (await Agent.open({ config })).afterBoot()).toEqual({
    action: 'committed',
    version: '2.0.0',
    slot: 'B',
  });
  expect(await sha256File(dev.slotFiles.B)).toBe(await sha256File(rel.imagePath));
  // Committed and good: the next reboot stays on B.
  expect((await simulateReboot(config)).slot).toBe('B');
});
