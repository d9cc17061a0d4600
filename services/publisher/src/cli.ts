// The `abota` command line. This module and ./cli/ are the command table: every group, command,
// argument and option with its help text, and nothing else — each action is imported when its
// command runs (./cli/lazy.ts), so `abota --help` and `abota --version` load only commander and
// the table. The actions live in ./commands/, the work in ./release/, ./keys/, ./image/.
import { type Command, CommanderError } from 'commander';
import { registerApiKeyCommands } from './cli/apikey.js';
import { registerBlobCommands } from './cli/blob.js';
import { registerDeltaCommands } from './cli/delta.js';
import { registerDemoCommand } from './cli/demo.js';
import { registerDeviceCommands } from './cli/device.js';
import { registerImageCommands } from './cli/image.js';
import { registerKeysCommands } from './cli/keys.js';
import { registerProductCommands } from './cli/product.js';
import { registerReleaseCommands } from './cli/release.js';
import { registerRolloutCommands } from './cli/rollout.js';
import { registerTokenCommands } from './cli/token.js';
import { registerVerityCommands } from './cli/verity.js';
import { AbotaCommand, exitStatusOfCommanderError } from './usage.js';

export function buildProgram(): Command {
  const program = new AbotaCommand('abota')
    .description('abota: signed A/B over-the-air updates with dm-verity protected root filesystems')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  // The order of the groups in `abota --help`.
  registerVerityCommands(program);
  registerKeysCommands(program);
  registerReleaseCommands(program);
  registerImageCommands(program);
  registerProductCommands(program);
  registerTokenCommands(program);
  registerDeviceCommands(program);
  registerApiKeyCommands(program);
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
    const { reportFailure } = await import('./output.js');
    return reportFailure(err, argv.includes('--json'));
  }
}
