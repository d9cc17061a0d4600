// `abota image disk`: the factory disk of an A/B VM (docs/image.md "Disk layout"). GPT by
// sgdisk with GUIDs derived from the inputs, partition contents written at their offsets (no
// loop device, no mount): ESP (./esp.ts), slot A (and B) from releases (./release-slot.ts),
// Data provisioned with the caller's files and the overlay upper dirs, Log empty; then
// qemu-img converts to qcow2 or VHDX if asked. Output written to a temp name, renamed at the end.
import { copyFile, cp, mkdir, open, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MANIFEST_JSON, MANIFEST_JWS } from '../release/release-dir.js';
import { buildEsp, assertGrubEfi, buildUefiEsp } from './esp.js';
import {
  bootVariableName,
  type DevicePathNode,
  devicePathText,
  encodeLoadOption,
  LOAD_OPTION_ACTIVE,
} from '@abota/client';
import {
  bootOrderVariable,
  bootVariable,
  type EfiVariable,
  secureBootVariables,
  setVariables,
} from './efi-vars.js';
import {
  buildSystemdBootEsp,
  DEFAULT_SYSTEMD_BOOT_EFI,
  SYSTEMD_BOOT_ENTRY_DESCRIPTION,
  SYSTEMD_BOOT_ESP_PATH,
} from './sdboot-esp.js';
import type { SecureBootKey } from './uki.js';
import { UKI_PATH_IN_BOOT_IMAGE } from './uki-boot.js';
import { ImageError } from './errors.js';
import { makeExt4 } from './ext4.js';
import { grubCfg } from './grubcfg.js';
import { OVERLAY_DIRS } from './init-script.js';
import {
  computeLayout,
  type DiskLayout,
  EFLOW_SIZES,
  hashOffsetBytes,
  MIB,
  partition,
  type PartName,
  type PartitionSizes,
} from './layout.js';
import { writeOutput } from './output-file.js';
import { assertFits, type LoadedRelease, loadRelease, writeSlotImage } from './release-slot.js';
import { sourceDateEpoch, stableUuid } from './reproducible.js';
import { requireTools, runTool, type Tool } from './tools.js';

export const DISK_FORMATS = ['raw', 'qcow2', 'vhdx'] as const;
/** grub: GRUB on the ESP, boot images in BootA/B; uefi: the firmware boots the slot's UKI in BootEFIA/B. */
export const DISK_BOOT_PATHS = ['grub', 'uefi'] as const;
export type DiskBootPath = (typeof DISK_BOOT_PATHS)[number];
export type DiskFormat = (typeof DISK_FORMATS)[number];
/** uefi: the firmware boots the slot partitions (Boot0001/0002), or systemd-boot on the ESP boots UKIs copied there. */
export const UEFI_LOADERS = ['firmware', 'systemd-boot'] as const;
export type UefiLoader = (typeof UEFI_LOADERS)[number];

export interface DiskOptions {
  release: string;
  releaseB?: string | undefined;
  out: string;
  format?: DiskFormat;
  sizes?: Partial<PartitionSizes>;
  /** Whole-disk size; default: the partitions plus the GPT. */
  diskSizeBytes?: number | undefined;
  /** Files copied to the root of Data (mounted at /var in the guest). */
  dataDirContent?: string | undefined;
  console?: string | undefined;
  /** How the disk boots (default grub). */
  boot?: DiskBootPath;
  /** uefi: what the firmware starts (default firmware: each slot's UKI from its partition). */
  loader?: UefiLoader;
  /** systemd-boot: the EFI binary (default Debian's) and the key to sign it with for Secure Boot. */
  systemdBoot?: { efi?: string | undefined; sign?: SecureBootKey | undefined };
  /** uefi: write the boot entries (and with secureBootCert the keys) into a copy of an OVMF varstore. */
  ovmfVars?: { out: string; template: string; secureBootCert?: string | undefined } | undefined;
  now?: Date;
  env?: NodeJS.ProcessEnv;
}

