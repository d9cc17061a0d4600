// `abota image rootfs|disk`: root filesystem images and factory disks (docs/image.md). The work
// lives in ../image/; this module only maps flags to options and results to output.
import type { Command } from 'commander';
import { printJson } from '../output.js';
import { buildDisk, DISK_FORMATS, type DiskFormat, type DiskSummary } from '../image/disk.js';
import { ImageError } from '../image/errors.js';
import { MIB, type PartitionSizes, parseSize } from '../image/layout.js';
import { buildRootfs, parseRootfsType, type RootfsSummary } from '../image/rootfs.js';

interface RootfsFlags {
  from: string;
  fs: string;
  size?: string;
  out: string;
  init: string;
  json?: boolean;
}

interface DiskFlags {
  release: string;
  releaseB?: string;
  out: string;
  format: string;
  size?: string;
  sizeEsp?: string;
  sizeBootEfi?: string;
  sizeBoot?: string;
  sizeRootfs?: string;
  sizeUnused?: string;
  sizeLog?: string;
  sizeData?: string;
  dataDirContent?: string;
  console?: string;
  json?: boolean;
}

function parseBytes(text: string | undefined, what: string): number | undefined {
  if (text === undefined) return undefined;
  if (/^\d+$/.test(text)) return Number(text);
  return parseSize(text, what);
}

function printRootfs(s: RootfsSummary): void {
  const added =
    s.addedMountPoints.length === 0 ? '' : `\n  added mount points: ${s.addedMountPoints.join(' ')}`;
  process.stdout.write(
    `built ${s.fs} root filesystem ${s.out}: ${s.sizeBytes} bytes (${s.contentBytes} of filesystem), ` +
      `SOURCE_DATE_EPOCH ${s.sourceDateEpoch}, init ${s.init}, ${s.durationMs} ms${added}\n`,
  );
}

function printDisk(s: DiskSummary): void {
  const lines = [
    `built ${s.format} disk ${s.out}: ${(s.sizeBytes / MIB).toFixed(0)} MiB, slot A ${s.slots.A}, slot B ${s.slots.B ?? 'empty'}, ${s.durationMs} ms`,
  ];
  for (const p of s.partitions) {
    const hash = p.hashOffsetBytes === undefined ? '' : `, hash area at +${p.hashOffsetBytes}`;
    lines.push(
      `  ${String(p.number).padStart(2)} ${p.name.padEnd(9)} ${String(p.sizeBytes / MIB).padStart(6)} MiB at ${p.offsetBytes}${hash}`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

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
    .action(async (flags: RootfsFlags) => {
      const summary = await buildRootfs({
        from: flags.from,
        fs: parseRootfsType(flags.fs),
        out: flags.out,
        sizeBytes: parseBytes(flags.size, '--size'),
        init: flags.init,
      });
      if (flags.json === true) printJson({ ok: true, ...summary });
      else printRootfs(summary);
    });

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
    .option('--console <args>', 'kernel console arguments', 'console=ttyS0,115200')
    .option('--json', 'print one JSON summary with the partition table')
    .action(async (flags: DiskFlags) => {
      if (!(DISK_FORMATS as readonly string[]).includes(flags.format)) {
        throw new ImageError(
          'ERR_IMAGE_USAGE',
          `--format ${flags.format}: expected one of ${DISK_FORMATS.join(', ')}`,
        );
      }
      const sizes: Partial<PartitionSizes> = {};
      const map: [keyof PartitionSizes, string | undefined, string][] = [
        ['esp', flags.sizeEsp, '--size-esp'],
        ['bootEfi', flags.sizeBootEfi, '--size-boot-efi'],
        ['boot', flags.sizeBoot, '--size-boot'],
        ['rootfs', flags.sizeRootfs, '--size-rootfs'],
        ['unused', flags.sizeUnused, '--size-unused'],
        ['log', flags.sizeLog, '--size-log'],
        ['data', flags.sizeData, '--size-data'],
      ];
      for (const [key, text, what] of map) if (text !== undefined) sizes[key] = parseSize(text, what);
      const summary = await buildDisk({
        release: flags.release,
        releaseB: flags.releaseB,
        out: flags.out,
        format: flags.format as DiskFormat,
        sizes,
        diskSizeBytes: flags.size === undefined ? undefined : parseSize(flags.size, '--size'),
        dataDirContent: flags.dataDirContent,
        console: flags.console,
      });
      if (flags.json === true) printJson({ ok: true, ...summary });
      else printDisk(summary);
    });
}
