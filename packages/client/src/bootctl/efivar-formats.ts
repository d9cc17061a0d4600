// The binary formats of the UEFI variables the `uefi` backend reads and writes, written by hand
// (UEFI 2.10 §3.1.3 "Load Options", §3.3 "Globally Defined Variables", §10.3 "Device Path Nodes";
// systemd's Boot Loader Interface for the Loader* variables). Byte-compatible with efibootmgr /
// libefivar: the conformance tests compare with `efibootmgr -v`.
import { ClientError } from '../errors.js';

/** EFI_GLOBAL_VARIABLE: Boot####, BootOrder, BootNext, BootCurrent. */
export const EFI_GLOBAL_GUID = '8be4df61-93ca-11d2-aa0d-00e098032b8c';
/** systemd's Boot Loader Interface vendor GUID (LoaderEntryDefault, LoaderEntryOneShot, …). */
export const SYSTEMD_LOADER_GUID = '4a67b082-0a4c-41cf-b6c7-440b29bb8c4f';
/** abota's own vendor GUID: the firmware-mode trial counter (AbotaTrial). */
export const ABOTA_VENDOR_GUID = 'fbcc9e78-5f7d-4022-90bf-422225f9bf32';

export const EFI_VARIABLE_NON_VOLATILE = 0x1;
export const EFI_VARIABLE_BOOTSERVICE_ACCESS = 0x2;
export const EFI_VARIABLE_RUNTIME_ACCESS = 0x4;
/** NV+BS+RT: what efibootmgr and bootctl write for Boot####, BootOrder, BootNext, Loader*. */
export const EFI_VARIABLE_NV_BS_RT =
  EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS;

/** EFI_LOAD_OPTION.Attributes bits (UEFI §3.1.3). */
export const LOAD_OPTION_ACTIVE = 0x1;
export const LOAD_OPTION_FORCE_RECONNECT = 0x2;
export const LOAD_OPTION_HIDDEN = 0x8;

function invalid(what: string, detail: string): ClientError {
  return new ClientError('ERR_EFIVAR_INVALID', `${what}: ${detail}`);
}

const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** EFI_GUID in memory: Data1 (u32), Data2, Data3 (u16) little-endian, Data4 (8 bytes) as written. */
export function encodeGuid(guid: string): Uint8Array {
  const g = guid.toLowerCase();
  if (!GUID_RE.test(g))
    throw invalid('GUID', `${JSON.stringify(guid)} is not xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`);
  const hex = g.replaceAll('-', '');
  const b = Buffer.from(hex, 'hex');
  const out = Buffer.alloc(16);
  out.writeUInt32LE(b.readUInt32BE(0), 0);
  out.writeUInt16LE(b.readUInt16BE(4), 4);
  out.writeUInt16LE(b.readUInt16BE(6), 6);
  b.copy(out, 8, 8, 16);
  return new Uint8Array(out);
}

export function decodeGuid(bytes: Uint8Array): string {
  if (bytes.length !== 16) throw invalid('GUID', `${bytes.length} bytes, expected 16`);
  const b = Buffer.from(bytes);
  const h = (n: number, width: number) => n.toString(16).padStart(width, '0');
  const d4 = b.subarray(8).toString('hex');
  return `${h(b.readUInt32LE(0), 8)}-${h(b.readUInt16LE(4), 4)}-${h(b.readUInt16LE(6), 4)}-${d4.slice(0, 4)}-${d4.slice(4)}`;
}

/** UCS-2/UTF-16LE with a NUL terminator (CHAR16 strings of the spec and of the Loader* variables). */
export function encodeUtf16z(text: string): Uint8Array {
  if (text.includes('\0')) throw invalid('CHAR16 string', 'contains NUL');
  return new Uint8Array(Buffer.from(`${text}\0`, 'utf16le'));
}

/**
 * A CHAR16 string starting at `offset`: up to its NUL (which must be there unless `optionalNul`,
 * as some firmware writes the Loader* variables without one). Returns the text and the byte length
 * including the NUL.
 */
export function decodeUtf16z(
  bytes: Uint8Array,
  offset = 0,
  what = 'CHAR16 string',
  optionalNul = false,
): { text: string; byteLength: number } {
  for (let i = offset; i + 1 < bytes.length; i += 2) {
    if (bytes[i] === 0 && bytes[i + 1] === 0) {
      return { text: Buffer.from(bytes.subarray(offset, i)).toString('utf16le'), byteLength: i + 2 - offset };
    }
  }
  if (optionalNul && (bytes.length - offset) % 2 === 0) {
    return {
      text: Buffer.from(bytes.subarray(offset)).toString('utf16le'),
      byteLength: bytes.length - offset,
    };
  }
  throw invalid(what, 'no NUL terminator');
}

