import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeLoadOption, LOAD_OPTION_ACTIVE } from '@abota/client';
import { describeWithTool, selfSignedCertificate, withTempDir } from '@abota/testkit';
import { expect, it } from 'vitest';
import {
  bootVariable,
  EFI_GLOBAL_VARIABLE,
  listVariables,
  secureBootVariables,
  setVariables,
  x509SignatureList,
} from './efi-vars.js';
import { buildUki, DEFAULT_UKI_STUB, parsePe, peSection, sbsignInPlace, UKI_SECTIONS } from './uki.js';

const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';

/** A Secure Boot test key (RSA 2048, self-signed), as the VM harness makes its db key. */
const makeKey = (dir: string, name: string) => selfSignedCertificate(dir, name, `/CN=abota test ${name}/`);

describeWithTool('objcopy', 'binutils', 'unified kernel images (objcopy on systemd-stub)', () => {
  it('puts exactly the given .osrel, .cmdline, .initrd and .linux after the stub, at non-overlapping addresses', async () => {
    await withTempDir(async (dir) => {
      // Any bytes: the stub is not run here, only the PE layout is checked.
      const kernel = randomBytes(300_001);
      await writeFile(join(dir, 'vmlinuz'), kernel);
      const initrd = randomBytes(123_457);
      const cmdline = 'abota.roothash=ab12 abota.slot=efi abota.hashoffset=layout console=ttyS0,115200';
      const out = join(dir, 'abota.efi');
      const built = await buildUki({
        stub: DEFAULT_UKI_STUB,
        kernel: join(dir, 'vmlinuz'),
        initrd,
        cmdline,
        osRelease: 'ID=abota\nVERSION_ID=1.0.0\n',
        scratch: dir,
        out,
      });
      const bytes = await readFile(out);
      const pe = parsePe(bytes, out);
      expect(pe).toEqual(built);
      expect(peSection(bytes, pe, '.cmdline')?.toString('latin1')).toBe(`${cmdline}\0`);
      expect(peSection(bytes, pe, '.osrel')?.toString('latin1')).toBe('ID=abota\nVERSION_ID=1.0.0\n');
      expect(peSection(bytes, pe, '.initrd')?.equals(initrd)).toBe(true);
      expect(peSection(bytes, pe, '.linux')?.equals(kernel)).toBe(true);
      // The stub's own sections come first and are unchanged; the added ones follow in order,
      // page-aligned, each after the end of the previous one, and the image covers them all.
      const stub = parsePe(await readFile(DEFAULT_UKI_STUB), 'stub');
      expect(pe.sections.slice(0, stub.sections.length)).toEqual(stub.sections);
      const added = pe.sections.slice(stub.sections.length);
      expect(added.map((s) => s.name)).toEqual([...UKI_SECTIONS]);
      let end = Math.max(...stub.sections.map((s) => s.virtualAddress + s.virtualSize));
      for (const s of added) {
        expect(s.virtualAddress % 4096).toBe(0);
        expect(s.virtualAddress).toBeGreaterThanOrEqual(end);
        end = s.virtualAddress + s.virtualSize;
      }
      expect(pe.sizeOfImage).toBeGreaterThanOrEqual(end);
      expect(pe.certificateTable.size).toBe(0);
    }, 'abota-uki-');
  });

  describeWithTool('sbsign', 'sbsigntool', 'Secure Boot signature', () => {
    it('sbverify accepts the signed UKI with its certificate and refuses another key and the unsigned one', async () => {
      await withTempDir(async (dir) => {
        const k = makeKey(dir, 'db');
        const other = makeKey(dir, 'other');
        await writeFile(join(dir, 'vmlinuz'), randomBytes(50_000));
        const out = join(dir, 'abota.efi');
        await buildUki({
          stub: DEFAULT_UKI_STUB,
          kernel: join(dir, 'vmlinuz'),
          initrd: randomBytes(1000),
          cmdline: 'x=1',
          osRelease: 'ID=abota\n',
          scratch: dir,
          out,
        });
        await copyFile(out, join(dir, 'unsigned.efi'));
        await sbsignInPlace(out, k);
        const signed = await readFile(out);
        expect(parsePe(signed, out).certificateTable.size).toBeGreaterThan(0);
        const verify = (cert: string, file: string) => spawnSync('sbverify', ['--cert', cert, file]).status;
        expect(verify(k.cert, out)).toBe(0);
        expect(verify(other.cert, out)).not.toBe(0);
        expect(verify(k.cert, join(dir, 'unsigned.efi'))).not.toBe(0);
        // The signed sections are still the same bytes.
        expect(peSection(signed, parsePe(signed, out), '.cmdline')?.toString('latin1')).toBe('x=1\0');
      }, 'abota-uki-sign-');
    });
  });
});

