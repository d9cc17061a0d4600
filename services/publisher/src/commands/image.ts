import { printJson } from '../output.js';
import {
  buildDisk,
  DISK_BOOT_PATHS,
  DISK_FORMATS,
  type DiskBootPath,
  type DiskFormat,
  type DiskSummary,
  UEFI_LOADERS,
  type UefiLoader,
} from '../image/disk.js';
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
  boot: string;
  loader: string;
  systemdBoot: string;
  sbKey?: string;
  sbCert?: string;
  ovmfVars?: string;
  ovmfVarsTemplate: string;
  secureBootCert?: string;
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
  for (const e of s.uefi?.entries ?? []) lines.push(`  ${e.bootNumber} "${e.description}": ${e.devicePath}`);
  if (s.uefi?.espFiles) lines.push(`  ESP (systemd-boot): ${s.uefi.espFiles.join(' ')}`);
  if (s.uefi?.ovmfVars) {
    lines.push(
      `  OVMF varstore ${s.uefi.ovmfVars}: BootOrder ${s.uefi.bootOrder.join(',')}${s.uefi.secureBoot ? ', Secure Boot keys enrolled' : ''}`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** `rootfs` */
export async function rootfs(flags: RootfsFlags): Promise<void> {
  const summary = await buildRootfs({
    from: flags.from,
    fs: parseRootfsType(flags.fs),
    out: flags.out,
    sizeBytes: parseBytes(flags.size, '--size'),
    init: flags.init,
  });
  if (flags.json === true) printJson({ ok: true, ...summary });
  else printRootfs(summary);
}

/** `disk` */
export async function disk(flags: DiskFlags): Promise<void> {
  if (!(DISK_FORMATS as readonly string[]).includes(flags.format)) {
    throw new ImageError(
      'ERR_IMAGE_USAGE',
      `--format ${flags.format}: expected one of ${DISK_FORMATS.join(', ')}`,
    );
  }
  if (!(DISK_BOOT_PATHS as readonly string[]).includes(flags.boot)) {
    throw new ImageError(
      'ERR_IMAGE_USAGE',
      `--boot ${flags.boot}: expected one of ${DISK_BOOT_PATHS.join(', ')}`,
    );
  }
  if (!(UEFI_LOADERS as readonly string[]).includes(flags.loader)) {
    throw new ImageError(
      'ERR_IMAGE_USAGE',
      `--loader ${flags.loader}: expected one of ${UEFI_LOADERS.join(', ')}`,
    );
  }
  if ((flags.sbKey === undefined) !== (flags.sbCert === undefined)) {
    throw new ImageError('ERR_IMAGE_USAGE', '--sb-key and --sb-cert go together (sbsign needs both)');
  }
  if (flags.sbKey !== undefined && flags.loader !== 'systemd-boot') {
    throw new ImageError('ERR_IMAGE_USAGE', '--sb-key signs systemd-boot: it needs --loader systemd-boot');
  }
  if (flags.secureBootCert !== undefined && flags.ovmfVars === undefined) {
    throw new ImageError(
      'ERR_IMAGE_USAGE',
      '--secure-boot-cert enrols keys in the varstore: it needs --ovmf-vars',
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
    boot: flags.boot as DiskBootPath,
    ...(flags.loader !== 'firmware' || flags.boot === 'uefi' ? { loader: flags.loader as UefiLoader } : {}),
    systemdBoot: {
      efi: flags.systemdBoot,
      sign: flags.sbKey === undefined ? undefined : { key: flags.sbKey, cert: flags.sbCert! },
    },
    ovmfVars:
      flags.ovmfVars === undefined
        ? undefined
        : { out: flags.ovmfVars, template: flags.ovmfVarsTemplate, secureBootCert: flags.secureBootCert },
  });
  if (flags.json === true) printJson({ ok: true, ...summary });
  else printDisk(summary);
}
