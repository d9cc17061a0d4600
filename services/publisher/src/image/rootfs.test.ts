import { spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdir, readdir, readFile, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeWithTool, withTempDir } from '@abota/testkit';
import { expect, it } from 'vitest';
import { ImageError } from './errors.js';
import { buildRootfs, ROOTFS_TYPES } from './rootfs.js';

/** A small root tree; `order` reverses file creation (directory order) and `mtime` stamps every file. */
async function makeTree(dir: string, order: 'forward' | 'reverse', mtime: number): Promise<void> {
  await mkdir(join(dir, 'sbin'), { recursive: true });
  await mkdir(join(dir, 'etc/conf.d'), { recursive: true });
  await mkdir(join(dir, 'bin'), { recursive: true });
  await copyFile('/bin/busybox', join(dir, 'bin/busybox'));
  await symlink('/bin/busybox', join(dir, 'sbin/init'));
  const names = Array.from({ length: 40 }, (_, i) => `file-${i}`);
  for (const name of order === 'forward' ? names : [...names].reverse()) {
    await writeFile(join(dir, 'etc/conf.d', name), `${name}\n`.repeat(50));
  }
  await writeFile(join(dir, 'etc/secret'), 'x');
  await chmod(join(dir, 'etc/secret'), 0o600);
  const stamp = async (rel: string): Promise<void> => {
    for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
      const path = join(rel, e.name);
      if (e.isSymbolicLink()) continue;
      if (e.isDirectory()) await stamp(path);
      await utimes(join(dir, path), mtime, mtime + 0.123);
    }
  };
  await stamp('.');
}

describeWithTool('mkfs.erofs', 'erofs-utils', 'abota image rootfs', () => {
  for (const fs of ROOTFS_TYPES) {
    it(`${fs}: two builds of the same tree (other mtimes, other directory order) are byte-identical`, async () => {
      await withTempDir(async (dir) => {
        await makeTree(join(dir, 't1'), 'forward', 1_600_000_000);
        await makeTree(join(dir, 't2'), 'reverse', 1_700_000_000);
        const env = { ...process.env, SOURCE_DATE_EPOCH: '1650000000' };
        const a = await buildRootfs({ from: join(dir, 't1'), fs, out: join(dir, 'a.img'), env });
        const b = await buildRootfs({ from: join(dir, 't2'), fs, out: join(dir, 'b.img'), env });
        expect(a.sizeBytes % 4096).toBe(0);
        expect(a.sizeBytes).toBe(b.sizeBytes);
        expect((await readFile(join(dir, 'a.img'))).equals(await readFile(join(dir, 'b.img')))).toBe(true);
        // Another epoch gives another image: the epoch is really what is stamped in.
        const c = await buildRootfs({
          from: join(dir, 't1'),
          fs,
          out: join(dir, 'c.img'),
          env: { SOURCE_DATE_EPOCH: '1' },
        });
        expect(c.sizeBytes).toBeGreaterThan(0);
        expect((await readFile(join(dir, 'a.img'))).equals(await readFile(join(dir, 'c.img')))).toBe(false);
        // The caller's tree is not changed by the mount points abota adds.
        expect(a.addedMountPoints).toContain('/var');
        expect(await readdir(join(dir, 't1'))).toEqual(['bin', 'etc', 'sbin']);
      });
    });
  }

  it('the image holds the tree: erofs content read back with fsck.erofs --extract', async () => {
    await withTempDir(async (dir) => {
      await makeTree(join(dir, 't'), 'forward', 1_600_000_000);
      await buildRootfs({ from: join(dir, 't'), fs: 'erofs', out: join(dir, 'r.img'), env: {} });
      const out = join(dir, 'x');
      const r = spawnSync('fsck.erofs', [`--extract=${out}`, join(dir, 'r.img')], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      expect(await readFile(join(out, 'etc/conf.d/file-7'), 'utf8')).toBe('file-7\n'.repeat(50));
      expect((await readdir(out)).sort()).toEqual([
        'bin',
        'boot',
        'dev',
        'etc',
        'home',
        'logs',
        'proc',
        'root',
        'run',
        'sbin',
        'sys',
        'tmp',
        'var',
      ]);
    });
  });

  it('a tarball source gives the same image as the directory', async () => {
    await withTempDir(async (dir) => {
      await makeTree(join(dir, 't'), 'forward', 1_600_000_000);
      expect(spawnSync('tar', ['-C', join(dir, 't'), '-cf', join(dir, 't.tar'), '.']).status).toBe(0);
      const env = { SOURCE_DATE_EPOCH: '5' };
      await buildRootfs({ from: join(dir, 't'), fs: 'squashfs', out: join(dir, 'd.img'), env });
      await buildRootfs({ from: join(dir, 't.tar'), fs: 'squashfs', out: join(dir, 't.img'), env });
      expect((await readFile(join(dir, 'd.img'))).equals(await readFile(join(dir, 't.img')))).toBe(true);
    });
  });

  it('a tree without its init is refused (ERR_IMAGE_NOT_A_ROOTFS) and leaves no output', async () => {
    await withTempDir(async (dir) => {
      await mkdir(join(dir, 't/etc'), { recursive: true });
      await writeFile(join(dir, 't/etc/hostname'), 'x\n');
      await symlink('/bin/missing', join(dir, 't/init'));
      for (const init of ['/sbin/init', '/init', '/etc/hostname']) {
        const err = await buildRootfs({
          from: join(dir, 't'),
          fs: 'erofs',
          out: join(dir, 'r.img'),
          init,
          env: {},
        }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ImageError);
        expect((err as ImageError).code).toBe('ERR_IMAGE_NOT_A_ROOTFS');
        expect((err as ImageError).message).toContain(init);
      }
      expect(await readdir(dir)).toEqual(['t']);
    });
  });

  it('--size smaller than the filesystem is ERR_IMAGE_TOO_SMALL; a larger one pads with zeros', async () => {
    await withTempDir(async (dir) => {
      await makeTree(join(dir, 't'), 'forward', 1);
      for (const fs of ROOTFS_TYPES) {
        const err = await buildRootfs({
          from: join(dir, 't'),
          fs,
          out: join(dir, `${fs}.img`),
          sizeBytes: 4096,
          env: {},
        }).catch((e: unknown) => e);
        expect((err as ImageError).code, fs).toBe('ERR_IMAGE_TOO_SMALL');
      }
      const big = await buildRootfs({
        from: join(dir, 't'),
        fs: 'erofs',
        out: join(dir, 'big.img'),
        sizeBytes: 8 << 20,
        env: {},
      });
      expect(big.sizeBytes).toBe(8 << 20);
      expect(big.contentBytes).toBeLessThan(8 << 20);
      expect((await readdir(dir)).sort()).toEqual(['big.img', 't']);
    });
  });

  it('a missing tool names its Debian package and writes nothing', async () => {
    await withTempDir(async (dir) => {
      await makeTree(join(dir, 't'), 'forward', 1);
      process.env['ABOTA_TOOLS_PATH'] = join(dir, 'no-tools');
      try {
        const err = await buildRootfs({
          from: join(dir, 't'),
          fs: 'squashfs',
          out: join(dir, 'r.img'),
          env: {},
        }).catch((e: unknown) => e);
        expect((err as ImageError).code).toBe('ERR_IMAGE_TOOL_MISSING');
        expect((err as ImageError).message).toContain('apt-get install squashfs-tools');
      } finally {
        delete process.env['ABOTA_TOOLS_PATH'];
      }
      expect(await readdir(dir)).toEqual(['t']);
    });
  });
});
