// The agent exactly as the systemd unit runs it — the esbuild bundle the agent package's bin runs, the unit's
// ExecStart arguments (the `run` daemon) and Environment= lines (NODE_OPTIONS=--jitless …) —
// through a real install on a simulated VM against a real server on loopback. The unit tests
// run the TypeScript sources; only this test finds a bundle that breaks (a dynamic import
// esbuild did not follow, a module that needs the JIT or undici).
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_BUNDLE, unitEnvironment, unitExecArgs } from '../fixtures/agent-unit.js';
import { createFleetWithReleases, deviceListRow, eventually, type Fleet } from '../fixtures/fleet.js';

let fleet: Fleet;

beforeAll(async () => {
  fleet = await createFleetWithReleases(['1.0.0', '1.1.0']);
}, 180_000);

afterAll(async () => {
  await fleet?.close();
});

interface Run {
  child: ChildProcess;
  /** stdout and stderr as they came. */
  output: () => string;
  stdout: () => string;
  exited: Promise<number | null>;
}

/** The bundle (what the agent package's bin runs) under the unit's environment, with `args`. */
async function agentAsTheUnitRunsIt(args: string[]): Promise<Run> {
  const env = { ...process.env, ...(await unitEnvironment()) };
  const child = spawn(process.execPath, [AGENT_BUNDLE, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (t: string) => {
    out += t;
    stdout += t;
  });
  child.stderr.setEncoding('utf8').on('data', (t: string) => {
    out += t;
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  return { child, output: () => out, stdout: () => stdout, exited };
}

describe('the agent bundle under the systemd unit', () => {
  it('runs `abota-agent run` from dist/abota-agent.cjs with the unit flags: installs 1.1.0, asks for the reboot, stops on SIGTERM; the next boot commits it', async () => {
    expect(existsSync(AGENT_BUNDLE), `${AGENT_BUNDLE} is missing: npm run build`).toBe(true);
    const env = await unitEnvironment();
    expect(env['NODE_OPTIONS']).toMatch(/--jitless/);
    const { vm, deviceId } = await fleet.newVm('bundle');
    await fleet.server.createRollout(fleet.releaseIds.get('1.1.0')!, { deviceIds: [deviceId] });

    // ExecStart's arguments with this VM's config in place of /etc/abota/agent.json.
    const args = (await unitExecArgs()).map((a) =>
      a === '/etc/abota/agent.json' ? vm.paths.agentConfig : a,
    );
    expect(args).toEqual(['run', '--config', vm.paths.agentConfig, '--json']);
    const daemon = await agentAsTheUnitRunsIt(args);
    try {
      const asked = await eventually(
        () => vm.rebootRequested(),
        (x) => x || daemon.child.exitCode !== null,
        60_000,
      );
      expect(asked, daemon.output()).toBe(true);
    } finally {
      daemon.child.kill('SIGTERM'); // the unit's KillSignal
    }
    expect(await daemon.exited, daemon.output()).toBe(0);
    // Everything the daemon printed is a JSON log line (the unit passes --json), apart from
    // warnings node itself may print about the unit's flags.
    for (const line of daemon
      .output()
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('Warning: ')))
      expect(() => JSON.parse(line), line).not.toThrow();
    expect(await deviceListRow(fleet, deviceId)).toMatchObject({
      version: '1.0.0',
      slot: 'A',
      state: 'rebooting',
    });

    // The reboot. /proc's boot id does not change for a simulated reboot, so the after-boot step
    // runs in-process with the VM's own boot id (what a real reboot gives the bundle).
    expect((await vm.boot()).slot).toBe('B');
    expect(await (await vm.openAgent()).afterBoot({ reboot: true })).toEqual({
      action: 'committed',
      version: '1.1.0',
      slot: 'B',
    });
    const status = await agentAsTheUnitRunsIt(['status', '--config', vm.paths.agentConfig, '--json']);
    expect(await status.exited, status.output()).toBe(0);
    expect(JSON.parse(status.stdout())).toMatchObject({ version: '1.1.0', bootedSlot: 'B' });
    expect(
      await eventually(
        () => deviceListRow(fleet, deviceId),
        (r) => r.state === 'committed',
      ),
    ).toEqual({
      version: '1.1.0',
      slot: 'B',
      state: 'committed',
    });
  }, 180_000);
});