/** BootOrder: an array of UINT16 (little-endian) Boot#### numbers. */
export function encodeUint16Array(values: readonly number[]): Uint8Array {
  const out = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw invalid('UINT16 array', `${v} is not a UINT16`);
    out.writeUInt16LE(v, i * 2);
  });
  return new Uint8Array(out);
}

export function decodeUint16Array(bytes: Uint8Array, what = 'UINT16 array'): number[] {
  if (bytes.length % 2 !== 0) throw invalid(what, `${bytes.length} bytes, not a multiple of 2`);
  const b = Buffer.from(bytes);
  const out: number[] = [];
  for (let i = 0; i < b.length; i += 2) out.push(b.readUInt16LE(i));
  return out;
}

/** BootNext / BootCurrent: exactly one UINT16. */
export function decodeUint16(bytes: Uint8Array, what: string): number {
  if (bytes.length !== 2) throw invalid(what, `${bytes.length} bytes, expected 2 (one UINT16)`);
  return Buffer.from(bytes).readUInt16LE(0);
}

/** "Boot0001" ↔ 1 (four upper-case hex digits, as the spec names them). */
export function bootVariableName(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw invalid('Boot####', `${n} is not a UINT16`);
  return `Boot${n.toString(16).toUpperCase().padStart(4, '0')}`;
}

export function bootNumberOf(name: string): number | undefined {
  const m = /^Boot([0-9A-F]{4})$/.exec(name);
  return m?.[1] === undefined ? undefined : Number.parseInt(m[1], 16);
}

// ---- Device paths (UEFI §10.3) ----

/** Hard-drive media node (type 4, subtype 1) for a GPT partition. */
export interface HardDriveNode {
  kind: 'hd';
  /** 1-based partition number. */
  partitionNumber: number;
  /** Start and size in logical blocks (LBA). */
  startLba: bigint;
  sizeLba: bigint;
  /** The partition's unique GUID (GPT "PARTUUID"), lower case. */
  partitionGuid: string;
}

/** File path media node (type 4, subtype 4): a path like \EFI\Linux\abota-a.efi. */
export interface FilePathNode {
  kind: 'file';
  path: string;
}

/** Any other node, kept as raw bytes so a decoded option re-encodes to the same bytes. */
export interface RawNode {
  kind: 'raw';
  type: number;
  subType: number;
  data: Uint8Array;
}

export type DevicePathNode = HardDriveNode | FilePathNode | RawNode;

const MEDIA = 0x04;
const MEDIA_HARDDRIVE = 0x01;
const MEDIA_FILEPATH = 0x04;
const END = 0x7f;
const END_ENTIRE = 0xff;
const END_INSTANCE = 0x01;
const HD_LENGTH = 42;
const MBR_TYPE_GPT = 0x02;
const SIGNATURE_TYPE_GUID = 0x02;

function node(type: number, subType: number, data: Uint8Array): Buffer {
  const length = 4 + data.length;
  if (length > 0xffff) throw invalid('device path node', `${length} bytes is longer than a UINT16 length`);
  const out = Buffer.alloc(length);
  out.writeUInt8(type, 0);
  out.writeUInt8(subType, 1);
  out.writeUInt16LE(length, 2);
  out.set(data, 4);
  return out;
}

function encodeNode(n: DevicePathNode): Buffer {
  switch (n.kind) {
    case 'hd': {
      const d = Buffer.alloc(HD_LENGTH - 4);
      d.writeUInt32LE(n.partitionNumber, 0);
      d.writeBigUInt64LE(n.startLba, 4);
      d.writeBigUInt64LE(n.sizeLba, 12);
      d.set(encodeGuid(n.partitionGuid), 20);
      d.writeUInt8(MBR_TYPE_GPT, 36);
      d.writeUInt8(SIGNATURE_TYPE_GUID, 37);
      return node(MEDIA, MEDIA_HARDDRIVE, d);
    }
    case 'file':
      if (!n.path.startsWith('\\')) {
        throw invalid(
          'file path node',
          `${JSON.stringify(n.path)} must be absolute with backslashes (\\EFI\\...)`,
        );
      }
      return node(MEDIA, MEDIA_FILEPATH, encodeUtf16z(n.path));
    case 'raw':
      return node(n.type, n.subType, n.data);
  }
}

/** One device path instance: the nodes followed by End Entire Device Path. */
export function encodeDevicePath(nodes: readonly DevicePathNode[]): Uint8Array {
  const parts = nodes.map(encodeNode);
  parts.push(node(END, END_ENTIRE, new Uint8Array(0)));
  return new Uint8Array(Buffer.concat(parts));
}

