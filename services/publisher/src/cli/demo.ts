// `abota demo`: the end-to-end walk-through (../demo/run-demo.ts).
// The command table only: the actions (../commands/demo.ts) load when one runs.
import type { Command } from 'commander';
import { lazyAction } from './lazy.js';

const actions = () => import('../commands/demo.js');

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the end-to-end demo: a simulated VM updated from release 1.0.0 to 2.0.0 over HTTP')
    .option('--dir <dir>', 'keep everything (keys, releases, server data, VM) in this new directory')
    .option('--raw-images', 'use deterministic raw images even when mkfs.ext4 is installed')
    .option('--json', 'print one JSON summary instead of the walk-through')
    .action(lazyAction(actions, 'demo'));
}
