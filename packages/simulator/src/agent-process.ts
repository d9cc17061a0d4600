// Entry of the simulated device's agent process: the real `abota-agent` command line
// (runAgentCli), with the one thing a simulated VM cannot get from the kernel — the boot id
// (/proc/sys/kernel/random/boot_id) — read from the VM's sim/boot-id file instead.
// ABOTA_SIM_CHECKPOINT_BYTES sets a smaller durable checkpoint so crash tests hit many of them.
// ABOTA_SIM_WAIT_FOR_START=1: load everything, then wait for a line on stdin before running —
// a crash test pre-starts the next "boot's" process while the current one still runs, so the
// seconds node + tsx need to start do not count against every power cut.
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { runAgentCli } from '@abota/client';

if (process.env['ABOTA_SIM_WAIT_FOR_START'] === '1') {
  process.stdin.setEncoding('utf8');
  await once(process.stdin, 'data');
  process.stdin.destroy();
}

const bootIdPath = process.env['ABOTA_SIM_BOOT_ID_FILE'];
const checkpoint = Number(process.env['ABOTA_SIM_CHECKPOINT_BYTES'] ?? '');

process.exitCode = await runAgentCli(process.argv.slice(2), {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
  agentOptions: {
    ...(bootIdPath ? { bootId: async () => (await readFile(bootIdPath, 'utf8')).trim() } : {}),
    ...(Number.isInteger(checkpoint) && checkpoint > 0 ? { checkpointBytes: checkpoint } : {}),
  },
});
