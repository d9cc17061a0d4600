// `abota image disk`: the factory disk of an A/B VM (docs/image.md "Disk layout"). GPT by
// sgdisk with GUIDs derived from the inputs, partition contents written at their offsets (no
// loop device, no mount): ESP (./esp.ts), slot A (and B) from releases (./release-slot.ts),
// Data provisioned with the caller's files and the overlay upper dirs, Log empty; then
// qemu-img converts to qcow2 or VHDX if asked. Output written to a temp name, renamed at the end.
import { copyFile, cp, mkdir, open, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MANIFEST_JSON, MANIFEST_JWS } from '../release/release-dir.js';
import { buildEsp, assertGrubEfi } from './esp.js';
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
  type PartitionSizes,
} from './layout.js';
import { writeOutput } from './output-file.js';
import { assertFits, type LoadedRelease, loadRelease, writeSlotImage } from './release-slot.js';
import { sourceDateEpoch, stableUuid } from './reproducible.js';
import { requireTools, runTool, type Tool } from './tools.js';

export const DISK_FORMATS = ['raw', 'qcow2', 'vhdx'] as const;
export type DiskFormat = (typeof DISK_FORMATS)[number];

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
  now?: Date;
  env?: NodeJS.ProcessEnv;
}

export interface DiskSummary {
  out: string;
  format: DiskFormat;
  sizeBytes: number;
  slots: { A: string; B: string | null };
  partitions: (DiskLayout['partitions'][number] & { hashOffsetBytes?: number })[];
  grubenv: Record<string, string>;
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
    /^(Boot|RootFS)[AB]$/.test(p.name) ? { ...p, hashOffsetBytes: hashOffsetBytes(p.sizeBytes) } : { ...p },
  );
}

async function writeSlot(
  disk: Awaited<ReturnType<typeof open>>,
  layout: DiskLayout,
  slot: 'A' | 'B',
  r: LoadedRelease,
): Promise<void> {
  await writeSlotImage(disk, partition(layout, `RootFS${slot}`), r.manifest.images.rootfs, r.blobs.rootfs);
  await writeSlotImage(disk, partition(layout, `Boot${slot}`), r.manifest.images.boot!, r.blobs.boot);
}

export async function buildDisk(o: DiskOptions): Promise<DiskSummary> {
  const started = performance.now();
  const epoch = sourceDateEpoch(o.env);
  const format = o.format ?? 'raw';
  const layout = computeLayout({ ...EFLOW_SIZES, ...o.sizes }, o.diskSizeBytes);
  await requireTools(format === 'raw' ? TOOLS : [...TOOLS, 'qemu-img']);
  await assertGrubEfi();
  const now = o.now ?? new Date();
  const a = await loadRelease(o.release, now);
  const b = o.releaseB === undefined ? undefined : await loadRelease(o.releaseB, now);
  for (const r of [a, b]) {
    if (r === undefined) continue;
    assertFits(r.manifest.images.rootfs, partition(layout, 'RootFSA'), '--size-rootfs');
    assertFits(r.manifest.images.boot!, partition(layout, 'BootA'), '--size-boot');
  }
  const seed = `abota-disk:${a.manifest.product}:${a.manifest.version}:${b?.manifest.version ?? '-'}:${epoch}`;
  return writeOutput(o.out, async (partial, scratch) => {
    const raw = format === 'raw' ? partial : join(scratch, 'disk.raw');
    const disk = await open(raw, 'w+');
    try {
      await disk.truncate(layout.sizeBytes);
      await disk.close();
      await writeGpt(raw, layout, seed);
      const reopened = await open(raw, 'r+');
      try {
        const esp = join(scratch, 'esp.img');
        const cfg = grubCfg({ layout, console: o.console ?? 'console=ttyS0,115200' });
        await buildEsp({
          out: esp,
          sizeBytes: partition(layout, 'ESP').sizeBytes,
          grubCfg: cfg,
          slotBProvisioned: b !== undefined,
          epoch,
          scratch,
        });
        await copyInto(reopened, esp, partition(layout, 'ESP').offsetBytes);
        await writeSlot(reopened, layout, 'A', a);
        if (b !== undefined) await writeSlot(reopened, layout, 'B', b);
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
      grubenv: { ORDER: 'A B', A_OK: '1', A_TRY: '0', B_OK: b === undefined ? '0' : '1', B_TRY: '0' },
      durationMs: Math.round(performance.now() - started),
    };
  });
}
