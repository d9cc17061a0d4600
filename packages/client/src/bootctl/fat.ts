// Read-only lookup of one file in a FAT12/16/32 filesystem image, for the uefi backend's
// systemd-boot mode: it finds the UKI inside a slot's boot image (a FAT image, docs/image.md
// "Unified kernel images") and copies it out. Layout from Microsoft's "FAT32 File System
// Specification" 1.03: the BPB (§3), the FAT type by cluster count (§3.5), directory entries
// (§6) and long-name entries (§7). Every read goes through the caller's reader, which checks
// the bytes (the installer's reader verifies each block against the signed dm-verity tree).
import { ClientError } from '../errors.js';
import type { VerifiedImageReader } from './bootcontrol.js';

/** A file's bytes as runs of consecutive clusters, in file order. */
export interface FatFile {
  sizeBytes: number;
  extents: { offsetBytes: number; lengthBytes: number }[];
}

interface Volume {
  bytesPerCluster: number;
  fatOffsetBytes: number;
  fatBits: 12 | 16 | 32;
  clusterCount: number;
  /** FAT12/16: the fixed root directory region; FAT32: undefined (root is a cluster chain). */
  rootDir?: { offsetBytes: number; lengthBytes: number };
  rootCluster: number;
  dataOffsetBytes: number;
}

/** A FAT larger than this is refused (a 2 GiB FAT32 volume with 4 KiB clusters needs 2 MiB). */
const MAX_FAT_BYTES = 16 * 1024 * 1024;
const ATTR_DIRECTORY = 0x10;
const ATTR_VOLUME_ID = 0x08;
const ATTR_LONG_NAME = 0x0f;

function invalid(where: string, what: string): ClientError {
  return new ClientError('ERR_BOOTCTL_BOOT_IMAGE_INVALID', `${where}: ${what}`);
}

function parseVolume(bs: Uint8Array, sizeBytes: number, where: string): Volume {
  const v = new DataView(bs.buffer, bs.byteOffset, bs.byteLength);
  const bytesPerSector = v.getUint16(11, true);
  const sectorsPerCluster = bs[13]!;
  const reserved = v.getUint16(14, true);
  const fats = bs[16]!;
  const rootEntries = v.getUint16(17, true);
  const totalSectors = v.getUint16(19, true) || v.getUint32(32, true);
  const fatSectors = v.getUint16(22, true) || v.getUint32(36, true);
  const sane =
    v.getUint16(510, true) === 0xaa55 &&
    [512, 1024, 2048, 4096].includes(bytesPerSector) &&
    sectorsPerCluster > 0 &&
    (sectorsPerCluster & (sectorsPerCluster - 1)) === 0 &&
    reserved > 0 &&
    fats > 0 &&
    fatSectors > 0 &&
    totalSectors * bytesPerSector <= sizeBytes;
  if (!sane) throw invalid(where, 'not a FAT filesystem (no valid boot sector / BPB)');
  const rootDirSectors = Math.ceil((rootEntries * 32) / bytesPerSector);
  const firstDataSector = reserved + fats * fatSectors + rootDirSectors;
  const clusterCount = Math.floor((totalSectors - firstDataSector) / sectorsPerCluster);
  const fatBits = clusterCount < 4085 ? 12 : clusterCount < 65525 ? 16 : 32;
  if (fatSectors * bytesPerSector > MAX_FAT_BYTES)
    throw invalid(where, `FAT of ${fatSectors * bytesPerSector} bytes exceeds ${MAX_FAT_BYTES}`);
  return {
    bytesPerCluster: bytesPerSector * sectorsPerCluster,
    fatOffsetBytes: reserved * bytesPerSector,
    fatBits,
    clusterCount,
    ...(fatBits === 32
      ? {}
      : {
          rootDir: {
            offsetBytes: (reserved + fats * fatSectors) * bytesPerSector,
            lengthBytes: rootDirSectors * bytesPerSector,
          },
        }),
    rootCluster: fatBits === 32 ? v.getUint32(44, true) : 0,
    dataOffsetBytes: firstDataSector * bytesPerSector,
  };
}

function nextCluster(fat: Uint8Array, bits: 12 | 16 | 32, n: number): number {
  if (bits === 16) return fat[2 * n]! | (fat[2 * n + 1]! << 8);
  if (bits === 32)
    return (
      (fat[4 * n]! | (fat[4 * n + 1]! << 8) | (fat[4 * n + 2]! << 16) | (fat[4 * n + 3]! << 24)) & 0x0fffffff
    );
  const at = n + (n >> 1);
  const word = fat[at]! | (fat[at + 1]! << 8);
  return n & 1 ? word >> 4 : word & 0xfff;
}

/** The cluster chain from `first` as byte extents, `limitBytes` long at most. */
function chainExtents(
  vol: Volume,
  fat: Uint8Array,
  first: number,
  limitBytes: number,
  where: string,
): FatFile['extents'] {
  const end = vol.fatBits === 12 ? 0xff8 : vol.fatBits === 16 ? 0xfff8 : 0x0ffffff8;
  const extents: FatFile['extents'] = [];
  let cluster = first;
  let total = 0;
  while (total < limitBytes) {
    if (cluster < 2 || cluster >= vol.clusterCount + 2)
      throw invalid(where, `cluster chain reaches cluster ${cluster} (valid: 2..${vol.clusterCount + 1})`);
    const offsetBytes = vol.dataOffsetBytes + (cluster - 2) * vol.bytesPerCluster;
    const lengthBytes = Math.min(vol.bytesPerCluster, limitBytes - total);
    const last = extents.at(-1);
    if (last !== undefined && last.offsetBytes + last.lengthBytes === offsetBytes)
      last.lengthBytes += lengthBytes;
    else extents.push({ offsetBytes, lengthBytes });
    total += lengthBytes;
    if (total >= limitBytes) break;
    cluster = nextCluster(fat, vol.fatBits, cluster);
    if (cluster >= end) break;
  }
  return extents;
}

