// `abota delta make|apply`: block deltas between two images (packages/delta).
// The command table only: the actions (../commands/delta.ts) load when one runs.
import type { Command } from 'commander';
import { lazyAction } from './lazy.js';

const actions = () => import('../commands/delta.js');

export function registerDeltaCommands(program: Command): void {
  const delta = program.command('delta').description('make and apply block deltas between two images');
  delta
    .command('make')
    .description('write a delta that turns OLD into NEW (both a whole number of blocks)')
    .argument('<old>', 'source image (what the device runs)')
    .argument('<new>', 'target image (the release)')
    .argument('<out>', 'delta file to write')
    .option('--block-size <bytes>', 'block size = the target dm-verity data block size (default 4096)')
    .option('--quality <0-11>', 'brotli quality for literal data (default 11)')
    .option('--source-root-hash <hex>', 'dm-verity root hash of OLD, recorded in the header')
    .option('--target-root-hash <hex>', 'dm-verity root hash of NEW, recorded in the header')
    .option('--json', 'print one JSON document instead of text')
    .action(lazyAction(actions, 'makeCommand'));
  delta
    .command('apply')
    .description('apply DELTA to OLD, writing OUT; every block is verified before it is written')
    .argument('<old>', 'source image the delta was made from')
    .argument('<delta>', 'delta file')
    .argument('<out>', 'target image to write (removed again if apply fails)')
    .option('--root-hash <hex>', 'trusted dm-verity root hash of the target')
    .option(
      '--hash-file <path>',
      'the target hash tree as veritysetup format wrote it (superblock at byte 0)',
    )
    .option('--json', 'print one JSON document instead of text')
    .action(lazyAction(actions, 'applyCommand'));
}
