// `abota blob list|show|delete|gc`: content-addressed blobs in the server's store.
// The command table only: the actions (../commands/blob.ts) load when one runs.
import type { Command } from 'commander';
import { lazyAction } from './lazy.js';
import { withServerOptions } from './server-options.js';

const actions = () => import('../commands/blob.js');

export function registerBlobCommands(program: Command): void {
  const blob = program.command('blob').description("content-addressed blobs in the server's store");

  withServerOptions(
    blob
      .command('show')
      .description('is this blob in the store, and how large is it')
      .argument('<digest>', 'sha256:<hex> (as in a manifest or `abota release show`)'),
  ).action(lazyAction(actions, 'show'));

  withServerOptions(
    blob
      .command('delete')
      .description('delete a blob no release references (as artifact, hash tree or registered delta)')
      .argument('<digest>', 'sha256:<hex>'),
  ).action(lazyAction(actions, 'deleteBlob'));

  withServerOptions(
    blob
      .command('list')
      .description('list stored blobs by digest, each with whether a release references it (one page)')
      .option('--unreferenced', 'only blobs no release references')
      .option('--limit <n>', 'page size (1..1000)', '100')
      .option('--cursor <cursor>', 'continue after a previous page'),
  ).action(lazyAction(actions, 'list'));

  withServerOptions(
    blob
      .command('gc')
      .description(
        'delete every blob no release references that was stored before --older-than (a push in progress has unreferenced blobs)',
      )
      .option('--older-than <duration>', 'grace period, e.g. 1d, 12h, 90m', '1d')
      .option('--dry-run', 'only list what would be deleted'),
  ).action(lazyAction(actions, 'gc'));
}
