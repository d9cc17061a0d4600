// The `abota` command line: one subcommand group per concern (verity, keys, release, delta,
// rollout, demo), each registered from its own module under ./commands.
import { type Command, CommanderError } from 'commander';
import { registerBlobCommands } from './commands/blob.js';
import { registerCatalogCommands } from './commands/catalog.js';
import { registerCredentialCommands } from './commands/credentials.js';
import { registerDeltaCommands } from './commands/delta.js';
import { registerDemoCommand } from './commands/demo.js';
import { registerFleetCommands } from './commands/fleet.js';
import { registerImageCommands } from './commands/image.js';
import { registerKeysCommands } from './commands/keys.js';
import { registerReleaseCommands } from './commands/release.js';
import { registerRolloutCommands } from './commands/rollout.js';
import { registerServerCommands } from './commands/server.js';
import { registerVerityCommands } from './commands/verity.js';
import { reportFailure } from './output.js';
import { AbotaCommand, exitStatusOfCommanderError } from './usage.js';

export function buildProgram(): Command {
  const program = new AbotaCommand('abota')
    .description('abota: signed A/B over-the-air updates with dm-verity protected root filesystems')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerVerityCommands(program);
  registerKeysCommands(program);
  registerReleaseCommands(program);
  registerImageCommands(program);
  registerServerCommands(program);
  registerCatalogCommands(program);
  registerFleetCommands(program);
  registerCredentialCommands(program);
  registerBlobCommands(program);
  registerDeltaCommands(program);
  registerRolloutCommands(program);
  registerDemoCommand(program);
  return program;
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv as string[], { from: 'user' });
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version land here with exitCode 0; every usage error exits 2.
      return exitStatusOfCommanderError(err);
    }
    return reportFailure(err, argv.includes('--json'));
  }
}
