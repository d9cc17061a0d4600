// `abota image disk` and `release build --kernel` with the real kernel, without booting:
// deterministic disks, and each bad input a clear error with no output left behind.
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describeWithTool, makeTempDir } from '@abota/testkit';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  abota,
  abotaFailure,
  type Kernel,
  minimalGuestTree,
  releaseBuildArgs,
  testKeys,
  TEST_SIZES,
  vmKernel,
} from './fixture.js';

const EPOCH = { SOURCE_DATE_EPOCH: '1700000000' };

describeWithTool('sgdisk', 'gdisk', 'abota image disk and the boot image', () => {
  let dir: string;
  let kernel: Kernel;
  let release: string;
  const buildArgs = (name: string, version: string): string[] =>
    releaseBuildArgs({
      image: join(dir, 'rootfs.img'),
      keys: join(dir, 'keys'),
      out: join(dir, name),
      version,
    });
  const build = (name: string, version: string, extra: string[] = []): Promise<Record<string, unknown>> =>
    abota([...buildArgs(name, version), ...extra]);

  beforeAll(async () => {
    dir = await makeTempDir('abota-vm-images-');
    kernel = await vmKernel();
    await testKeys(dir);
    await minimalGuestTree(join(dir, 'tree'), 'v1');
    await abota(['image', 'rootfs', '--from', join(dir, 'tree'), '--out', join(dir, 'rootfs.img')]);
    release = join(dir, 'release');
    await build('release', '1.0.0', ['--kernel', kernel.vmlinuz, '--kernel-modules', kernel.modulesDir]);
  });

  afterAll(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('the disk is deterministic: two raw builds and two qcow2 builds are byte-identical; VHDX converts', async () => {
    for (const format of ['raw', 'qcow2']) {
      const a = join(dir, `a.${format}`);
      const b = join(dir, `b.${format}`);
      await abota(
        ['image', 'disk', '--release', release, '--out', a, '--format', format, ...TEST_SIZES],
        EPOCH,
      );
      await abota(
        ['image', 'disk', '--release', release, '--out', b, '--format', format, ...TEST_SIZES],
        EPOCH,
      );
      expect((await readFile(a)).equals(await readFile(b)), format).toBe(true);
    }
    const vhdx = join(dir, 'disk.vhdx');
    await abota(['image', 'disk', '--release', release, '--out', vhdx, '--format', 'vhdx', ...TEST_SIZES]);
    const info = spawnSync('qemu-img', ['info', '--output=json', vhdx], { encoding: 'utf8' });
    expect(JSON.parse(info.stdout).format).toBe('vhdx');
    // The GPT names and numbers grub.cfg relies on.
    const table = spawnSync('sgdisk', ['-p', join(dir, 'a.raw')], { encoding: 'utf8' }).stdout;
    expect(
      [...table.matchAll(/^\s+(\d+)\s+\d+\s+\d+\s+\S+ \S+\s+\S+\s+(\S+)$/gm)].map((m) => `${m[1]}:${m[2]}`),
    ).toEqual([
      '1:ESP',
      '2:BootEFIA',
      '3:BootA',
      '4:RootFSA',
      '5:BootEFIB',
      '6:BootB',
      '7:RootFSB',
      '8:Unused',
      '9:Log',
      '10:Data',
    ]);
  });

  it('a disk smaller than the layout, or a partition smaller than its image: ERR_IMAGE_TOO_SMALL, no output', async () => {
    const out = join(dir, 'small.raw');
    const tooSmall = await abotaFailure([
      'image',
      'disk',
      '--release',
      release,
      '--out',
      out,
      '--size',
      '64M',
      ...TEST_SIZES,
    ]);
    expect(tooSmall.status).toBe(2);
    expect(tooSmall.error.code).toBe('ERR_IMAGE_TOO_SMALL');
    expect(tooSmall.error.message).toMatch(/too small for the layout/);
    const sizes = TEST_SIZES.map((s) => (s === '40M' ? '4M' : s));
    const bootTooSmall = await abotaFailure(['image', 'disk', '--release', release, '--out', out, ...sizes]);
    expect(bootTooSmall.error.code).toBe('ERR_IMAGE_TOO_SMALL');
    expect(bootTooSmall.error.message).toContain('--size-boot');
    expect((await readdir(dir)).filter((f) => f.includes('small'))).toEqual([]);
  });

  it('a release without a boot image cannot make a disk (ERR_IMAGE_RELEASE_INVALID)', async () => {
    await build('no-boot', '1.0.1');
    const r = await abotaFailure([
      'image',
      'disk',
      '--release',
      join(dir, 'no-boot'),
      '--out',
      join(dir, 'nb.raw'),
      ...TEST_SIZES,
    ]);
    expect(r.status).toBe(2);
    expect(r.error.code).toBe('ERR_IMAGE_RELEASE_INVALID');
    expect(r.error.message).toContain('--kernel');
    expect((await readdir(dir)).filter((f) => f.startsWith('nb') || f.startsWith('.nb'))).toEqual([]);
  });

  it('a missing tool names its Debian package and writes nothing', async () => {
    // Every tool the disk needs except sgdisk.
    const tools = join(dir, 'tools');
    await mkdir(tools);
    for (const t of ['mkfs.vfat', 'mmd', 'mcopy', 'grub-mkimage', 'tar', 'mkfs.ext4', 'debugfs', 'gzip']) {
      const found = spawnSync('/bin/sh', ['-c', `PATH=$PATH:/usr/sbin:/sbin command -v ${t}`], {
        encoding: 'utf8',
      }).stdout.trim();
      await symlink(found, join(tools, t));
    }
    const r = await abotaFailure(
      ['image', 'disk', '--release', release, '--out', join(dir, 'nt.raw'), ...TEST_SIZES],
      {
        ABOTA_TOOLS_PATH: tools,
      },
    );
    expect(r.error.code).toBe('ERR_IMAGE_TOOL_MISSING');
    expect(r.error.message).toContain('apt-get install gdisk');
    expect((await readdir(dir)).filter((f) => f.includes('nt.raw'))).toEqual([]);
  });

  it('a kernel without dm-verity is refused (ERR_IMAGE_KERNEL_UNSUITABLE) and no release is left; with it the same modules build', async () => {
    // A modules directory with exactly the files the initramfs uses, then without dm-verity.ko.
    const modules = join(dir, 'modules', kernel.version);
    const source = join(kernel.modulesDir, 'lib', 'modules', kernel.version);
    const wanted = spawnSync('find', [source, '-name', '*.ko'], { encoding: 'utf8' }).stdout.split('\n');
    const keep =
      /\/(dm-mod|dm-verity|dm-bufio|reed_solomon|efivarfs|virtio\w*|failover|net_failover|erofs|squashfs|overlay|fat|vfat|nls_[\w-]+|nf\w*|libcrc32c|lz4\w*|xxhash\w*|zstd\w*|crc\w*)\.ko$/;
    for (const ko of wanted.filter((f) => keep.test(f))) {
      const rel = ko.slice(source.length + 1);
      await mkdir(dirname(join(modules, rel)), { recursive: true });
      await copyFile(ko, join(modules, rel));
    }
    await copyFile(join(source, 'modules.builtin'), join(modules, 'modules.builtin'));
    await build('with-verity', '1.0.2', ['--kernel', kernel.vmlinuz, '--kernel-modules', modules]);
    await rm(join(modules, 'kernel/drivers/md/dm-verity.ko'));
    const r = await abotaFailure([
      ...buildArgs('no-verity', '1.0.3'),
      '--kernel',
      kernel.vmlinuz,
      '--kernel-modules',
      modules,
    ]);
    expect(r.status).toBe(2);
    expect(r.error.code).toBe('ERR_IMAGE_KERNEL_UNSUITABLE');
    expect(r.error.message).toContain('dm-verity');
    expect((await readdir(dir)).filter((f) => f.includes('no-verity'))).toEqual([]);
  });
});
