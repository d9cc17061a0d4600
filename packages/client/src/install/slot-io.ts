// Positional I/O on slot devices (block devices or, in simulation, regular files). The one rule
// enforced here: a device of the booted slot is never opened for writing.
import { constants } from 'node:fs';
import { type FileHandle, open, realpath } from 'node:fs/promises';
import type { SlotConfig } from '../config.js';
import { ClientError } from '../errors.js';

import type { SlotName } from '../bootctl/bootcontrol.js';

export { otherSlot, type SlotName } from '../bootctl/bootcontrol.js';

async function canonicalPath(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch {
    return path;
  }
}

/** Every device/file path of a slot (data and hash areas of each image). */
export function slotPaths(slot: SlotConfig): string[] {
  const out: string[] = [];
  for (const img of [slot.rootfs, slot.boot]) {
    if (img === undefined) continue;
    out.push(img.path);
    if (img.hashPath !== undefined) out.push(img.hashPath);
  }
  return out;
}

/**
 * Open `path` (of slot `targetSlot`) for positional writing. Refuses when the target is the
 * booted slot, or when the path resolves to any device of the booted slot (a config that maps
 * both slots onto one device would otherwise overwrite the running system).
 */
export async function openSlotForWrite(
  path: string,
  targetSlot: SlotName,
  bootedSlot: SlotName,
  bootedSlotConfig: SlotConfig,
): Promise<FileHandle> {
  if (targetSlot === bootedSlot) {
    throw new ClientError(
      'ERR_INSTALL_ACTIVE_SLOT',
      `refusing to write slot ${targetSlot}: it is the booted slot (only the inactive slot is ever written)`,
    );
  }
  const real = await canonicalPath(path);
  for (const active of slotPaths(bootedSlotConfig)) {
    if ((await canonicalPath(active)) === real) {
      throw new ClientError(
        'ERR_INSTALL_ACTIVE_SLOT',
        `refusing to write ${path}: it is also ${active} of the booted slot ${bootedSlot}; fix the slot config`,
      );
    }
  }
  try {
    return await open(path, constants.O_RDWR | constants.O_CREAT, 0o600);
  } catch (e) {
    throw new ClientError(
      'ERR_INSTALL_SLOT_IO',
      `cannot open ${path} of slot ${targetSlot} for writing: ${(e as Error).message}`,
      {
        cause: e,
      },
    );
  }
}

export interface DeviceInfo {
  isBlockDevice: boolean;
  sizeBytes: number;
}

/** Size of a regular file or a block device (whose stat size is 0, so seek to the end). */
export async function deviceInfo(fh: FileHandle): Promise<DeviceInfo> {
  const st = await fh.stat();
  if (!st.isBlockDevice()) return { isBlockDevice: false, sizeBytes: st.size };
  const probe = Buffer.alloc(1);
  // Block devices report size 0 in stat; binary-search the last readable byte (≤ 2^50 bytes).
  let lo = 0;
  let hi = 2 ** 50;
  while (lo < hi) {
    const mid = Math.floor((lo + hi + 1) / 2);
    const { bytesRead } = await fh.read(probe, 0, 1, mid - 1);
    if (bytesRead === 1) lo = mid;
    else hi = mid - 1;
  }
  return { isBlockDevice: true, sizeBytes: lo };
}

export async function writeFully(
  fh: FileHandle,
  data: Uint8Array,
  position: number,
  what: string,
): Promise<void> {
  let done = 0;
  while (done < data.byteLength) {
    let n: number;
    try {
      ({ bytesWritten: n } = await fh.write(data, done, data.byteLength - done, position + done));
    } catch (e) {
      throw new ClientError(
        'ERR_INSTALL_SLOT_IO',
        `${what}: write at byte ${position + done} failed: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
    if (n === 0) throw new ClientError('ERR_INSTALL_SLOT_IO', `${what}: no space at byte ${position + done}`);
    done += n;
  }
}

/** Read exactly `length` bytes at `position`; returns fewer only at end of file. */
export async function readAt(
  fh: FileHandle,
  buf: Uint8Array,
  length: number,
  position: number,
): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}
