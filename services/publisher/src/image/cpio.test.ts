import { spawnSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeWithTool, withTempDir } from '@abota/testkit';
import { expect, it } from 'vitest';
import { type CpioEntry, cpioNewc } from './cpio.js';

const ENTRIES: CpioEntry[] = [
  { path: 'bin', type: 'dir' },
  { path: 'dev', type: 'dir' },
  { path: 'dev/console', type: 'chardev', major: 5, minor: 1, mode: 0o600 },
  { path: 'bin/tool', type: 'file', data: Buffer.from('#!/bin/sh\necho 12345\n'), mode: 0o755 },
  { path: 'bin/link', type: 'symlink', target: 'tool' },
  { path: 'empty', type: 'file', data: new Uint8Array(0), mode: 0o644 },
];

describeWithTool('cpio', 'cpio', 'initramfs cpio newc writer', () => {
  it('GNU cpio reads the archive back: names, types, modes, owner root, one mtime, contents', async () => {
    await withTempDir(async (dir) => {
      const archive = join(dir, 'a.cpio');
      await writeFile(archive, cpioNewc(ENTRIES, 1_700_000_000));
      const list = spawnSync('cpio', ['-itv', '--numeric-uid-gid', '-F', archive], {
        encoding: 'utf8',
        env: { ...process.env, TZ: 'UTC' },
      });
      expect(list.status, list.stderr).toBe(0);
      const lines = list.stdout.trim().split('\n');
      expect(lines.map((l) => l.split(/\s+/)[0])).toEqual([
        'drwxr-xr-x',
        'drwxr-xr-x',
        'crw-------',
        '-rwxr-xr-x',
        'lrwxrwxrwx',
        '-rw-r--r--',
      ]);
      expect(lines.every((l) => / 0\s+0 /.test(l) && l.includes('Nov 14  2023'))).toBe(true);
      expect(lines[4]).toMatch(/bin\/link -> tool$/);
      const out = join(dir, 'x');
      const extract = spawnSync(
        'cpio',
        ['-id', '--no-absolute-filenames', '-D', out, '-F', archive, 'bin/*'],
        { encoding: 'utf8' },
      );
      expect(extract.status, extract.stderr).toBe(0);
      expect(await readFile(join(out, 'bin/tool'), 'utf8')).toBe('#!/bin/sh\necho 12345\n');
    });
  });

  it('is a pure function of its entries and mtime (reproducible), padded to 512-byte records', () => {
    const a = cpioNewc(ENTRIES, 7);
    expect(a.equals(cpioNewc(ENTRIES, 7))).toBe(true);
    expect(a.equals(cpioNewc(ENTRIES, 8))).toBe(false);
    expect(a.length % 512).toBe(0);
  });
});
