// `abota image rootfs|disk`: root filesystem images and bootable A/B disks (../image/).
// The command table only: the actions (../commands/image.ts) load when one runs.
import type { Command } from 'commander';
import { lazyAction } from './lazy.js';

const actions = () => import('../commands/image.js');

export function registerImageCommands(program: Command): void {
  const image = program.command('image').description('build root filesystem images and bootable A/B disks');

  image
    .command('rootfs')
    .description('a reproducible read-only root filesystem image from a directory or tarball')
    .requiredOption('--from <dir|tarball>', 'the root filesystem tree')
    .option('--fs <type>', 'erofs, squashfs or ext4', 'erofs')
    .option('--size <bytes>', 'image size (multiple of 4096); default: sized to the content')
    .requiredOption('--out <file>', 'image to create (must not exist)')
    .option('--init <path>', 'the init the tree must contain', '/sbin/init')
    .option('--json', 'print one JSON summary')
    .action(lazyAction(actions, 'rootfs'));

  image
    .command('disk')
    .description(
      'the factory GPT disk: ESP with GRUB, slot A from a release (B empty or a second release), Data, Log',
    )
    .requiredOption('--release <dir>', 'release for slot A (must carry a boot image: release build --kernel)')
    .option('--release-b <dir>', 'release for slot B (default: B empty)')
    .requiredOption('--out <file>', 'disk image to create (must not exist)')
    .option('--format <raw|qcow2|vhdx>', 'output format', 'raw')
    .option('--size <size>', 'whole disk size (default: the partitions + GPT)')
    .option('--size-esp <size>', 'ESP (default 64M)')
    .option('--size-boot-efi <size>', 'BootEFIA/B each (default 8M)')
    .option('--size-boot <size>', 'BootA/B each (default 192M)')
    .option('--size-rootfs <size>', 'RootFSA/B each (default 4G)')
    .option('--size-unused <size>', 'Unused (default 4G)')
    .option('--size-log <size>', 'Log (default 1G)')
    .option('--size-data <size>', 'Data (default 2G)')
    .option(
      '--data-dir-content <dir>',
      'files for the Data partition (mounted at /var): agent config, token...',
    )
    .option(
      '--console <args>',
      'kernel console arguments (GRUB; a UKI carries its own)',
      'console=ttyS0,115200',
    )
    .option(
      '--boot <grub|uefi>',
      "grub: GRUB on the ESP, boot images in BootA/B; uefi: the firmware boots each slot's UKI from BootEFIA/B (releases built with --boot-format uki)",
      'grub',
    )
    .option(
      '--loader <firmware|systemd-boot>',
      "uefi: firmware boots each slot's UKI from BootEFIA/B (Boot0001/0002); systemd-boot on the ESP boots the UKIs in /EFI/Linux (slot A's as abota-a.efi, the default)",
      'firmware',
    )
    .option(
      '--systemd-boot <efi>',
      'systemd-boot binary to install',
      '/usr/lib/systemd/boot/efi/systemd-bootx64.efi',
    )
    .option('--sb-key <key.pem>', 'sign systemd-boot for Secure Boot with this key (sbsign; with --sb-cert)')
    .option('--sb-cert <cert.pem>', 'the certificate of --sb-key')
    .option(
      '--ovmf-vars <file>',
      'uefi: write the boot entries (firmware: Boot0001 A, Boot0002 B; systemd-boot: Boot0001 "Linux Boot Manager") and BootOrder into this copy of an OVMF varstore',
    )
    .option('--ovmf-vars-template <file>', 'the varstore to copy', '/usr/share/OVMF/OVMF_VARS_4M.fd')
    .option(
      '--secure-boot-cert <cert.pem>',
      'with --ovmf-vars: enrol this certificate as PK, KEK and db and enable Secure Boot (test VMs)',
    )
    .option('--json', 'print one JSON summary with the partition table')
    .action(lazyAction(actions, 'disk'));
}
