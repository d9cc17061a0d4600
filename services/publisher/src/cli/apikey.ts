// `abota apikey create|list|revoke`: admin API keys, each with one role.
// The command table only: the actions (../commands/apikey.ts) load when one runs.
import type { Command } from 'commander';
import { ROLES } from './flags.js';
import { lazyAction } from './lazy.js';
import { withServerOptions } from './server-options.js';

const actions = () => import('../commands/apikey.js');

export function registerApiKeyCommands(program: Command): void {
  const apikey = program.command('apikey').description('admin API keys, each with one role');

  withServerOptions(
    apikey
      .command('create')
      .description(
        `create an API key with one role (${ROLES.join(', ')}); it is printed once and cannot be shown again`,
      )
      .requiredOption('--name <name>', 'who or what uses it (e.g. ci-publisher)')
      .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`),
  ).action(lazyAction(actions, 'create'));

  withServerOptions(apikey.command('list').description('list API keys (never the keys themselves)')).action(
    lazyAction(actions, 'list'),
  );

  withServerOptions(
    apikey
      .command('revoke')
      .description('revoke an API key: the server refuses it from now on')
      .argument('<id>', 'key id (from `abota apikey list`)'),
  ).action(lazyAction(actions, 'revoke'));
}
