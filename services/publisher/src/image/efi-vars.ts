// UEFI variables written at image time into a copy of OVMF's variable store (OVMF_VARS*.fd),
// for VMs that boot without GRUB (`abota image disk --boot uefi --ovmf-vars FILE`): one boot
// entry per slot (Boot####, an EFI_LOAD_OPTION whose device path is the slot's BootEFI
// partition and the UKI's path in it), BootOrder, and for Secure Boot a test certificate
// enrolled as PK, KEK and db (with SecureBootEnable set), as Debian's OVMF_VARS_4M.snakeoil.fd
// holds its snakeoil key.
//
// The store is edk2's authenticated variable format: a firmware-volume header, a
// VARIABLE_STORE_HEADER (gEfiAuthenticatedVariableGuid), then variables, each an
// AUTHENTICATED_VARIABLE_HEADER (StartId 0x55AA, State, Attributes, MonotonicCount, TimeStamp,
// PubKeyIndex, NameSize, DataSize, VendorGuid), its UTF-16 name and data, 4-byte aligned. A
// variable the store already holds is marked deleted (State VAR_ADDED & ~VAR_DELETED) before
// the new value is appended — what the firmware's own variable driver does. Authenticated
// variables (PK, KEK, db) are stored as their EFI_SIGNATURE_LIST: the store holds values,
// the signed update payload is only what SetVariable checks at run time.
import { X509Certificate } from 'node:crypto';
import { bootVariableName, encodeUint16Array } from '@abota/client';
import { ImageError } from './errors.js';

export const EFI_GLOBAL_VARIABLE = '8be4df61-93ca-11d2-aa0d-00e098032b8c';
export const EFI_IMAGE_SECURITY_DATABASE = 'd719b2cb-3d3a-4596-a3bc-dad00e67656f';
const EFI_CERT_X509 = 'a5c059a1-94e4-4aa7-87b5-ab155c2bf072';
const SECURE_BOOT_ENABLE_DISABLE = 'f0a30bc7-af08-4556-99c4-001009c93a44';
const CUSTOM_MODE = 'c076ec0c-7028-4399-a072-71ee5c448b9f';
const AUTHENTICATED_VARIABLE_STORE = 'aaf32c78-947b-439a-a180-2e144ec37792';

export const EFI_VARIABLE_NON_VOLATILE = 0x1;
export const EFI_VARIABLE_BOOTSERVICE_ACCESS = 0x2;
export const EFI_VARIABLE_RUNTIME_ACCESS = 0x4;
export const EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS = 0x20;
const NV_BS_RT = EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS;
const NV_BS = EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS;

const VAR_ADDED = 0x3f;
const VAR_DELETED = 0x02;

/** A GUID's 16 bytes in EFI order (first three fields little-endian), as GPT and EFI store them. */
export function guidBytes(guid: string): Buffer {
  const hex = guid.replace(/-/g, '');
  if (!/^[0-9a-f]{32}$/i.test(hex)) throw new ImageError('ERR_IMAGE_USAGE', `not a GUID: ${guid}`);
  const b = Buffer.from(hex, 'hex');
  return Buffer.concat([
    Buffer.from(b.subarray(0, 4)).reverse(),
    Buffer.from(b.subarray(4, 6)).reverse(),
    Buffer.from(b.subarray(6, 8)).reverse(),
    b.subarray(8),
  ]);
}

export interface EfiVariable {
  name: string;
  guid: string;
  attributes: number;
  data: Uint8Array;
}

const utf16z = (s: string): Buffer => Buffer.from(`${s}\0`, 'utf16le');

/** EFI_TIME of `date` (UTC), for time-based authenticated variables. */
function efiTime(date: Date): Buffer {
  const t = Buffer.alloc(16);
  t.writeUInt16LE(date.getUTCFullYear(), 0);
  t[2] = date.getUTCMonth() + 1;
  t[3] = date.getUTCDate();
  t[4] = date.getUTCHours();
  t[5] = date.getUTCMinutes();
  t[6] = date.getUTCSeconds();
  return t;
}

/** Offset of the first variable and the end of the store area, after checking the headers. */
function storeBounds(store: Buffer): { first: number; end: number } {
  if (store.length < 0x100 || store.toString('latin1', 40, 44) !== '_FVH') {
    throw new ImageError(
      'ERR_IMAGE_USAGE',
      'the OVMF variable store template has no firmware-volume header (_FVH)',
    );
  }
  const fvHeader = store.readUInt16LE(48);
  if (!store.subarray(fvHeader, fvHeader + 16).equals(guidBytes(AUTHENTICATED_VARIABLE_STORE))) {
    throw new ImageError(
      'ERR_IMAGE_USAGE',
      'the OVMF variable store template is not an authenticated variable store (OVMF_VARS*.fd of a Secure Boot capable OVMF)',
    );
  }
  return { first: fvHeader + 28, end: fvHeader + store.readUInt32LE(fvHeader + 16) };
}

