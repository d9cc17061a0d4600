// `abota token create|list|revoke`: provisioning tokens that devices register with.
// The command table only: the actions (../commands/token.ts) load when one runs.
import type { Command } from 'commander';
import { lazyAction } from './lazy.js';
import { withServerOptions } from './server-options.js';

const actions = () => import('../commands/token.js');

export function registerTokenCommands(program: Command): void {
  const token = program.command('token').description('provisioning tokens that devices register with');
  withServerOptions(
    token
      .command('create')
      .description(
        'create a provisioning token for one product; it is printed once and cannot be shown again',
      )
      .requiredOption('--product <id>', 'product the registering devices belong to')
      .option('--expires <duration>', 'lifetime, e.g. 7d, 12h, 2w (1m..365d)', '7d')
      .option('--max-uses <n>', 'number of devices that may register with it (default: 1)')
      .option('--description <text>', 'free text shown in listings'),
  ).action(lazyAction(actions, 'create'));

  withServerOptions(
    token.command('list').description('list provisioning tokens (never the tokens themselves)'),
  ).action(lazyAction(actions, 'list'));

  withServerOptions(
    token
      .command('revoke')
      .description('revoke a provisioning token: no device registers with it any more')
      .argument('<id>', 'token id (from `abota token list`)'),
  ).action(lazyAction(actions, 'revoke'));
}
