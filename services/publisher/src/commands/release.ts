// `abota release build|verify|inspect|push`: signed releases (see docs/CONTRACTS.md).
import type { Command } from 'commander';

export function registerReleaseCommands(program: Command): void {
  program.command('release').description('build, verify, inspect and push signed releases');
}
