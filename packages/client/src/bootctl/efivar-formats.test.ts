// The UEFI variable formats against bytes assembled by hand from the UEFI specification (§3.1.3
// EFI_LOAD_OPTION, §10.3.5 media device path nodes) and against efibootmgr/libefivar, which read
// and write the same variables in a directory named by EFIVARFS_PATH.
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeWithTool, withTempDir } from '@abota/testkit';
import { describe, expect, it } from 'vitest';
import { provisionFirmwareEfivars, slotOption, unlockTree } from '../../test/uefi-fixtures.js';
import {
  bootNumberOf,
  bootVariableName,
  decodeDevicePath,
  decodeGuid,
  decodeLoadOption,
  decodeUint16Array,
  decodeUtf16z,
  devicePathText,
  EFI_GLOBAL_GUID,
  encodeDevicePath,
  encodeGuid,
  encodeLoadOption,
  encodeUint16Array,
  encodeUtf16z,
} from './efivar-formats.js';
import { EfiVarStore } from './efivarfs.js';
import { emulateFirmwareBoot, UefiBootControl } from './uefi.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const utf16 = (s: string) => Buffer.from(s, 'utf16le').toString('hex');

describe('GUIDs, strings, UINT16 arrays', () => {
  it('EFI_GLOBAL_VARIABLE is stored mixed-endian (Data1-3 little-endian, Data4 as written)', () => {
    expect(hex(encodeGuid(EFI_GLOBAL_GUID))).toBe('61dfe48bca93d211aa0d00e098032b8c');
    expect(decodeGuid(encodeGuid(EFI_GLOBAL_GUID))).toBe(EFI_GLOBAL_GUID);
    expect(() => encodeGuid('8be4df61-93ca-11d2-aa0d')).toThrow(
      expect.objectContaining({ code: 'ERR_EFIVAR_INVALID' }),
    );
  });

  it('CHAR16 strings are UTF-16LE with a NUL; a missing NUL is refused unless optional', () => {
    expect(hex(encodeUtf16z('abota-a.efi'))).toBe(`${utf16('abota-a.efi')}0000`);
    expect(decodeUtf16z(encodeUtf16z('x+1.efi'))).toEqual({ text: 'x+1.efi', byteLength: 16 });
    expect(() => decodeUtf16z(Buffer.from('ab', 'utf16le'))).toThrow(/no NUL/);
    expect(decodeUtf16z(Buffer.from('ab', 'utf16le'), 0, 'x', true).text).toBe('ab');
  });

  it('BootOrder is little-endian UINT16s; Boot#### names are four upper-case hex digits', () => {
    expect(hex(encodeUint16Array([1, 0, 0x1a2b]))).toBe('010000002b1a');
    expect(decodeUint16Array(Buffer.from('010000002b1a', 'hex'))).toEqual([1, 0, 0x1a2b]);
    expect(() => decodeUint16Array(Buffer.from('010', 'hex'))).toThrow(/not a multiple of 2/);
    expect(bootVariableName(0xab)).toBe('Boot00AB');
    expect(bootNumberOf('Boot00AB')).toBe(0xab);
    expect(bootNumberOf('Boot00ab')).toBeUndefined(); // the spec's names are upper case
    expect(bootNumberOf('BootOrder')).toBeUndefined();
  });
});

describe('EFI_LOAD_OPTION', () => {
  // Slot A's option assembled field by field from UEFI 2.10 §3.1.3 and §10.3.5.1/§10.3.5.4.
  const file = '\\EFI\\BOOT\\BOOTX64.EFI';
  const hdNode =
    '0401' + // MEDIA_DEVICE_PATH, MEDIA_HARDDRIVE_DP
    '2a00' + // Length 42
    '02000000' + // PartitionNumber 2
    '0088000000000000' + // PartitionStart 0x8800
    '0000020000000000' + // PartitionSize 0x20000
    'c4a3d55b0e9f8b4ba0a17d5c3b2e1f01' + // Signature: 5bd5a3c4-9f0e-4b8b-a0a1-7d5c3b2e1f01
    '02' + // MBRType: GPT
    '02'; // SignatureType: GUID
  const fileNode = `0404${(4 + (file.length + 1) * 2).toString(16).padStart(2, '0')}00${utf16(file)}0000`;
  const endNode = '7fff0400';
  const pathHex = hdNode + fileNode + endNode;
  const expected =
    '01000000' + // LOAD_OPTION_ACTIVE
    (pathHex.length / 2).toString(16).padStart(2, '0') +
    '00' + // FilePathListLength (UINT16 LE)
    `${utf16('abota A')}0000` +
    pathHex;

  it('encodes slot A byte for byte as the specification lays it out', () => {
    expect(hex(encodeLoadOption(slotOption('A')))).toBe(expected);
  });

  it('decodes what it encodes, and re-encodes unknown nodes (PciRoot/Pci from OVMF) unchanged', () => {
    expect(decodeLoadOption(encodeLoadOption(slotOption('B')))).toEqual(slotOption('B'));
    // PciRoot(0x0)/Pci(0x1,0x1)/Ata(0,0,0) + HD + File, as firmware-made entries look.
    const pciRoot = '02010c00d041030a00000000'; // ACPI, _HID PNP0A03, _UID 0
    const pci = '010106000101'; // function 1, device 1
    const atapi = '0301080000000000'; // primary, master, LUN 0
    const raw = Buffer.from(pciRoot + pci + atapi + hdNode + fileNode + endNode, 'hex');
    const nodes = decodeDevicePath(raw);
    expect(nodes.map((n) => n.kind)).toEqual(['raw', 'raw', 'raw', 'hd', 'file']);
    expect(hex(encodeDevicePath(nodes))).toBe(raw.toString('hex'));
    expect(devicePathText(nodes.slice(3))).toBe(
      `HD(2,GPT,5bd5a3c4-9f0e-4b8b-a0a1-7d5c3b2e1f01,0x8800,0x20000)/File(${file})`,
    );
  });

  it('keeps optional data after the device path', () => {
    const o = { ...slotOption('A'), optionalData: new Uint8Array(Buffer.from('abota.slot=A', 'utf16le')) };
    const d = decodeLoadOption(encodeLoadOption(o));
    expect(Buffer.from(d.optionalData).toString('utf16le')).toBe('abota.slot=A');
  });

  it('refuses truncated options and device paths without an end node', () => {
    const bytes = encodeLoadOption(slotOption('A'));
    expect(() => decodeLoadOption(bytes.subarray(0, 30))).toThrow(
      expect.objectContaining({ code: 'ERR_EFIVAR_INVALID' }),
    );
    expect(() => decodeDevicePath(Buffer.from(hdNode, 'hex'))).toThrow(/End Entire/);
    expect(() => decodeDevicePath(Buffer.from('04010100', 'hex'))).toThrow(/length 1/);
  });
});

