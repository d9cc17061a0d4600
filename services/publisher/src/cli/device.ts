// `abota device list|show|tags|decommission`: the fleet as the update server sees it.
// The command table only: the actions (../commands/device.ts) load when one runs.
import type { Command } from 'commander';
import { lazyAction } from './lazy.js';
import { withServerOptions } from './server-options.js';

const actions = () => import('../commands/device.js');

export function registerDeviceCommands(program: Command): void {
  const device = program.command('device').description('the fleet as the update server sees it');
  withServerOptions(
    device
      .command('list')
      .description('list registered devices (one page; --cursor continues)')
      .option('--product <id>', 'only this product')
      .option('--hardware <id>', 'only this hardware id')
      .option('--tag <tag>', 'only devices with this tag')
      .option('--version <semver>', 'only devices running this version')
      .option('--limit <n>', 'page size (1..1000)', '100')
      .option('--cursor <cursor>', 'continue after a previous page'),
  ).action(lazyAction(actions, 'list'));

  withServerOptions(
    device
      .command('show')
      .description('show a device and its latest events (installs, commits, failures, newest first)')
      .argument('<id>', 'device id (from `abota device list`)'),
  ).action(lazyAction(actions, 'show'));

  withServerOptions(
    device
      .command('tags')
      .description("replace a device's tags (rollout selectors match on them); --clear removes all")
      .argument('<id>', 'device id')
      .argument('[tags...]', 'the new tags, e.g. ring=canary site=berlin')
      .option('--clear', 'remove every tag'),
  ).action(lazyAction(actions, 'tags'));

  withServerOptions(
    device
      .command('decommission')
      .description('decommission a device: the server refuses its tokens from now on (not undoable)')
      .argument('<id>', 'device id'),
  ).action(lazyAction(actions, 'decommission'));
}
