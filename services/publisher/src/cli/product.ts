// `abota product create|set|set-root|list|show`: products on an update server and their trust roots.
// The command table only: the actions (../commands/product.ts) load when one runs.
import type { Command } from 'commander';
import { lazyAction } from './lazy.js';
import { withServerOptions } from './server-options.js';

const actions = () => import('../commands/product.js');

export function registerProductCommands(program: Command): void {
  const product = program
    .command('product')
    .description('create products on an update server and rotate their trust roots');

  withServerOptions(
    product
      .command('create')
      .description(
        'create a product with its trust root (root.json of `abota keys init`); releases are verified against it',
      )
      .argument('<id>', 'product id, as in the manifests (e.g. eflow-vm)')
      .requiredOption('--root <root.json>', 'the trust root file')
      .option('--description <text>', 'free text shown in listings'),
  ).action(lazyAction(actions, 'create'));

  withServerOptions(
    product
      .command('set-root')
      .description(
        'rotate the trust root: upload root.json version N+1 (from `abota keys rotate`), signed by the current and the new root keys',
      )
      .argument('<id>', 'product id')
      .requiredOption('--root <root.json>', 'the new trust root file'),
  ).action(lazyAction(actions, 'setRoot'));

  withServerOptions(
    product
      .command('set')
      .description('change product settings (admin key)')
      .argument('<id>', 'product id')
      .option(
        '--require-approval',
        "four-eyes: its rollouts start only once another operator or admin key than the creator's approves them",
      )
      .option('--no-require-approval', 'rollouts start when created (the default)')
      .option('--description <text>', 'free text shown in listings'),
  ).action(lazyAction(actions, 'set'));

  withServerOptions(product.command('list').description('list the products on the server')).action(
    lazyAction(actions, 'list'),
  );

  withServerOptions(
    product
      .command('show')
      .description('show a product and its current trust root (--json prints root.json too)')
      .argument('<id>', 'product id'),
  ).action(lazyAction(actions, 'show'));
}