describeWithTool('qemu-system-x86_64', 'ovmf', 'OVMF variable store', () => {
  it('adds boot entries and Secure Boot keys to a copy of OVMF_VARS and reads them back; a second write replaces the first', async () => {
    await withTempDir(async (dir) => {
      const k = makeKey(dir, 'pk');
      const pem = await readFile(k.cert, 'utf8');
      const template = await readFile(OVMF_VARS);
      expect(listVariables(template)).toEqual([]);
      const option = Buffer.from(
        encodeLoadOption({
          attributes: LOAD_OPTION_ACTIVE,
          description: 'abota A',
          devicePath: [
            {
              kind: 'hd',
              partitionNumber: 2,
              startLba: 0x10800n,
              sizeLba: 0xc000n,
              partitionGuid: 'a7443ad3-abd0-4680-a88b-a1974fded4c1',
            },
            { kind: 'file', path: '\\EFI\\BOOT\\BOOTX64.EFI' },
          ],
          optionalData: new Uint8Array(0),
        }),
      );
      const now = new Date('2026-12-07T00:00:00Z');
      const store = setVariables(
        template,
        [bootVariable(1, option), ...secureBootVariables(pem, 'a1b2c3d4-0000-4000-8000-000000000001')],
        now,
      );
      expect(store.length).toBe(template.length);
      const vars = listVariables(store);
      expect(vars.map((v) => v.name)).toEqual([
        'Boot0001',
        'db',
        'KEK',
        'PK',
        'SecureBootEnable',
        'CustomMode',
      ]);
      expect(Buffer.from(vars[0]!.data).equals(option)).toBe(true);
      expect(vars[0]!.guid).toBe(EFI_GLOBAL_VARIABLE);
      expect(
        Buffer.from(vars.find((v) => v.name === 'PK')!.data).equals(
          x509SignatureList(pem, 'a1b2c3d4-0000-4000-8000-000000000001'),
        ),
      ).toBe(true);
      // The load option (@abota/client's encoder, checked against efibootmgr there): attributes,
      // path list length, UTF-16 description, HD(2,GPT,...) node, file path node, end node.
      expect(option.readUInt32LE(0)).toBe(1);
      expect(option.subarray(6, 6 + 16).toString('utf16le')).toBe('abota A\0');
      const dp = option.subarray(6 + 16);
      expect(option.readUInt16LE(4)).toBe(option.length - 6 - 16);
      expect([dp[0], dp[1], dp.readUInt16LE(2), dp.readUInt32LE(4)]).toEqual([4, 1, 42, 2]);
      expect(dp.subarray(24, 40).toString('hex')).toBe('d33a44a7d0ab8046a88ba1974fded4c1');
      expect(dp.subarray(dp.length - 4).toString('hex')).toBe('7fff0400');
      // Setting Boot0001 again marks the old record deleted: one live Boot0001, the new data.
      const again = setVariables(store, [bootVariable(1, Buffer.from('x'))], now);
      const live = listVariables(again).filter((v) => v.name === 'Boot0001');
      expect(live.map((v) => Buffer.from(v.data).toString())).toEqual(['x']);
    }, 'abota-vars-');
  });
});
