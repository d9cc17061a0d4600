// `abota verity format|verify|dump`: dm-verity hash trees, compatible with veritysetup.
// The command table only: the actions (../commands/verity.ts) load when one runs.
import type { Command } from 'commander';
import { lazyAction } from './lazy.js';

const actions = () => import('../commands/verity.js');

export function registerVerityCommands(program: Command): void {
  const verity = program.command('verity').description('dm-verity hash trees, compatible with veritysetup');

  addTreeOptions(
    verity
      .command('format')
      .description(
        'build the hash tree of DATA into HASHFILE (like veritysetup format) and print the root hash',
      )
      .argument('<data>', 'data image file or block device')
      .argument(
        '<hashfile>',
        'hash file to write (replaced atomically; written in place at --hash-offset when it exists)',
      ),
  ).action(lazyAction(actions, 'format'));

  addTreeOptions(
    verity
      .command('verify')
      .description(
        'check DATA against HASHFILE and ROOTHASH (like veritysetup verify); exit 0 good, 1 bad header or root hash, 2 corrupted',
      )
      .argument('<data>', 'data image file or block device')
      .argument('<hashfile>', 'hash file')
      .argument('[roothash]', 'trusted root hash in hex (or --root-hash-file)'),
  ).action(lazyAction(actions, 'verify'));

  verity
    .command('dump')
    .description('print the VERITY superblock of HASHFILE (like veritysetup dump)')
    .argument('<hashfile>', 'hash file or device with a superblock')
    .option('--hash-offset <bytes>', 'byte offset of the superblock, a multiple of 512')
    .option('--json', 'print one JSON document instead of text')
    .action(lazyAction(actions, 'dump'));
}

function addTreeOptions(cmd: Command): Command {
  return cmd
    .option('--salt <hex>', 'salt as hex, or "-" for none (format default: 32 random bytes)')
    .option('--uuid <uuid>', 'UUID stored in the superblock (default: random v4)')
    .option('--format <type>', 'hash type: 1 (default) or 0 (original Chrome OS)')
    .option('--hash <alg>', 'hash algorithm: sha1, sha224, sha256 (default), sha384, sha512')
    .option('--data-block-size <bytes>', 'data block size, a power of two 512..524288 (default 4096)')
    .option('--hash-block-size <bytes>', 'hash block size, a power of two 512..524288 (default 4096)')
    .option('--data-blocks <n>', 'number of data blocks (default: the whole data file)')
    .option('--hash-offset <bytes>', 'byte offset of the superblock/tree in the hash file, a multiple of 512')
    .option('--no-superblock', 'do not write (format) or read (verify) a superblock')
    .option('--root-hash-file <file>', 'write (format) or read (verify) the root hash as hex in this file')
    .option(
      '--threads <n>',
      'hashing threads (default 1; 2 is faster on two cores but needs ~12 MiB more memory)',
    )
    .option('--json', 'print one JSON document instead of text');
}
