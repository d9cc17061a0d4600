// `abota keys init|rotate|...`: trust-root keys and root.json (see docs/CONTRACTS.md).
import type { Command } from 'commander';

export function registerKeysCommands(program: Command): void {
  program.command('keys').description('create and rotate the trust root and release keys');
}
