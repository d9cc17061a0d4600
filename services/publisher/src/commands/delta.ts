// `abota delta make|apply`: standalone delta commands (see packages/delta).
import type { Command } from 'commander';

export function registerDeltaCommands(program: Command): void {
  program.command('delta').description('make and apply block deltas between two images');
}
