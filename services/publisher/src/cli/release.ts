// `abota release ...`: signed releases. build, add-delta, verify and inspect work on release
// directories (../commands/release.ts), push uploads one to an update server
// (../release/push.ts), list, show, yank, deltas and remove-delta ask the server
// (../commands/release-catalog.ts). The command table only: actions load when one runs.
import type { Command } from 'commander';
import { DEFAULT_CODEC } from '../release/codec.js';
import { lazyAction } from './lazy.js';
import { withServerOptions } from './server-options.js';

const actions = () => import('../commands/release.js');
const push = () => import('../commands/push.js');
const catalog = () => import('../commands/release-catalog.js');

/**
 * Commander collector for repeatable options (`--delta-from A --delta-from B`). No default value:
 * a mandatory one left out (add-delta --from) is then reported as missing.
 */
function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function registerReleaseCommands(program: Command): void {
  // `release build --version V` must reach the subcommand instead of printing abota's own
  // version: program options are recognised only before the subcommand name.
  program.enablePositionalOptions();
  const release = program.command('release').description('build, verify, inspect and push signed releases');

  release
    .command('build')
    .description('turn rootfs (and boot) images into a signed release directory')
    .requiredOption('--image <rootfs.img>', 'root filesystem image (a whole number of 4096-byte blocks)')
    .option('--boot <boot.img>', 'boot image (optional)')
    .option(
      '--kernel <vmlinuz>',
      'make the boot image from this kernel (+ initramfs + boot config; docs/image.md)',
    )
    .option(
      '--kernel-modules <dir>',
      "the kernel's lib/modules/<version> (or a root holding it); with --kernel",
    )
    .option(
      '--boot-format <grub|uki>',
      'boot image from --kernel: grub (ext4 for GRUB, default) or uki (FAT with a unified kernel image, for BootEFIA/B)',
    )
    .option(
      '--uki-stub <file>',
      'systemd-stub to build the UKI on (default /usr/lib/systemd/boot/efi/linuxx64.efi.stub)',
    )
    .option(
      '--uki-console <args>',
      "console words of the UKI's signed command line (default console=ttyS0,115200)",
    )
    .option('--sb-key <key.pem>', 'sign the UKI for Secure Boot with this key (sbsign; with --sb-cert)')
    .option('--sb-cert <cert.pem>', 'the certificate of --sb-key (enrolled in the firmware db)')
    .requiredOption('--product <id>', 'product id, e.g. eflow-vm')
    .requiredOption('--compatible <hw...>', 'hardware ids the release may be installed on')
    .requiredOption('--version <semver>', 'release version (strict semver, e.g. 1.2.0)')
    .requiredOption('--security-version <n>', 'anti-rollback counter (devices refuse lower)')
    .requiredOption('--expires <duration|timestamp>', 'e.g. 180d, 26w, or 2027-05-25T12:00:00Z')
    .requiredOption('--keys <dir>', 'keys directory from `abota keys init` (root.json + keys/)')
    .requiredOption('--out <dir>', 'release directory to create (must not exist)')
    .option('--passphrase-env <VAR>', 'environment variable holding the key-file passphrase')
    .option(
      '--delta-from <release-dir>',
      'previous release to make deltas from (repeatable); verified first, same product, older version',
      collect,
    )
    .option('--delta-quality <0-11>', 'brotli quality of delta literal data (default 11)')
    .option(
      '--codec <name>',
      `full-image artifact codec: zstd (level 19), brotli (quality 6, the default before zstd) or none (default ${DEFAULT_CODEC.codec})`,
    )
    .option(
      '--codec-level <n>',
      "the codec's level: zstd 1-19, brotli 0-11 (lower builds faster, e.g. 3 for development builds; devices decode any level)",
    )
    .option('--json', 'print one JSON summary for CI')
    .action(lazyAction(actions, 'build'));

  release
    .command('add-delta')
    .description('make deltas from previous releases for a release that is already built')
    .argument('<release-dir>', 'the release that receives the deltas (deltas.json, blobs/)')
    .requiredOption(
      '--from <release-dir>',
      'previous release to make deltas from (repeatable); verified first, same product, older version',
      collect,
    )
    .option(
      '--root <root.json>',
      "trust root both releases are checked from (default: the release's oldest root, roots/<N>.root.json or root.json)",
    )
    .option('--delta-quality <0-11>', 'brotli quality of delta literal data (default 11)')
    .option('--json', 'print one JSON summary: each delta with its size and ratio to the full artifact')
    .action(lazyAction(actions, 'addDelta'));

  release
    .command('verify')
    .description(
      'check a release as a device would: root chain, signatures, expiry, blobs, every block; and every delta listed in deltas.json',
    )
    .argument('<release-dir>')
    .requiredOption(
      '--root <root.json>',
      'the trust root to verify against (e.g. the one baked into devices)',
    )
    .option('--now <iso>', 'check expiry as of this instant instead of now')
    .option('--json', 'print one JSON report')
    .action(lazyAction(actions, 'verify'));

  release
    .command('inspect')
    .description('print what a release directory says, deltas included (without verifying it)')
    .argument('<release-dir>')
    .option('--json', 'print one JSON document')
    .action(lazyAction(actions, 'inspect'));

  release
    .command('push')
    .description(
      'upload a release directory to an update server: blobs the server lacks (HEAD, then a streamed PUT, or resumable parts above --resumable-over-mib), then the signed manifest, then the deltas of deltas.json; re-running resumes, inside large blobs too',
    )
    .argument('<release-dir>')
    .option('--server <url>', 'update server base URL (default: $ABOTA_SERVER)')
    .option(
      '--resumable-over-mib <n>',
      'blobs larger than this many MiB are sent as resumable parts (default 32)',
    )
    .option('--api-key-env <VAR>', 'environment variable holding the API key (default ABOTA_API_KEY)')
    .option('--json', 'print one JSON summary')
    .action(lazyAction(push, 'push'));

  withServerOptions(
    release
      .command('list')
      .description('list the releases on the server (one page; --cursor continues)')
      .option('--product <id>', 'only this product')
      .option('--limit <n>', 'page size (1..1000)', '100')
      .option('--cursor <cursor>', 'continue after a previous page'),
  ).action(lazyAction(catalog, 'list'));

  withServerOptions(
    release
      .command('show')
      .description('show a release: versions, compatibility, its blobs (--json adds the manifest)')
      .argument('<id>', 'release id (from `abota release list`)'),
  ).action(lazyAction(catalog, 'show'));

  withServerOptions(
    release
      .command('yank')
      .description('yank a release: never offered again (devices that installed it keep it)')
      .argument('<id>', 'release id')
      .requiredOption('--reason <text>', 'why (recorded in the audit log and shown in listings)'),
  ).action(lazyAction(catalog, 'yank'));

  withServerOptions(
    release
      .command('deltas')
      .description('list the deltas registered for a release (which versions it updates from)')
      .argument('<id>', 'release id'),
  ).action(lazyAction(catalog, 'deltas'));

  withServerOptions(
    release
      .command('remove-delta')
      .description('stop offering a delta (its blob stays until `abota blob delete`)')
      .argument('<release-id>', 'release id')
      .argument('<delta-id>', 'delta id (from `abota release deltas`)'),
  ).action(lazyAction(catalog, 'removeDelta'));
}
