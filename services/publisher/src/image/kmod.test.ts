import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTempDir } from '@abota/testkit';
import { describe, expect, it } from 'vitest';
import { ImageError } from './errors.js';
import { modinfo, resolveModules } from './kmod.js';

/** A minimal ELF64 little-endian object with a `.modinfo` section holding `info` (NUL-separated). */
function fakeModule(info: Record<string, string>): Buffer {
  const modinfoBytes = Buffer.from(
    `${Object.entries(info)
      .map(([k, v]) => `${k}=${v}`)
      .join('\0')}\0`,
    'latin1',
  );
  const names = Buffer.from('\0.modinfo\0.shstrtab\0', 'latin1');
  const dataOff = 64;
  const namesOff = dataOff + modinfoBytes.length;
  const shoff = Math.ceil((namesOff + names.length) / 8) * 8;
  const elf = Buffer.alloc(shoff + 3 * 64);
  elf.writeUInt32BE(0x7f454c46, 0);
  elf[4] = 2; // ELFCLASS64
  elf[5] = 1; // little endian
  elf.writeBigUInt64LE(BigInt(shoff), 0x28);
  elf.writeUInt16LE(64, 0x3a);
  elf.writeUInt16LE(3, 0x3c);
  elf.writeUInt16LE(2, 0x3e); // section names in section 2
  modinfoBytes.copy(elf, dataOff);
  names.copy(elf, namesOff);
  const section = (i: number, name: number, offset: number, size: number): void => {
    const at = shoff + i * 64;
    elf.writeUInt32LE(name, at);
    elf.writeBigUInt64LE(BigInt(offset), at + 0x18);
    elf.writeBigUInt64LE(BigInt(size), at + 0x20);
  };
  section(1, 1, dataOff, modinfoBytes.length);
  section(2, 10, namesOff, names.length);
  return elf;
}

async function modulesTree(dir: string, modules: Record<string, string>, builtin: string[]): Promise<string> {
  const root = join(dir, 'lib/modules/6.1.0-test');
  for (const [path, depends] of Object.entries(modules)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), fakeModule({ license: 'GPL', depends, name: path }));
  }
  await writeFile(join(root, 'modules.builtin'), builtin.map((b) => `${b}\n`).join(''));
  return dir;
}

describe('kernel modules of the initramfs', () => {
  it('modinfo reads the .modinfo section of an ELF64 module', () => {
    expect(modinfo(fakeModule({ depends: 'a,b-c', vermagic: '6.1 SMP' })).get('depends')).toBe('a,b-c');
    expect(() =>
      modinfo(Buffer.from('not an elf at all, not an elf at all, not an elf at all, 0123456789')),
    ).toThrow(ImageError);
  });

  it('dependencies load first, built-ins are skipped, - and _ are the same name', async () => {
    await withTempDir(async (dir) => {
      const root = await modulesTree(
        dir,
        {
          'kernel/drivers/md/dm-verity.ko': 'dm-bufio,dm-mod',
          'kernel/drivers/md/dm-bufio.ko': 'dm_mod',
          'kernel/drivers/md/dm-mod.ko': '',
          'kernel/fs/erofs/erofs.ko': 'crc32c',
        },
        ['kernel/crypto/crc32c.ko'],
      );
      const r = await resolveModules(root, ['dm-verity', 'erofs', 'dm_mod']);
      expect(r.version).toBe('6.1.0-test');
      expect(r.load).toEqual([
        'kernel/drivers/md/dm-mod.ko',
        'kernel/drivers/md/dm-bufio.ko',
        'kernel/drivers/md/dm-verity.ko',
        'kernel/fs/erofs/erofs.ko',
      ]);
    });
  });

  it('a kernel without dm-verity (or a dependency of it) is ERR_IMAGE_KERNEL_UNSUITABLE naming what is missing', async () => {
    await withTempDir(async (dir) => {
      const root = await modulesTree(dir, { 'kernel/drivers/md/dm-mod.ko': '' }, []);
      const err = await resolveModules(root, ['dm-mod', 'dm-verity']).catch((e: unknown) => e);
      expect((err as ImageError).code).toBe('ERR_IMAGE_KERNEL_UNSUITABLE');
      expect((err as ImageError).message).toMatch(
        /no module dm-verity .*dm-verity cannot be set up without it.*CONFIG_DM_VERITY/,
      );
      const dep = await modulesTree(join(dir, 'b'), { 'kernel/drivers/md/dm-verity.ko': 'dm-bufio' }, []);
      const err2 = await resolveModules(dep, ['dm-verity']).catch((e: unknown) => e);
      expect((err2 as ImageError).message).toContain('no module dm-bufio (needed by dm-verity)');
    });
  });
});
