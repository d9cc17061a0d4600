// `abota demo`: the end-to-end walk-through (src/demo/run-demo.ts) — a simulated VM updated
// from 1.0.0 to 2.0.0 by a real update server in this process. Loaded lazily: the server and
// the simulator are only needed by this command.
import type { Command } from 'commander';
import { printJson } from '../output.js';

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the end-to-end demo: a simulated VM updated from release 1.0.0 to 2.0.0 over HTTP')
    .option('--dir <dir>', 'keep everything (keys, releases, server data, VM) in this new directory')
    .option('--raw-images', 'use deterministic raw images even when mkfs.ext4 is installed')
    .option('--json', 'print one JSON summary instead of the walk-through')
    .action(async (opts: { dir?: string; rawImages?: boolean; json?: boolean }) => {
      const { runDemo } = await import('../demo/run-demo.js');
      const json = opts.json === true;
      const tty = process.stdout.isTTY === true;
      const result = await runDemo({
        ...(opts.dir !== undefined ? { dir: opts.dir } : {}),
        ...(opts.rawImages ? { rawImages: true } : {}),
        ...(json
          ? {}
          : {
              say: (line: string) => process.stdout.write(`${line}\n`),
              // On a terminal one line is rewritten; in a log only the last state is printed.
              progress: (line: string, done: boolean) => {
                if (tty) process.stdout.write(`\r${line}${done ? '\n' : ''}`);
                else if (done) process.stdout.write(`${line}\n`);
              },
            }),
      });
      if (json) printJson(result);
      process.exitCode = result.ok ? 0 : 1;
    });
}
