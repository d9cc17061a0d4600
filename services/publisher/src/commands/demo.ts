// `abota demo`: the end-to-end walk-through (simulated VM updated A→B). It needs the client,
// simulator and update server; until those land it says so plainly.
import type { Command } from 'commander';

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the end-to-end demo: a simulated VM updated from release v1 to v2')
    .option('--json', 'machine-readable summary')
    .action(() => {
      process.stderr.write(
        'abota demo: not yet — the device client and update server are still being built.\n',
      );
      process.exitCode = 0;
    });
}