function efibootmgr(tool: string, root: string, args: string[]): string {
  const r = spawnSync(tool, args, { encoding: 'utf8', env: { ...process.env, EFIVARFS_PATH: `${root}/` } });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

describeWithTool(
  'efibootmgr',
  'efibootmgr',
  'uefi backend and efibootmgr (libefivar on EFIVARFS_PATH)',
  (tool) => {
    async function withEfivars(fn: (root: string) => Promise<void>): Promise<void> {
      await withTempDir(async (dir) => {
        try {
          await fn(await provisionFirmwareEfivars(join(dir, 'efivars')));
        } finally {
          await unlockTree(dir);
        }
      });
    }

    it('efibootmgr -v prints the entries abota encodes', async () => {
      await withEfivars(async (root) => {
        expect(efibootmgr(tool, root, ['-v'])).toBe(
          [
            'BootOrder: 0000,0002',
            'Boot0000* abota A\tHD(2,GPT,5bd5a3c4-9f0e-4b8b-a0a1-7d5c3b2e1f01,0x8800,0x20000)/File(\\EFI\\BOOT\\BOOTX64.EFI)',
            'Boot0001* abota B\tHD(3,GPT,5bd5a3c4-9f0e-4b8b-a0a1-7d5c3b2e1f02,0x28800,0x20000)/File(\\EFI\\BOOT\\BOOTX64.EFI)',
            'Boot0002* EFI Internal Shell\tFile(\\EFI\\tools\\shell.efi)',
            '',
          ].join('\n'),
        );
      });
    });

    it('the backend reads what efibootmgr writes (BootNext, BootOrder, inactive entry, deleted entry)', async () => {
      await withEfivars(async (root) => {
        const control = new UefiBootControl({ mode: 'firmware', efivars: root, bootedSlot: 'A' });
        efibootmgr(tool, root, ['-o', '0001,0000,0002']);
        expect(await control.getPrimarySlot()).toBe('B');
        expect(await control.getSlotState('B')).toEqual({ bootable: true, good: true });
        efibootmgr(tool, root, ['-n', '0000']);
        expect(await control.getPrimarySlot()).toBe('A');
        efibootmgr(tool, root, ['-N']);
        efibootmgr(tool, root, ['-b', '0001', '-A']); // inactive: the firmware skips it in BootOrder
        expect(await control.getPrimarySlot()).toBe('A');
        expect(await control.getSlotState('B')).toEqual({ bootable: false, good: false });
        efibootmgr(tool, root, ['-b', '0001', '-B']);
        await expect(control.setTryOnce('B')).rejects.toMatchObject({
          code: 'ERR_BOOTCTL_ENTRY_MISSING',
          message: expect.stringContaining('"abota B"'),
        });
      });
    });

    it('efibootmgr reads what the backend writes, and the variables stay immutable', async () => {
      await withEfivars(async (root) => {
        const control = new UefiBootControl({ mode: 'firmware', efivars: root, bootedSlot: 'A' });
        await control.setTryOnce('B');
        expect(efibootmgr(tool, root, [])).toMatch(/^BootNext: 0001\nBootOrder: 0000,0002\n/);
        // The bytes efibootmgr -n writes for the same BootNext: attributes NV+BS+RT, UINT16 1.
        const store = new EfiVarStore({ root });
        expect(hex(await readFile(store.path('BootNext', EFI_GLOBAL_GUID)))).toBe('070000000100');
        expect(await emulateFirmwareBoot(store)).toBe('B');
        await control.markGood('B');
        expect(efibootmgr(tool, root, [])).toMatch(/^BootCurrent: 0001\nBootOrder: 0001,0000,0002\n/);
        const lsattr = spawnSync('lsattr', ['-d', store.path('BootOrder', EFI_GLOBAL_GUID)], {
          encoding: 'utf8',
        });
        if (lsattr.status === 0) expect(lsattr.stdout.split(/\s+/)[0]).toContain('i');
      });
    });
  },
);