export interface DiskSummary {
  out: string;
  format: DiskFormat;
  sizeBytes: number;
  slots: { A: string; B: string | null };
  partitions: (DiskLayout['partitions'][number] & { hashOffsetBytes?: number })[];
  grubenv?: Record<string, string>;
  boot: DiskBootPath;
  /** uefi: the boot entries (Boot####) of the slots, and what --ovmf-vars holds. */
  uefi?: {
    loader: UefiLoader;
    /** systemd-boot: the files put on the ESP. */
    espFiles?: string[];
    entries: { slot: 'A' | 'B' | null; bootNumber: string; description: string; devicePath: string }[];
    bootOrder: string[];
    ovmfVars: string | null;
    secureBoot: boolean;
  };
  durationMs: number;
}

const TOOLS: Tool[] = ['sgdisk', 'mkfs.vfat', 'mmd', 'mcopy', 'grub-mkimage', 'tar', 'mkfs.ext4', 'debugfs'];

const ZEROS = Buffer.alloc(MIB);

/** Copy `src` into the disk at `at`, skipping all-zero MiBs (the disk file stays sparse). */
async function copyInto(disk: Awaited<ReturnType<typeof open>>, src: string, at: number): Promise<void> {
  const fh = await open(src, 'r');
  const buf = Buffer.alloc(MIB);
  try {
    for (let pos = 0; ; pos += MIB) {
      const { bytesRead } = await fh.read(buf, 0, MIB, pos);
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      // memcmp against zeros: a byte loop in JS costs seconds per GiB.
      if (!chunk.equals(ZEROS.subarray(0, bytesRead))) await disk.write(chunk, 0, bytesRead, at + pos);
    }
  } finally {
    await fh.close();
  }
}

async function writeGpt(path: string, layout: DiskLayout, seed: string): Promise<void> {
  const args = ['--clear', `--disk-guid=${stableUuid(`${seed}:disk`)}`];
  for (const p of layout.partitions) {
    const first = p.offsetBytes / 512;
    const last = first + p.sizeBytes / 512 - 1;
    args.push(
      `--new=${p.number}:${first}:${last}`,
      `--typecode=${p.number}:${p.typeCode}`,
      `--change-name=${p.number}:${p.name}`,
      `--partition-guid=${p.number}:${stableUuid(`${seed}:${p.name}`)}`,
    );
  }
  await runTool('sgdisk', [...args, path]);
}

/**
 * Data's content: the caller's files, the overlay upper/work dirs, the layout, and each
 * provisioned slot's signed manifest (`.abota/slots/<X>/manifest.jws`) so the agent can know
 * the factory slots' versions and root hashes (e.g. to take deltas against slot A).
 */
async function dataTree(
  scratch: string,
  content: string | undefined,
  layout: DiskLayout,
  slots: readonly (readonly ['A' | 'B', LoadedRelease])[],
): Promise<string> {
  const dir = join(scratch, 'data');
  await mkdir(dir);
  if (content !== undefined) {
    await cp(content, dir, { recursive: true, verbatimSymlinks: true }).catch((err: Error) => {
      throw new ImageError('ERR_IMAGE_SOURCE_UNREADABLE', `--data-dir-content ${content}: ${err.message}`);
    });
  }
  for (const d of OVERLAY_DIRS) {
    await mkdir(join(dir, '.abota', 'overlays', d, 'upper'), { recursive: true });
    await mkdir(join(dir, '.abota', 'overlays', d, 'work'), { recursive: true });
  }
  await writeFile(
    join(dir, '.abota', 'disk-layout.json'),
    `${JSON.stringify(describeLayout(layout), null, 2)}\n`,
  );
  for (const [slot, release] of slots) {
    await mkdir(join(dir, '.abota', 'slots', slot), { recursive: true });
    for (const f of [MANIFEST_JWS, MANIFEST_JSON])
      await copyFile(join(release.dir, f), join(dir, '.abota', 'slots', slot, f));
  }
  return dir;
}

