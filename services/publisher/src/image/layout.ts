// The GPT layout of an abota disk (docs/image.md "Disk layout"): EFLOW's partitions after the
// ESP, in EFLOW's order, at 1 MiB boundaries. Partition numbers are fixed because GRUB 2.06
// finds a slot's Boot partition by number ((hdN,gptK)); it cannot search by partlabel.
import { ImageError } from './errors.js';

export const MIB = 1024 * 1024;

export type PartName =
  | 'ESP'
  | 'BootEFIA'
  | 'BootA'
  | 'RootFSA'
  | 'BootEFIB'
  | 'BootB'
  | 'RootFSB'
  | 'Unused'
  | 'Log'
  | 'Data';

/** [name, size key, GPT type code (sgdisk)], in partition-number order from 1. */
export const PARTITIONS: readonly (readonly [PartName, SizeKey, string])[] = [
  ['ESP', 'esp', 'EF00'],
  ['BootEFIA', 'bootEfi', '8300'],
  ['BootA', 'boot', '8300'],
  ['RootFSA', 'rootfs', '8300'],
  ['BootEFIB', 'bootEfi', '8300'],
  ['BootB', 'boot', '8300'],
  ['RootFSB', 'rootfs', '8300'],
  ['Unused', 'unused', '8300'],
  ['Log', 'log', '8300'],
  ['Data', 'data', '8300'],
];

export type SizeKey = 'esp' | 'bootEfi' | 'boot' | 'rootfs' | 'unused' | 'log' | 'data';
export type PartitionSizes = Record<SizeKey, number>;

/** EFLOW's sizes (Log and Data at their smallest documented values), ESP 64 MiB. */
export const EFLOW_SIZES: PartitionSizes = {
  esp: 64 * MIB,
  bootEfi: 8 * MIB,
  boot: 192 * MIB,
  rootfs: 4096 * MIB,
  unused: 4096 * MIB,
  log: 1024 * MIB,
  data: 2048 * MIB,
};

export interface Partition {
  number: number;
  name: PartName;
  typeCode: string;
  offsetBytes: number;
  sizeBytes: number;
}

export interface DiskLayout {
  sizeBytes: number;
  partitions: Partition[];
}

/** "64M", "4G", "1048576" → bytes (whole MiB). */
export function parseSize(text: string, what: string): number {
  const m = /^(\d+)([KMGT]?)(i?B)?$/i.exec(text.trim());
  const unit = { '': 1, K: 1024, M: MIB, G: 1024 * MIB, T: 1024 * 1024 * MIB }[(m?.[2] ?? '').toUpperCase()];
  const bytes = m === null || unit === undefined ? Number.NaN : Number(m[1]) * unit;
  if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % MIB !== 0) {
    throw new ImageError(
      'ERR_IMAGE_USAGE',
      `${what} ${text}: expected a whole number of MiB, e.g. 192M or 4G`,
    );
  }
  return bytes;
}

/** Lay the partitions out from 1 MiB; the disk ends 1 MiB after the last (backup GPT). */
export function computeLayout(sizes: PartitionSizes, diskSizeBytes?: number): DiskLayout {
  const partitions: Partition[] = [];
  let offset = MIB;
  PARTITIONS.forEach(([name, key, typeCode], i) => {
    partitions.push({ number: i + 1, name, typeCode, offsetBytes: offset, sizeBytes: sizes[key] });
    offset += sizes[key];
  });
  const needed = offset + MIB;
  if (diskSizeBytes !== undefined && diskSizeBytes < needed) {
    throw new ImageError(
      'ERR_IMAGE_TOO_SMALL',
      `--size ${diskSizeBytes} bytes is too small for the layout: the partitions need ${needed} bytes (${needed / MIB} MiB); enlarge the disk or shrink partitions with --size-*`,
    );
  }
  return { sizeBytes: diskSizeBytes ?? needed, partitions };
}

export function partition(layout: DiskLayout, name: PartName): Partition {
  return layout.partitions.find((p) => p.name === name)!;
}

/**
 * Where a slot image's dm-verity hash area starts inside a partition of `sizeBytes`: the last
 * 1/64 (at least 1 MiB, whole MiB) is reserved for it — a sha256 tree with a superblock takes
 * ~1/127 of the data. The agent's config uses the same hashOffsetBytes.
 */
export function hashOffsetBytes(sizeBytes: number): number {
  return sizeBytes - Math.max(MIB, Math.ceil(sizeBytes / 64 / MIB) * MIB);
}
