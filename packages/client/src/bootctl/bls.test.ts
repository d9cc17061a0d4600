// systemd-boot 252's boot counting grammar and entry choice (src/boot/efi/boot.c:
// config_entry_parse_tries, config_entry_bump_counters, config_entry_compare,
// config_default_entry_select), as the uefi backend's systemd-boot mode relies on them.
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTempDir } from '@abota/testkit';
import { describe, expect, it } from 'vitest';
import {
  blsPatternMatches,
  emulateSystemdBoot,
  formatBlsName,
  listBlsEntries,
  nextBlsName,
  parseBlsName,
  readLoaderString,
  strverscmp,
  writeLoaderString,
} from './bls.js';
import { EfiVarStore } from './efivarfs.js';

describe('the +LEFT-DONE counter in type #2 file names', () => {
  it.each([
    ['abota-b.efi', { stem: 'abota-b' }],
    ['abota-b+3.efi', { stem: 'abota-b', triesLeft: 3, triesDone: 0 }],
    ['abota-b+2-1.efi', { stem: 'abota-b', triesLeft: 2, triesDone: 1 }],
    ['abota-b+0-3.efi', { stem: 'abota-b', triesLeft: 0, triesDone: 3 }],
    ['a+1+2.efi', { stem: 'a+1', triesLeft: 2, triesDone: 0 }], // the last '+' starts the counter
    ['abota-b+.efi', { stem: 'abota-b+' }], // no digit: no counter
    ['abota-b+1-.efi', { stem: 'abota-b+1-' }],
    ['abota-b-1.efi', { stem: 'abota-b-1' }],
    ['abota-b+x.efi', { stem: 'abota-b+x' }],
  ])('%s → %j', (file, parsed) => {
    expect(parseBlsName(file)).toEqual(parsed);
  });

  it("follows boot.c's series: foobar+3 → +2-1 → +1-2 → +0-3, and +4-0 → … → +0-4", () => {
    const series = (start: string, n: number) => {
      const out = [start];
      for (let i = 0; i < n; i++) out.push(nextBlsName(out.at(-1)!)!);
      return out;
    };
    expect(series('foobar+3.efi', 3)).toEqual([
      'foobar+3.efi',
      'foobar+2-1.efi',
      'foobar+1-2.efi',
      'foobar+0-3.efi',
    ]);
    expect(series('foobar+4-0.efi', 4).at(-1)).toBe('foobar+0-4.efi');
    expect(nextBlsName('foobar.efi')).toBeUndefined();
    expect(parseBlsName('foobar.conf')).toBeUndefined();
    expect(formatBlsName({ stem: 'x', triesLeft: 3 })).toBe('x+3.efi');
  });

  it('orders ids like strverscmp and matches patterns case-insensitively with * ? [..]', () => {
    expect(strverscmp('abota-b', 'abota-a')).toBe(1);
    expect(strverscmp('v10', 'v9')).toBe(1);
    expect(strverscmp('v1~rc1', 'v1')).toBe(-1);
    expect(blsPatternMatches('abota-b+3.efi', 'ABOTA-B+3.EFI')).toBe(true);
    expect(blsPatternMatches('abota-b+3.efi', 'abota-b*')).toBe(true);
    expect(blsPatternMatches('abota-b+0-3.efi', 'abota-b+[1-9]*')).toBe(false);
    expect(blsPatternMatches('abota-b.efi', 'abota-?.efi')).toBe(true);
  });
});

describe('systemd-boot model', () => {
  async function esp(dir: string, files: string[]): Promise<{ store: EfiVarStore; espPath: string }> {
    const espPath = join(dir, 'esp');
    await mkdir(join(espPath, 'EFI', 'Linux'), { recursive: true });
    await mkdir(join(dir, 'efivars'));
    for (const f of files) await writeFile(join(espPath, 'EFI', 'Linux', f), f);
    return { store: new EfiVarStore({ root: join(dir, 'efivars') }), espPath };
  }

  it('lists entries with no tries left last, then by id descending', async () => {
    await withTempDir(async (dir) => {
      const { espPath } = await esp(dir, [
        'abota-b+0-1.efi',
        'abota-a.efi',
        'other.efi',
        'auto-x.efi',
        'note.txt',
      ]);
      expect((await listBlsEntries(espPath)).map((e) => e.file)).toEqual([
        'other.efi',
        'abota-a.efi',
        'abota-b+0-1.efi',
      ]);
    });
  });

  it('boots the OneShot (and forgets it), renames a counted entry and exports what bootctl reads', async () => {
    await withTempDir(async (dir) => {
      const { store, espPath } = await esp(dir, ['abota-a.efi', 'abota-b+1.efi']);
      await writeLoaderString(store, 'LoaderEntryDefault', 'abota-a.efi');
      await writeLoaderString(store, 'LoaderEntryOneShot', 'abota-b+1.efi');
      expect(await emulateSystemdBoot(store, espPath)).toBe('abota-b+0-1.efi');
      expect(await readLoaderString(store, 'LoaderEntryOneShot')).toBeUndefined();
      expect(await readLoaderString(store, 'LoaderEntrySelected')).toBe('abota-b+1.efi');
      expect(await readLoaderString(store, 'LoaderBootCountPath')).toBe('\\EFI\\Linux\\abota-b+0-1.efi');
      expect((await readdir(join(espPath, 'EFI', 'Linux'))).sort()).toEqual([
        'abota-a.efi',
        'abota-b+0-1.efi',
      ]);
      // Next boot: the default again.
      expect(await emulateSystemdBoot(store, espPath)).toBe('abota-a.efi');
    });
  });

  it('without a matching default picks the first listed entry, never one with no tries left first', async () => {
    await withTempDir(async (dir) => {
      const { store, espPath } = await esp(dir, ['abota-a.efi', 'abota-b+0-3.efi']);
      await writeLoaderString(store, 'LoaderEntryDefault', 'gone.efi');
      expect(await emulateSystemdBoot(store, espPath)).toBe('abota-a.efi');
    });
  });
});