function describeLayout(layout: DiskLayout): DiskSummary['partitions'] {
  return layout.partitions.map((p) =>
    /^(Boot|BootEFI|RootFS)[AB]$/.test(p.name)
      ? { ...p, hashOffsetBytes: hashOffsetBytes(p.sizeBytes) }
      : { ...p },
  );
}

/** The partition a slot's boot image goes to: BootA/B (GRUB's ext4) or BootEFIA/B (a UKI on FAT). */
export function bootPartitionName(boot: DiskBootPath, slot: 'A' | 'B'): PartName {
  return boot === 'grub' ? `Boot${slot}` : `BootEFI${slot}`;
}

async function writeSlot(
  disk: Awaited<ReturnType<typeof open>>,
  layout: DiskLayout,
  slot: 'A' | 'B',
  r: LoadedRelease,
  boot: DiskBootPath,
): Promise<void> {
  await writeSlotImage(disk, partition(layout, `RootFS${slot}`), r.manifest.images.rootfs, r.blobs.rootfs);
  const part = partition(layout, bootPartitionName(boot, slot));
  await writeSlotImage(disk, part, r.manifest.images.boot!, r.blobs.boot);
  // A FAT boot sector (0x55AA, "FAT" at 0x36) is a UKI boot image; GRUB's is ext4.
  const head = Buffer.alloc(512);
  await disk.read(head, 0, 512, part.offsetBytes);
  const fat = head.readUInt16LE(510) === 0xaa55 && head.toString('latin1', 0x36, 0x39) === 'FAT';
  if (fat !== (boot === 'uefi')) {
    throw new ImageError(
      'ERR_IMAGE_RELEASE_INVALID',
      `release ${r.dir} (${r.manifest.version}): its boot image is ${fat ? 'a UKI (release build --boot-format uki)' : 'for GRUB'}, ` +
        `but --boot ${boot} needs ${boot === 'uefi' ? 'a UKI: build the release with --boot-format uki' : 'a GRUB boot image'}`,
    );
  }
}