interface DirEntry {
  name: string;
  directory: boolean;
  firstCluster: number;
  sizeBytes: number;
}

/** The entries of one directory's bytes: long names where present, else the 8.3 name. */
function parseDirectory(bytes: Uint8Array, fat32: boolean): DirEntry[] {
  const out: DirEntry[] = [];
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let longName: string[] = [];
  for (let at = 0; at + 32 <= bytes.byteLength; at += 32) {
    const first = bytes[at]!;
    if (first === 0x00) break;
    const attr = bytes[at + 11]!;
    if (first === 0xe5) {
      longName = [];
      continue;
    }
    if ((attr & 0x3f) === ATTR_LONG_NAME) {
      let part = '';
      for (const [from, count] of [
        [1, 5],
        [14, 6],
        [28, 2],
      ] as const) {
        for (let i = 0; i < count; i++) {
          const c = v.getUint16(at + from + 2 * i, true);
          if (c === 0 || c === 0xffff) break;
          part += String.fromCharCode(c);
        }
      }
      if (first & 0x40) longName = [];
      longName.unshift(part);
      continue;
    }
    if (attr & ATTR_VOLUME_ID) {
      longName = [];
      continue;
    }
    const base = String.fromCharCode(...bytes.subarray(at, at + 8)).trimEnd();
    const ext = String.fromCharCode(...bytes.subarray(at + 8, at + 11)).trimEnd();
    const shortName = (first === 0x05 ? '\u00e5' + base.slice(1) : base) + (ext ? `.${ext}` : '');
    const high = fat32 ? v.getUint16(at + 20, true) : 0;
    out.push({
      name: longName.length > 0 ? longName.join('') : shortName,
      directory: (attr & ATTR_DIRECTORY) !== 0,
      firstCluster: (high << 16) | v.getUint16(at + 26, true),
      sizeBytes: v.getUint32(at + 28, true),
    });
    longName = [];
  }
  return out;
}

async function readExtents(reader: VerifiedImageReader, extents: FatFile['extents']): Promise<Uint8Array> {
  const parts = [];
  for (const e of extents) parts.push(await reader.read(e.offsetBytes, e.lengthBytes));
  return Buffer.concat(parts);
}

/** Directories are read whole; this bounds one (16 K entries). */
const MAX_DIRECTORY_BYTES = 512 * 1024;

/**
 * Find `path` (`/EFI/BOOT/BOOTX64.EFI`; names compared case-insensitively, as FAT does) and
 * return where its bytes are. Throws ERR_BOOTCTL_BOOT_IMAGE_INVALID when the image is not FAT,
 * the path is missing or not a file, or a chain leaves the volume. `where` names the image in
 * messages.
 */
export async function findFatFile(
  reader: VerifiedImageReader,
  path: string,
  where: string,
): Promise<FatFile> {
  if (reader.sizeBytes < 512) throw invalid(where, `${reader.sizeBytes} bytes is too small for FAT`);
  const vol = parseVolume(await reader.read(0, 512), reader.sizeBytes, where);
  const fatBytes = Math.ceil((vol.clusterCount + 2) * (vol.fatBits / 8));
  const fat = await reader.read(vol.fatOffsetBytes, fatBytes);
  let dir =
    vol.rootDir !== undefined
      ? await reader.read(vol.rootDir.offsetBytes, vol.rootDir.lengthBytes)
      : await readExtents(reader, chainExtents(vol, fat, vol.rootCluster, MAX_DIRECTORY_BYTES, where));
  const names = path.split('/').filter((p) => p !== '');
  for (const [i, name] of names.entries()) {
    const entry = parseDirectory(dir, vol.fatBits === 32).find(
      (e) => e.name.toUpperCase() === name.toUpperCase(),
    );
    const sofar = `/${names.slice(0, i + 1).join('/')}`;
    if (entry === undefined) throw invalid(where, `no ${sofar} in the FAT filesystem`);
    const isLast = i === names.length - 1;
    if (entry.directory === isLast)
      throw invalid(
        where,
        `${sofar} is ${entry.directory ? 'a directory' : 'a file'}, expected ${isLast ? 'a file' : 'a directory'}`,
      );
    if (isLast) {
      const extents =
        entry.sizeBytes === 0 ? [] : chainExtents(vol, fat, entry.firstCluster, entry.sizeBytes, where);
      const found = extents.reduce((n, e) => n + e.lengthBytes, 0);
      if (found !== entry.sizeBytes)
        throw invalid(where, `${sofar} is ${entry.sizeBytes} bytes but its cluster chain holds ${found}`);
      return { sizeBytes: entry.sizeBytes, extents };
    }
    dir = await readExtents(reader, chainExtents(vol, fat, entry.firstCluster, MAX_DIRECTORY_BYTES, where));
  }
  throw invalid(where, `path ${path} names no file`);
}
