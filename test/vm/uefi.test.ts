// GRUBless boot (issue 18), firmware-only path: each slot's boot image is a FAT image in
// BootEFIA/B holding a unified kernel image (systemd-stub + kernel + initramfs + the signed
// command line with the slot's root hash), signed with a test key the harness makes; the
// disk's OVMF varstore (`abota image disk --boot uefi --ovmf-vars --secure-boot-cert`) has
// that key enrolled as PK/KEK/db and Boot0001 (A), Boot0002 (B), BootOrder 0001,0002.
// OVMF runs with Secure Boot enforced (secboot build, SMM). The minimal guest of boot.test.ts.
// Here: what the firmware refuses. That signed UKIs boot, BootNext trials and BootOrder commits
// are uefi-updates.test.ts's (firmware path) and uefi-sdboot.test.ts's (systemd-boot), through
// the agent.
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  buildUki,
  DEFAULT_UKI_STUB,
  parsePe,
  peSection,
  sbsignInPlace,
  UKI_PATH_IN_BOOT_IMAGE,
} from '@abota/publisher';
import { describeWithTool, makeTempDir, selfSignedCertificate } from '@abota/testkit';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { abota, minimalRelease, TEST_SIZES, type TestRelease, testKeys, vmKernel } from './fixture.js';
import { Vm } from './qemu.js';

const BOOT_TIMEOUT_MS = 300_000;
/** TEST_SIZES with BootEFIA/B large enough for the ~20 MiB FAT image of a UKI and its hash area. */
const UEFI_TEST_SIZES = TEST_SIZES.map((v, i, all) => (all[i - 1] === '--size-boot-efi' ? '24M' : v));

/** mtools on a FAT partition of the disk image (no mount). */
function mtool(tool: 'mcopy', args: string[]): void {
  const r = spawnSync(tool, args, { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')}: ${r.stderr.toString()}`);
}

describeWithTool(
  'qemu-system-x86_64',
  'qemu-system-x86',
  'GRUBless boot: signed UKIs under OVMF with Secure Boot',
  () => {
    let dir: string;
    let disk: string;
    let vars: string;
    let v1: TestRelease;
    let v2: TestRelease;
    let sb: { key: string; cert: string };
    let other: { key: string; cert: string };
    let partitions: { name: string; offsetBytes: number }[];
    let vm: Vm | undefined;
    const offsetOf = (name: string): number => partitions.find((p) => p.name === name)!.offsetBytes;

    beforeAll(async () => {
      dir = await makeTempDir('abota-vm-uefi-');
      // The product's Secure Boot db key (enrolled as PK, KEK and db) and a stranger's.
      sb = selfSignedCertificate(dir, 'db', '/CN=abota VM test db/');
      other = selfSignedCertificate(dir, 'other', '/CN=abota VM test other/');
      const keys = await testKeys(dir);
      const kernel = await vmKernel();
      const uki = ['--boot-format', 'uki', '--sb-key', sb.key, '--sb-cert', sb.cert];
      v1 = await minimalRelease(dir, keys, kernel, '1.0.0', 'v1', uki);
      v2 = await minimalRelease(dir, keys, kernel, '2.0.0', 'v2', uki);
      disk = join(dir, 'disk.raw');
      vars = join(dir, 'OVMF_VARS.fd');
      const summary = await abota([
        'image',
        'disk',
        '--boot',
        'uefi',
        '--release',
        v1.dir,
        '--release-b',
        v2.dir,
        '--ovmf-vars',
        vars,
        '--secure-boot-cert',
        sb.cert,
        '--out',
        disk,
        ...UEFI_TEST_SIZES,
      ]);
      partitions = summary['partitions'] as typeof partitions;
      expect(summary['uefi']).toMatchObject({ bootOrder: ['Boot0001', 'Boot0002'], secureBoot: true });
    });

    afterEach(async () => {
      await vm?.stop();
      vm = undefined;
    });

    afterAll(async () => {
      if (process.env['ABOTA_VM_KEEP'] !== '1' && dir !== undefined)
        await rm(dir, { recursive: true, force: true });
    });

    it('a UKI whose command line was edited (root hash changed), unsigned or signed with another key, is refused by the firmware, which goes on to Boot0002', async () => {
      // Take slot A's signed UKI apart and assemble it again with B's root hash on its command line.
      const image = `${disk}@@${offsetOf('BootEFIA')}`;
      const signedPath = join(dir, 'signed.efi');
      mtool('mcopy', ['-i', image, `::${UKI_PATH_IN_BOOT_IMAGE}`, signedPath]);
      const signed = await readFile(signedPath);
      const pe = parsePe(signed, signedPath);
      expect(pe.certificateTable.size).toBeGreaterThan(0);
      const cmdline = peSection(signed, pe, '.cmdline')!.toString('latin1').replace(/\0$/, '');
      expect(cmdline).toContain(`abota.roothash=${v1.rootHash}`);
      const part = async (name: string): Promise<string> => {
        const path = join(dir, `section${name}`);
        await writeFile(path, peSection(signed, pe, name)!);
        return path;
      };
      // B's root hash on A's command line, re-assembled: left unsigned, and signed with another key.
      const reassemble = async (out: string): Promise<string> => {
        await buildUki({
          stub: DEFAULT_UKI_STUB,
          kernel: await part('.linux'),
          initrd: peSection(signed, pe, '.initrd')!,
          cmdline: cmdline.replace(v1.rootHash, v2.rootHash),
          osRelease: peSection(signed, pe, '.osrel')!.toString('latin1'),
          scratch: dir,
          out,
        });
        return out;
      };
      const edited = await reassemble(join(dir, 'edited.efi'));
      const otherKey = await reassemble(join(dir, 'edited-other-key.efi'));
      await sbsignInPlace(otherKey, other);

      for (const [name, file] of [
        ['unsigned', edited],
        ['other-key', otherKey],
      ] as const) {
        mtool('mcopy', ['-o', '-i', image, file, `::${UKI_PATH_IN_BOOT_IMAGE}`]);
        await mkdir(join(dir, `vm-${name}`));
        vm = await Vm.start({ disk, dir: join(dir, `vm-${name}`), vars, secureBoot: true });
        await vm.waitFor(/BdsDxe: failed to load Boot0001 "abota A".*Access Denied/, BOOT_TIMEOUT_MS);
        // The firmware goes on to the next entry (that the signed B boots through verity is
        // uefi-updates.test.ts's, with the agent; not waited for here to keep test:vm short).
        await vm.waitFor(/BdsDxe: starting Boot0002 "abota B"/, BOOT_TIMEOUT_MS);
        expect(vm.output).not.toContain('BdsDxe: starting Boot0001');
        await vm.stop();
        vm = undefined;
      }
      // The original signed UKI back: A boots again.
      mtool('mcopy', ['-o', '-i', image, signedPath, `::${UKI_PATH_IN_BOOT_IMAGE}`]);
    });
  },
);