/** HD(partition)/File(path): what efibootmgr -c writes for a file on a GPT partition. */
function devicePathTo(layout: DiskLayout, name: PartName, seed: string, path: string): DevicePathNode[] {
  const p = partition(layout, name);
  return [
    {
      kind: 'hd',
      partitionNumber: p.number,
      startLba: BigInt(p.offsetBytes / 512),
      sizeLba: BigInt(p.sizeBytes / 512),
      partitionGuid: stableUuid(`${seed}:${p.name}`),
    },
    { kind: 'file', path: path.replace(/\//g, '\\') },
  ];
}

/** Boot0001 (slot A) and Boot0002 (slot B): the UKI in the slot's BootEFI partition. */
export const UEFI_BOOT_NUMBERS = { A: 1, B: 2 } as const;

/** The boot entries of a GRUBless disk: one per slot (firmware), or one for systemd-boot on the ESP. */
function uefiBootEntries(
  loader: UefiLoader,
  layout: DiskLayout,
  seed: string,
): { n: number; slot: 'A' | 'B' | null; description: string; devicePath: DevicePathNode[] }[] {
  if (loader === 'systemd-boot') {
    const devicePath = devicePathTo(layout, 'ESP', seed, SYSTEMD_BOOT_ESP_PATH);
    return [{ n: 1, slot: null, description: SYSTEMD_BOOT_ENTRY_DESCRIPTION, devicePath }];
  }
  return (['A', 'B'] as const).map((slot) => ({
    n: UEFI_BOOT_NUMBERS[slot],
    slot,
    description: `abota ${slot}`,
    devicePath: devicePathTo(layout, bootPartitionName('uefi', slot), seed, UKI_PATH_IN_BOOT_IMAGE),
  }));
}

async function writeOvmfVars(
  o: NonNullable<DiskOptions['ovmfVars']>,
  loader: UefiLoader,
  layout: DiskLayout,
  seed: string,
  now: Date,
): Promise<NonNullable<DiskSummary['uefi']>> {
  const template = await readFile(o.template).catch((err: Error) => {
    throw new ImageError(
      'ERR_IMAGE_SOURCE_UNREADABLE',
      `--ovmf-vars-template ${o.template}: ${err.message} (apt-get install ovmf)`,
    );
  });
  const entries: NonNullable<DiskSummary['uefi']>['entries'] = [];
  const vars: EfiVariable[] = [];
  for (const { n, slot, description, devicePath } of uefiBootEntries(loader, layout, seed)) {
    const option = {
      attributes: LOAD_OPTION_ACTIVE,
      description,
      devicePath,
      optionalData: new Uint8Array(0),
    };
    vars.push(bootVariable(n, encodeLoadOption(option)));
    entries.push({
      slot,
      bootNumber: bootVariableName(n),
      description,
      devicePath: devicePathText(devicePath),
    });
  }
  const order = entries.map((e) => Number.parseInt(e.bootNumber.slice(4), 16));
  vars.push(bootOrderVariable(order));
  if (o.secureBootCert !== undefined) {
    const pem = await readFile(o.secureBootCert, 'utf8').catch((err: Error) => {
      throw new ImageError(
        'ERR_IMAGE_SOURCE_UNREADABLE',
        `--secure-boot-cert ${o.secureBootCert}: ${err.message}`,
      );
    });
    vars.push(...secureBootVariables(pem, stableUuid(`${seed}:secure-boot-owner`)));
  }
  await writeFile(o.out, setVariables(template, vars, now));
  return {
    loader,
    entries,
    bootOrder: order.map(bootVariableName),
    ovmfVars: o.out,
    secureBoot: o.secureBootCert !== undefined,
  };
}

export async function buildDisk(o: DiskOptions): Promise<DiskSummary> {
  const started = performance.now();
  const epoch = sourceDateEpoch(o.env);
  const format = o.format ?? 'raw';
  const layout = computeLayout({ ...EFLOW_SIZES, ...o.sizes }, o.diskSizeBytes);
  const boot = o.boot ?? 'grub';
  await requireTools(format === 'raw' ? TOOLS : [...TOOLS, 'qemu-img']);
  if (boot === 'grub') await assertGrubEfi();
  if (boot !== 'uefi' && o.ovmfVars !== undefined) {
    throw new ImageError('ERR_IMAGE_USAGE', '--ovmf-vars writes UEFI boot entries: it needs --boot uefi');
  }
  const loader = o.loader ?? 'firmware';
  if (boot !== 'uefi' && o.loader !== undefined) {
    throw new ImageError(
      'ERR_IMAGE_USAGE',
      '--loader chooses what UEFI firmware starts: it needs --boot uefi',
    );
  }
  if (
    loader === 'systemd-boot' &&
    o.ovmfVars?.secureBootCert !== undefined &&
    o.systemdBoot?.sign === undefined
  ) {
    throw new ImageError(
      'ERR_IMAGE_USAGE',
      '--secure-boot-cert enforces Secure Boot, so systemd-boot must be signed: give --sb-key and --sb-cert',
    );
  }
  const now = o.now ?? new Date();
  const a = await loadRelease(o.release, now);
  const b = o.releaseB === undefined ? undefined : await loadRelease(o.releaseB, now);
  for (const r of [a, b]) {
    if (r === undefined) continue;
    assertFits(r.manifest.images.rootfs, partition(layout, 'RootFSA'), '--size-rootfs');
    assertFits(
      r.manifest.images.boot!,
      partition(layout, bootPartitionName(boot, 'A')),
      boot === 'grub' ? '--size-boot' : '--size-boot-efi',
    );
  }
  const seed = `abota-disk:${a.manifest.product}:${a.manifest.version}:${b?.manifest.version ?? '-'}:${epoch}`;
  return writeOutput(o.out, async (partial, scratch) => {
    let espFiles: string[] | undefined;
    const raw = format === 'raw' ? partial : join(scratch, 'disk.raw');
    const disk = await open(raw, 'w+');
    try {
      await disk.truncate(layout.sizeBytes);
      await disk.close();
      await writeGpt(raw, layout, seed);
      const reopened = await open(raw, 'r+');
      try {
        const esp = join(scratch, 'esp.img');
        const espSize = partition(layout, 'ESP').sizeBytes;
        if (boot === 'grub') {
          const cfg = grubCfg({ layout, console: o.console ?? 'console=ttyS0,115200' });
          await buildEsp({
            out: esp,
            sizeBytes: espSize,
            grubCfg: cfg,
            slotBProvisioned: b !== undefined,
            epoch,
            scratch,
          });
        } else if (loader === 'firmware') {
          await buildUefiEsp({ out: esp, sizeBytes: espSize, epoch });
        }
        await writeSlot(reopened, layout, 'A', a, boot);
        if (b !== undefined) await writeSlot(reopened, layout, 'B', b, boot);
        if (loader === 'systemd-boot' && boot === 'uefi') {
          // The UKIs come out of the slot images just written (mtools reads the disk in place).
          await reopened.sync();
          ({ files: espFiles } = await buildSystemdBootEsp({
            out: esp,
            sizeBytes: espSize,
            epoch,
            scratch,
            disk: raw,
            slots: (b === undefined ? (['A'] as const) : (['A', 'B'] as const)).map((slot) => ({
              slot,
              bootEfiOffsetBytes: partition(layout, bootPartitionName('uefi', slot)).offsetBytes,
            })),
            systemdBoot: o.systemdBoot?.efi ?? DEFAULT_SYSTEMD_BOOT_EFI,
            sign: o.systemdBoot?.sign,
          }));
        }
        await copyInto(reopened, esp, partition(layout, 'ESP').offsetBytes);
        for (const name of ['Data', 'Log'] as const) {
          const part = partition(layout, name);
          const img = join(scratch, `${name}.img`);
          const dir =
            name === 'Data'
              ? await dataTree(
                  scratch,
                  o.dataDirContent,
                  layout,
                  b === undefined
                    ? [['A', a]]
                    : [
                        ['A', a],
                        ['B', b],
                      ],
                )
              : join(scratch, 'empty');
          if (name === 'Log') await mkdir(dir, { recursive: true });
          await makeExt4({
            dir,
            out: img,
            sizeBytes: part.sizeBytes,
            epoch,
            uuidName: `${seed}:${name}`,
            label: name,
            journal: true,
          });
          await copyInto(reopened, img, part.offsetBytes);
        }
      } finally {
        await reopened.close();
      }
    } catch (err) {
      await disk.close().catch(() => undefined);
      throw err;
    }
    const uefiSummary =
      boot !== 'uefi'
        ? undefined
        : {
            ...(o.ovmfVars === undefined
              ? { loader, entries: [], bootOrder: [], ovmfVars: null, secureBoot: false }
              : await writeOvmfVars(o.ovmfVars, loader, layout, seed, now)),
            ...(espFiles === undefined ? {} : { espFiles }),
          };
    if (format !== 'raw') {
      const opts = format === 'vhdx' ? ['-o', 'subformat=dynamic'] : [];
      await runTool('qemu-img', ['convert', '-f', 'raw', '-O', format, ...opts, raw, `${partial}.tmp`]);
      await rename(`${partial}.tmp`, partial);
    }
    return {
      out: o.out,
      format,
      sizeBytes: layout.sizeBytes,
      slots: { A: a.manifest.version, B: b?.manifest.version ?? null },
      partitions: describeLayout(layout),
      boot,
      ...(boot === 'grub'
        ? { grubenv: { ORDER: 'A B', A_OK: '1', A_TRY: '0', B_OK: b === undefined ? '0' : '1', B_TRY: '0' } }
        : { uefi: uefiSummary! }),
      durationMs: Math.round(performance.now() - started),
    };
  });
}
