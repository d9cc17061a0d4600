// Health after commit, end to end (issue #17): a rollout created with `abota rollout create
// --health-bake 1m`, a simulated VM whose real agent daemon (`abota-agent run`, its own process)
// installs, reboots (the simulator's GRUB) and commits, then re-runs its health checks every
// `health.intervalSeconds` for the offer's one-minute window and reports `healthy` through its
// outbox. The rollout completes only once the device reported a minute of health; a second VM
// whose health check starts failing inside the window reports `unhealthy` and pauses its rollout.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SimulatedVm } from '@abota/simulator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createFleetWithReleases,
  createRolloutWithCli,
  deviceListRow,
  eventually,
  type Fleet,
  serverEvents,
} from '../fixtures/fleet.js';

const INTERVAL_SECONDS = 3;
let fleet: Fleet;

beforeAll(async () => {
  fleet = await createFleetWithReleases(['1.0.0', '1.1.0', '1.2.0']);
}, 420_000);
afterAll(async () => {
  await fleet?.close();
});

/** Health checks every INTERVAL_SECONDS during a bake, each run logged (epoch seconds) to `log`. */
async function configureHealth(vm: SimulatedVm, log: string): Promise<void> {
  const config = JSON.parse(await readFile(vm.paths.agentConfig, 'utf8')) as {
    healthChecks: { command: string[]; timeoutSeconds?: number }[];
    health?: object;
  };
  config.healthChecks.push({ command: ['sh', '-c', 'date +%s >> "$0"', log] });
  config.health = { intervalSeconds: INTERVAL_SECONDS };
  await writeFile(vm.paths.agentConfig, `${JSON.stringify(config, null, 2)}\n`);
}

const checkTimes = async (log: string) =>
  (await readFile(log, 'utf8').catch(() => ''))
    .split('\n')
    .filter((l) => l !== '')
    .map(Number);

/** `abota rollout status --json` (a retry warning the CLI printed under load comes first: skipped). */
async function rolloutOf(id: string) {
  const out = await fleet.operator(['rollout', 'status', id, '--json']);
  return JSON.parse(out.slice(out.search(/^\{/m))) as {
    rollout: { state: string; stateReason: string | null; stages: { bakeMinutes?: number }[] };
    status: { next: { reason: string } };
  };
}

/** Runs the VM's daemon through install → reboot → commit of `version`; returns the running daemon. */
async function installAndCommit(vm: SimulatedVm, deviceId: string, version: string) {
  const first = vm.spawnAgent(['run', '--json']);
  try {
    const requested = await eventually(
      () => vm.rebootRequested(),
      (x) => x || !first.running,
      60_000,
    );
    if (!requested) throw new Error(`no reboot requested: ${first.stderr}${first.stdout}`);
  } finally {
    await first.killAndWait('SIGTERM');
  }
  expect((await vm.boot()).slot).toBe('B');
  const daemon = vm.spawnAgent(['run', '--json']);
  const row = await eventually(
    () => deviceListRow(fleet, deviceId),
    (r) => r.version === version && r.state !== 'rebooting',
    60_000,
  );
  expect(row, `${daemon.stderr}${daemon.stdout}`).toMatchObject({ version, slot: 'B' });
  return daemon;
}

describe('health after commit with a real agent daemon', () => {
  it('re-runs the health checks on schedule for the window and reports; the rollout completes only after it', async () => {
    const { vm, deviceId } = await fleet.newVm('baking');
    const log = join(fleet.work, 'baking-checks.log');
    await configureHealth(vm, log);
    const id = await createRolloutWithCli(fleet, '1.1.0', ['--health-bake', '1m', '--min-sample', '1']);
    expect((await rolloutOf(id)).rollout.stages).toEqual([expect.objectContaining({ bakeMinutes: 1 })]);
    const daemon = await installAndCommit(vm, deviceId, '1.1.0');
    try {
      const committedAt = Date.now() / 1000;
      // Inside the window the rollout waits for the device's health.
      const waiting = await rolloutOf(id);
      expect(waiting.rollout.state).toBe('active');
      expect(waiting.status.next.reason).toMatch(/health bake|stay healthy/);
      const done = await eventually(
        async () => (await rolloutOf(id)).rollout.state,
        (s) => s !== 'active',
        120_000,
      );
      expect(done, `${daemon.stderr}${daemon.stdout}`).toBe('completed');
      const finishedAt = Date.now() / 1000;
      expect(finishedAt - committedAt).toBeGreaterThanOrEqual(50);
      // The checks ran on their schedule after the commit: about every INTERVAL_SECONDS for 60 s.
      const times = (await checkTimes(log)).filter((t) => t >= committedAt - 5);
      expect(times.length).toBeGreaterThanOrEqual(60 / INTERVAL_SECONDS / 2);
      expect((times.at(-1) ?? 0) - (times[0] ?? 0)).toBeGreaterThanOrEqual(50);
      const events = await serverEvents(fleet.server, deviceId);
      expect(events.map((e) => e.state)).toContain('healthy');
    } finally {
      await daemon.killAndWait('SIGTERM');
    }
  }, 300_000);

  it('a device whose health check fails inside the window reports unhealthy and pauses the stage', async () => {
    const { vm, deviceId } = await fleet.newVm('crashing', { onVersion: '1.0.0' });
    await configureHealth(vm, join(fleet.work, 'crashing-checks.log'));
    const id = await createRolloutWithCli(fleet, '1.2.0', [
      '--health-bake',
      '5m',
      '--min-sample',
      '1',
      '--max-failure',
      '0',
      '--device',
      deviceId,
    ]);
    const daemon = await installAndCommit(vm, deviceId, '1.2.0');
    try {
      await vm.setHealthy('B', false);
      const paused = await eventually(
        () => rolloutOf(id),
        (r) => r.rollout.state !== 'active',
        60_000,
      );
      expect(paused.rollout.state, `${daemon.stderr}${daemon.stdout}`).toBe('paused');
      expect(paused.rollout.stateReason).toMatch(
        /failure rate 100% \(1 of 1 devices failed or rolled back\)/,
      );
      const events = await serverEvents(fleet.server, deviceId);
      expect(events.find((e) => e.state === 'unhealthy')).toMatchObject({
        errorCode: 'ERR_HEALTH_CHECK_FAILED',
      });
    } finally {
      await daemon.killAndWait('SIGTERM');
    }
  }, 300_000);
});
