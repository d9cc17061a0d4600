// `abota verity format|verify|dump`: veritysetup-compatible dm-verity commands.
import type { Command } from 'commander';

export function registerVerityCommands(program: Command): void {
  program.command('verity').description('dm-verity hash trees, compatible with veritysetup');
}
