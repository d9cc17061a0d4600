// The FAT reader against images made by mkfs.vfat and mtools (dosfstools, mtools): FAT12, FAT16
// and FAT32, long and short names, nested directories, a file fragmented across the volume.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeWithTool, withTempDir } from '@abota/testkit';
import { expect, it } from 'vitest';
import { makeFatImage } from '../../test/uefi-fixtures.js';
import { findFatFile } from './fat.js';

function fileReader(bytes: Uint8Array) {
  return {
    sizeBytes: bytes.byteLength,
    read: async (position: number, length: number) => {
      if (position + length > bytes.byteLength) throw new Error(`read past the end at ${position}+${length}`);
      return bytes.subarray(position, position + length);
    },
  };
}

async function contentOf(image: Uint8Array, path: string): Promise<Buffer> {
  const reader = fileReader(image);
  const f = await findFatFile(reader, path, 'test image');
  return Buffer.concat(await Promise.all(f.extents.map((e) => reader.read(e.offsetBytes, e.lengthBytes))));
}

describeWithTool('mcopy', 'mtools', 'findFatFile', () => {
  it.each([
    [12, 2],
    [16, 24],
    [32, 40],
  ] as const)(
    'FAT%i: finds files by short and long names in nested directories',
    async (bits, mib) => {
      await withTempDir(async (dir) => {
        const uki = randomBytes(300_000);
        const other = randomBytes(5000);
        const image = join(dir, 'fat.img');
        await makeFatImage(
          image,
          mib * 1024 * 1024,
          {
            '/EFI/BOOT/BOOTX64.EFI': uki,
            '/EFI/Linux/a long file name.efi': other,
            '/empty': '',
          },
          bits,
        );
        const bytes = await readFile(image);
        expect((await contentOf(bytes, '/EFI/BOOT/BOOTX64.EFI')).equals(uki)).toBe(true);
        expect((await contentOf(bytes, '/efi/boot/bootx64.efi')).equals(uki)).toBe(true);
        expect((await contentOf(bytes, '/EFI/Linux/A Long File Name.efi')).equals(other)).toBe(true);
        expect((await contentOf(bytes, '/empty')).byteLength).toBe(0);
      });
    },
    60_000,
  );

  it('follows a cluster chain that is fragmented across the volume', async () => {
    await withTempDir(async (dir) => {
      const image = join(dir, 'fat.img');
      const big = randomBytes(600_000);
      // Fill, free every other file, then write one that has to take the holes.
      const files: Record<string, Uint8Array> = {};
      for (let i = 0; i < 8; i++) files[`/f${i}`] = randomBytes(100_000);
      await makeFatImage(image, 2 * 1024 * 1024, files, 12);
      const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' };
      for (const i of [1, 3, 5, 7]) execFileSync('mdel', ['-i', image, `::/f${i}`], { env });
      await writeFile(join(dir, 'big.bin'), big);
      execFileSync('mcopy', ['-i', image, join(dir, 'big.bin'), '::/big.bin'], { env });
      const bytes = await readFile(image);
      const found = await findFatFile(fileReader(bytes), '/big.bin', 'test image');
      expect(found.extents.length).toBeGreaterThan(1);
      expect((await contentOf(bytes, '/big.bin')).equals(big)).toBe(true);
      expect((await contentOf(bytes, '/f2')).equals(files['/f2']!)).toBe(true);
    });
  }, 60_000);

  it('refuses what is not FAT, a missing path and a directory where a file is expected', async () => {
    await withTempDir(async (dir) => {
      const image = join(dir, 'fat.img');
      await makeFatImage(image, 2 * 1024 * 1024, { '/EFI/BOOT/x': 'x' });
      const bytes = await readFile(image);
      const find = (b: Uint8Array, p: string) => findFatFile(fileReader(b), p, 'slot B boot image');
      await expect(find(new Uint8Array(1 << 20), '/EFI/BOOT/BOOTX64.EFI')).rejects.toMatchObject({
        code: 'ERR_BOOTCTL_BOOT_IMAGE_INVALID',
        message: expect.stringMatching(/^slot B boot image: not a FAT filesystem/),
      });
      await expect(find(bytes, '/EFI/BOOT/BOOTX64.EFI')).rejects.toMatchObject({
        code: 'ERR_BOOTCTL_BOOT_IMAGE_INVALID',
        message: 'slot B boot image: no /EFI/BOOT/BOOTX64.EFI in the FAT filesystem',
      });
      await expect(find(bytes, '/EFI/BOOT')).rejects.toMatchObject({
        message: 'slot B boot image: /EFI/BOOT is a directory, expected a file',
      });
    });
  }, 60_000);
});