/** Names (with GUID) and data of the live variables of a store (for tests and `--json`). */
export function listVariables(store: Buffer): (EfiVariable & { offset: number })[] {
  const { first, end } = storeBounds(store);
  const out: (EfiVariable & { offset: number })[] = [];
  for (let p = first; p + 60 <= end && store.readUInt16LE(p) === 0x55aa; ) {
    const nameSize = store.readUInt32LE(p + 36);
    const dataSize = store.readUInt32LE(p + 40);
    const guidRaw = store.subarray(p + 44, p + 60);
    const name = store.toString('utf16le', p + 60, p + 60 + nameSize).replace(/\0+$/, '');
    if (store[p + 2] === VAR_ADDED) {
      const g = Buffer.concat([
        Buffer.from(guidRaw.subarray(0, 4)).reverse(),
        Buffer.from(guidRaw.subarray(4, 6)).reverse(),
        Buffer.from(guidRaw.subarray(6, 8)).reverse(),
        guidRaw.subarray(8),
      ]).toString('hex');
      out.push({
        offset: p,
        name,
        guid: `${g.slice(0, 8)}-${g.slice(8, 12)}-${g.slice(12, 16)}-${g.slice(16, 20)}-${g.slice(20)}`,
        attributes: store.readUInt32LE(p + 4),
        data: store.subarray(p + 60 + nameSize, p + 60 + nameSize + dataSize),
      });
    }
    p = (p + 60 + nameSize + dataSize + 3) & ~3;
  }
  return out;
}

/** A copy of `template` with `vars` set (replacing variables of the same name and GUID). */
export function setVariables(template: Uint8Array, vars: readonly EfiVariable[], now: Date): Buffer {
  const store = Buffer.from(template);
  const { first, end } = storeBounds(store);
  const live = listVariables(store);
  let p = first;
  while (p + 60 <= end && store.readUInt16LE(p) === 0x55aa) {
    p = (p + 60 + store.readUInt32LE(p + 36) + store.readUInt32LE(p + 40) + 3) & ~3;
  }
  for (const v of vars) {
    const old = live.find((l) => l.name === v.name && l.guid === v.guid.toLowerCase());
    if (old !== undefined) store[old.offset + 2] = VAR_ADDED & ~VAR_DELETED;
    const name = utf16z(v.name);
    const header = Buffer.alloc(60);
    header.writeUInt16LE(0x55aa, 0);
    header[2] = VAR_ADDED;
    header.writeUInt32LE(v.attributes, 4);
    if (v.attributes & EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS) efiTime(now).copy(header, 16);
    header.writeUInt32LE(name.length, 36);
    header.writeUInt32LE(v.data.byteLength, 40);
    guidBytes(v.guid).copy(header, 44);
    const record = Buffer.concat([header, name, v.data]);
    if (p + record.length > end) {
      throw new ImageError(
        'ERR_IMAGE_TOO_SMALL',
        'the OVMF variable store template has no room left for the boot variables',
      );
    }
    record.copy(store, p);
    p = (p + record.length + 3) & ~3;
  }
  return store;
}

/** EFI_SIGNATURE_LIST with one X.509 certificate (what cert-to-efi-sig-list writes). */
export function x509SignatureList(certPem: string, owner: string): Buffer {
  const der = new X509Certificate(certPem).raw;
  const head = Buffer.alloc(28);
  guidBytes(EFI_CERT_X509).copy(head, 0);
  head.writeUInt32LE(28 + 16 + der.length, 16);
  head.writeUInt32LE(0, 20);
  head.writeUInt32LE(16 + der.length, 24);
  return Buffer.concat([head, guidBytes(owner), der]);
}

/** PK, KEK and db set to `certPem` and Secure Boot switched on (user mode, not custom mode). */
export function secureBootVariables(certPem: string, owner: string): EfiVariable[] {
  const esl = x509SignatureList(certPem, owner);
  const auth = NV_BS_RT | EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS;
  return [
    { name: 'db', guid: EFI_IMAGE_SECURITY_DATABASE, attributes: auth, data: esl },
    { name: 'KEK', guid: EFI_GLOBAL_VARIABLE, attributes: auth, data: esl },
    { name: 'PK', guid: EFI_GLOBAL_VARIABLE, attributes: auth, data: esl },
    { name: 'SecureBootEnable', guid: SECURE_BOOT_ENABLE_DISABLE, attributes: NV_BS, data: Buffer.from([1]) },
    { name: 'CustomMode', guid: CUSTOM_MODE, attributes: NV_BS, data: Buffer.from([0]) },
  ];
}

/** Boot#### (NV+BS+RT) holding `option` (an EFI_LOAD_OPTION: @abota/client's encodeLoadOption). */
export function bootVariable(n: number, option: Uint8Array): EfiVariable {
  return { name: bootVariableName(n), guid: EFI_GLOBAL_VARIABLE, attributes: NV_BS_RT, data: option };
}

export function bootOrderVariable(entries: readonly number[]): EfiVariable {
  return {
    name: 'BootOrder',
    guid: EFI_GLOBAL_VARIABLE,
    attributes: NV_BS_RT,
    data: encodeUint16Array(entries),
  };
}
