// efivarfs I/O on a directory standing in for it: the attribute header, one write, and the
// immutable flag made clear for a write or delete and set again afterwards (where the directory's
// filesystem supports it, as ext4 does).
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTempDir } from '@abota/testkit';
import { expect, it } from 'vitest';
import { makeImmutable, unlockTree } from '../../test/uefi-fixtures.js';
import { EFI_GLOBAL_GUID } from './efivar-formats.js';
import { EfiVarStore, type EfiVarStep, missingEfivarTools } from './efivarfs.js';

function immutable(path: string): boolean {
  return execFileSync('lsattr', ['-d', path], { encoding: 'utf8' }).split(/\s+/)[0]!.includes('i');
}

it('stores the 4-byte little-endian attributes before the data and reads them back', async () => {
  await withTempDir(async (root) => {
    const store = new EfiVarStore({ root });
    expect(await store.kind()).toBe('directory');
    await store.set('BootNext', EFI_GLOBAL_GUID, new Uint8Array([1, 0]));
    expect((await readFile(join(root, `BootNext-${EFI_GLOBAL_GUID}`))).toString('hex')).toBe('070000000100');
    expect(await store.get('BootNext', EFI_GLOBAL_GUID)).toEqual({
      attributes: 7,
      data: new Uint8Array([1, 0]),
    });
    expect(await store.get('BootOrder', EFI_GLOBAL_GUID)).toBeUndefined();
    await writeFile(join(root, `Bad-${EFI_GLOBAL_GUID}`), 'ab');
    await expect(store.get('Bad', EFI_GLOBAL_GUID)).rejects.toMatchObject({ code: 'ERR_EFIVAR_INVALID' });
    await expect(store.get('../x', EFI_GLOBAL_GUID)).rejects.toMatchObject({ code: 'ERR_EFIVAR_INVALID' });
    expect(await store.names(EFI_GLOBAL_GUID)).toEqual(expect.arrayContaining(['BootNext', 'Bad']));
  });
});

it('makes an immutable variable mutable for the write and the delete, and immutable again after a write', async () => {
  await withTempDir(async (root) => {
    try {
      const steps: EfiVarStep[] = [];
      const store = new EfiVarStore({ root, beforeStep: (s) => void steps.push(s) });
      await store.set('BootOrder', EFI_GLOBAL_GUID, new Uint8Array([0, 0]));
      const path = store.path('BootOrder', EFI_GLOBAL_GUID);
      if (!(await makeImmutable(path))) return; // filesystem without the flag: nothing to check
      steps.length = 0;
      await store.set('BootOrder', EFI_GLOBAL_GUID, new Uint8Array([1, 0, 0, 0]));
      expect(steps).toEqual(['make-mutable', 'write', 'rename', 'make-immutable']);
      expect(immutable(path)).toBe(true);
      expect((await store.get('BootOrder', EFI_GLOBAL_GUID))?.data).toEqual(new Uint8Array([1, 0, 0, 0]));
      steps.length = 0;
      await store.delete('BootOrder', EFI_GLOBAL_GUID);
      expect(steps).toEqual(['make-mutable', 'unlink']);
      expect(await readdir(root)).toEqual([]);
    } finally {
      await unlockTree(root);
    }
  });
});

it('a cut before the rename leaves the old value and only a dot file, which names() skips', async () => {
  await withTempDir(async (root) => {
    const store = new EfiVarStore({ root });
    await store.set('BootNext', EFI_GLOBAL_GUID, new Uint8Array([0, 0]));
    const cut = new EfiVarStore({
      root,
      beforeStep: (s) => {
        if (s === 'rename') throw new Error('power cut');
      },
    });
    await expect(cut.set('BootNext', EFI_GLOBAL_GUID, new Uint8Array([1, 0]))).rejects.toThrow('power cut');
    expect((await store.get('BootNext', EFI_GLOBAL_GUID))?.data).toEqual(new Uint8Array([0, 0]));
    expect(await store.names(EFI_GLOBAL_GUID)).toEqual(['BootNext']);
  });
});

it('says how to fix a missing efivarfs', async () => {
  await expect(new EfiVarStore({ root: '/nonexistent/efivars' }).kind()).rejects.toMatchObject({
    code: 'ERR_EFIVARS_IO',
    message: expect.stringContaining('mount -t efivarfs'),
  });
});

it('names the e2fsprogs programs its writes run that are not on the search path', async () => {
  await withTempDir(async (dir) => {
    const lsattr = execFileSync('sh', ['-c', 'command -v lsattr'], { encoding: 'utf8' }).trim();
    await mkdir(join(dir, 'bin'));
    expect(await missingEfivarTools(join(dir, 'bin'))).toEqual(['lsattr', 'chattr']);
    await symlink(lsattr, join(dir, 'bin', 'lsattr'));
    // A file that is not executable does not count.
    await writeFile(join(dir, 'bin', 'chattr'), '#!/bin/sh\n', { mode: 0o644 });
    expect(await missingEfivarTools(`/nonexistent::${join(dir, 'bin')}`)).toEqual(['chattr']);
    expect(await missingEfivarTools(process.env['PATH'])).toEqual([]);
  });
});
