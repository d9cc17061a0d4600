// The release engineer's real case at full size: a 512 MiB ext4 image made with mkfs.ext4 -d
// from a directory tree becomes a release that `abota release verify` accepts (every block
// against the signed tree) and that `veritysetup verify` accepts for the image and the tree.
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ReleaseManifest } from '@abota/manifest';
import { describeWithTool, findTool } from '@abota/testkit';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { mkfsExt4, writeSyntheticTree } from '../../bench/ext4-image.js';
import { runCli } from '../test-support/run-cli.js';

const IMAGE_MIB = 512;

describeWithTool('mkfs.ext4', 'e2fsprogs', 'abota release on a 512 MiB ext4 image', () => {
  describeWithTool('veritysetup', 'cryptsetup-bin', 'checked by veritysetup', (veritysetup) => {
    let work: string;
    let image: string;
    let release: string;

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'abota-release-512-'));
      const tree = join(work, 'tree');
      await mkdir(tree);
      await writeSyntheticTree(tree, 48 * 1024 * 1024, 512);
      image = join(work, 'rootfs.img');
      mkfsExt4(tree, image, IMAGE_MIB, findTool('mkfs.ext4'));
      const keys = join(work, 'keys');
      const init = await runCli('keys', 'init', keys, '--json');
      expect(init.code, init.stdout + init.stderr).toBe(0);
      release = join(work, 'release');
      const built = await runCli(
        'release',
        'build',
        '--image',
        image,
        '--product',
        'eflow-vm',
        '--compatible',
        'hyperv-x64',
        '--version',
        '2.0.0',
        '--security-version',
        '1',
        '--expires',
        '30d',
        '--keys',
        keys,
        '--out',
        release,
        '--json',
      );
      expect(built.code, built.stdout + built.stderr).toBe(0);
    }, 300_000);

    afterAll(async () => {
      await rm(work, { recursive: true, force: true });
    });

    it('is accepted by abota release verify, every one of its 131072 blocks checked', async () => {
      const r = await runCli(
        'release',
        'verify',
        release,
        '--root',
        join(work, 'keys', 'root.json'),
        '--json',
      );
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const report = JSON.parse(r.stdout) as { images: { rootfs: { blocksVerified: number } } };
      expect(report.images.rootfs.blocksVerified).toBe((IMAGE_MIB * 1024 * 1024) / 4096);
    }, 300_000);

    it('veritysetup verify accepts the image with the hash-tree blob and the signed root hash', async () => {
      const m = JSON.parse(await readFile(join(release, 'manifest.json'), 'utf8')) as ReleaseManifest;
      const tree = join(
        release,
        'blobs',
        'sha256',
        m.images.rootfs.verity.hashTree.digest.slice('sha256:'.length),
      );
      const ok = spawnSync(veritysetup, ['verify', image, tree, m.images.rootfs.verity.rootHash], {
        encoding: 'utf8',
      });
      expect(ok.status, ok.stderr).toBe(0);
    }, 120_000);
  });
});