/** The nodes of the first instance of a device path list (End Entire or End Instance stops it). */
export function decodeDevicePath(bytes: Uint8Array): DevicePathNode[] {
  const b = Buffer.from(bytes);
  const nodes: DevicePathNode[] = [];
  let off = 0;
  while (off + 4 <= b.length) {
    const type = b.readUInt8(off);
    const subType = b.readUInt8(off + 1);
    const length = b.readUInt16LE(off + 2);
    if (length < 4 || off + length > b.length) {
      throw invalid(
        'device path',
        `node at byte ${off} has length ${length}; ${b.length - off} bytes remain`,
      );
    }
    const data = new Uint8Array(b.subarray(off + 4, off + length));
    off += length;
    if (type === END && (subType === END_ENTIRE || subType === END_INSTANCE)) return nodes;
    if (
      type === MEDIA &&
      subType === MEDIA_HARDDRIVE &&
      length === HD_LENGTH &&
      data[36] === MBR_TYPE_GPT &&
      data[37] === SIGNATURE_TYPE_GUID
    ) {
      const d = Buffer.from(data);
      nodes.push({
        kind: 'hd',
        partitionNumber: d.readUInt32LE(0),
        startLba: d.readBigUInt64LE(4),
        sizeLba: d.readBigUInt64LE(12),
        partitionGuid: decodeGuid(data.subarray(20, 36)),
      });
    } else if (type === MEDIA && subType === MEDIA_FILEPATH) {
      nodes.push({ kind: 'file', path: decodeUtf16z(data, 0, 'file path node', true).text });
    } else {
      nodes.push({ kind: 'raw', type, subType, data });
    }
  }
  throw invalid('device path', 'no End Entire Device Path node');
}

function nodeText(n: DevicePathNode): string {
  switch (n.kind) {
    case 'hd':
      return `HD(${n.partitionNumber},GPT,${n.partitionGuid},0x${n.startLba.toString(16)},0x${n.sizeLba.toString(16)})`;
    case 'file':
      return `File(${n.path})`;
    case 'raw':
      return `Path(${n.type},${n.subType},${Buffer.from(n.data).toString('hex')})`;
  }
}

/** The device path as efibootmgr -v prints it, for messages (HD(…)/File(…)). */
export function devicePathText(nodes: readonly DevicePathNode[]): string {
  return nodes.map(nodeText).join('/');
}

// ---- EFI_LOAD_OPTION (UEFI §3.1.3) ----

export interface LoadOption {
  /** LOAD_OPTION_* bits; an entry the firmware may boot has LOAD_OPTION_ACTIVE. */
  attributes: number;
  description: string;
  /** The first device path instance (what efibootmgr writes: one instance). */
  devicePath: DevicePathNode[];
  /** OptionalData (passed to the loaded image as LoadOptions); empty when none. */
  optionalData: Uint8Array;
}

/**
 * EFI_LOAD_OPTION: UINT32 Attributes, UINT16 FilePathListLength, CHAR16 Description[] (NUL
 * terminated), EFI_DEVICE_PATH FilePathList[FilePathListLength bytes], UINT8 OptionalData[].
 */
export function encodeLoadOption(o: LoadOption): Uint8Array {
  const path = encodeDevicePath(o.devicePath);
  if (path.length > 0xffff) throw invalid('EFI_LOAD_OPTION', 'device path longer than 65535 bytes');
  const head = Buffer.alloc(6);
  head.writeUInt32LE(o.attributes >>> 0, 0);
  head.writeUInt16LE(path.length, 4);
  return new Uint8Array(Buffer.concat([head, encodeUtf16z(o.description), path, o.optionalData]));
}

export function decodeLoadOption(bytes: Uint8Array, what = 'EFI_LOAD_OPTION'): LoadOption {
  if (bytes.length < 6 + 2) throw invalid(what, `${bytes.length} bytes is too short`);
  const b = Buffer.from(bytes);
  const attributes = b.readUInt32LE(0);
  const pathLength = b.readUInt16LE(4);
  const { text: description, byteLength } = decodeUtf16z(bytes, 6, `${what} description`);
  const pathStart = 6 + byteLength;
  if (pathStart + pathLength > b.length) {
    throw invalid(
      what,
      `FilePathListLength ${pathLength} runs past the end (${b.length - pathStart} bytes left)`,
    );
  }
  return {
    attributes,
    description,
    devicePath: decodeDevicePath(bytes.subarray(pathStart, pathStart + pathLength)),
    optionalData: new Uint8Array(b.subarray(pathStart + pathLength)),
  };
}

/** The last File() node of a load option, if any (`\EFI\Linux\abota-a.efi`). */
export function loadOptionFilePath(o: LoadOption): string | undefined {
  const files = o.devicePath.filter((n): n is FilePathNode => n.kind === 'file');
  return files.at(-1)?.path;
}
