// `abota keys init|rotate|show`: the trust root (root.json) and the private keys behind it
// (../keys/). The command table only: the actions (../commands/keys.ts) load when one runs.
import type { Command } from 'commander';
import { lazyAction } from './lazy.js';

const actions = () => import('../commands/keys.js');

/** The default of --passphrase-env (../keys/store.ts PASSPHRASE_ENV). */
const PASSPHRASE_ENV = 'ABOTA_KEY_PASSPHRASE';

const ROOT_KEYS_DIR_HELP =
  'directory for the root private keys instead of DIR/keys: keep it offline (removable media) and attach it only to init or rotate';

function addRoleOptions(command: Command): Command {
  return command
    .option('--root-keys-dir <dir>', ROOT_KEYS_DIR_HELP)
    .option('--root-keys <M>', 'number of root keys')
    .option('--root-threshold <N>', 'root signatures required (1..M)')
    .option('--release-keys <M>', 'number of release keys')
    .option('--release-threshold <N>', 'release signatures required (1..M)')
    .option('--expires <duration>', 'lifetime of the root, e.g. 365d, 12h, 2w', '365d')
    .option(
      '--passphrase-env <VAR>',
      `environment variable with the key-file passphrase (default ${PASSPHRASE_ENV}); new key files are encrypted with it`,
    )
    .option('--json', 'print one JSON document');
}

export function registerKeysCommands(program: Command): void {
  const keys = program.command('keys').description('create and rotate the trust root and release keys');

  addRoleOptions(
    keys
      .command('init')
      .argument('<dir>', 'directory for root.json and keys/')
      .description('create root and release keys and a signed root.json (version 1)'),
  ).action(lazyAction(actions, 'init'));

  addRoleOptions(
    keys
      .command('rotate')
      .argument('<dir>', 'directory holding root.json and keys/')
      .description(
        'write root version N+1 signed by old and new root keys; --<role>-keys gives that role fresh keys, ' +
          'a threshold alone keeps them; the old root is kept as roots/<N>.root.json',
      ),
  ).action(lazyAction(actions, 'rotate'));

  keys
    .command('show')
    .argument('<dir>', 'directory holding root.json')
    .description('print roles, thresholds, key ids and expiry of DIR/root.json (no private material)')
    .option('--root-keys-dir <dir>', 'also look for root private keys here')
    .option('--json', 'print one JSON document')
    .action(lazyAction(actions, 'show'));
}
