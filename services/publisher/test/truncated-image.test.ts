// `abota release build` (the real bin) refuses an image shorter than the filesystem in it, for
// each format a rootfs may be: real ext4, erofs and squashfs images from mkfs.ext4, mkfs.erofs
// and mksquashfs, cut short on a 4096-byte boundary so that the block-alignment check passes.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeWithTool, makeTempDir, releaseBuildArgs, runNode } from '@abota/testkit';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readFilesystemSize } from '../src/release/filesystem/size.js';

const ABOTA = fileURLToPath(new URL('../bin/abota.js', import.meta.url));
let work: string;
let keys: string;
let tree: string;

beforeAll(async () => {
  work = await makeTempDir('abota-truncated-');
  keys = join(work, 'keys');
  tree = join(work, 'tree');
  await mkdir(tree);
  // Incompressible files, so every format needs a few hundred KiB.
  for (let i = 0; i < 40; i++) {
    await writeFile(join(tree, `file-${i}`), randomBytes(20_000));
  }
  const init = await runNode(ABOTA, ['keys', 'init', keys, '--json']);
  expect(init.code, init.stderr).toBe(0);
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

function mkfs(tool: string, args: string[]): void {
  const r = spawnSync(tool, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')}: ${r.stderr}`);
}

/** Pads a file up to a 4096-byte multiple (mkfs.erofs / mksquashfs sizes need not be aligned). */
async function alignUp(path: string): Promise<number> {
  const size = (await stat(path)).size;
  const aligned = Math.ceil(size / 4096) * 4096;
  await truncate(path, aligned);
  return aligned;
}

const build = (image: string, out: string) =>
  runNode(ABOTA, releaseBuildArgs({ image, keys, out, json: true }));

const FORMATS = [
  {
    tool: 'mkfs.ext4',
    pkg: 'e2fsprogs',
    kind: 'ext4',
    make: (tool: string, image: string) =>
      mkfs(tool, ['-q', '-F', '-b', '4096', '-O', '^has_journal', '-d', tree, image, '4M']),
  },
  {
    tool: 'mkfs.erofs',
    pkg: 'erofs-utils',
    kind: 'erofs',
    make: (tool: string, image: string) => mkfs(tool, ['--quiet', image, tree]),
  },
  {
    tool: 'mksquashfs',
    pkg: 'squashfs-tools',
    kind: 'squashfs',
    make: (tool: string, image: string) => mkfs(tool, [tree, image, '-quiet', '-noappend', '-no-progress']),
  },
] as const;

for (const format of FORMATS) {
  describeWithTool(format.tool, format.pkg, `abota release build with a ${format.kind} image`, (tool) => {
    it(`signs the whole image and refuses it cut short by 8 KiB (ERR_RELEASE_IMAGE_TRUNCATED, exit 3)`, async () => {
      const image = join(work, `${format.kind}.img`);
      format.make(tool, image);
      const size = await alignUp(image);
      const fs = await readFilesystemSize(image);
      expect(fs?.kind).toBe(format.kind);
      expect(Number(fs?.sizeBytes)).toBeGreaterThan(size - 4096);
      expect(Number(fs?.sizeBytes)).toBeLessThanOrEqual(size);

      const whole = await build(image, join(work, `${format.kind}-whole`));
      expect(whole.code, whole.stderr).toBe(0);

      await truncate(image, size - 8192);
      const out = join(work, `${format.kind}-cut`);
      const cut = await build(image, out);
      expect(cut.code).toBe(3);
      const failure = JSON.parse(cut.stdout) as { ok: boolean; error: { code: string; message: string } };
      expect(failure.error.code).toBe('ERR_RELEASE_IMAGE_TRUNCATED');
      expect(failure.error.message).toContain(
        `the ${format.kind} filesystem in it is ${fs?.sizeBytes} bytes`,
      );
      // Nothing was signed or left behind.
      await expect(stat(out)).rejects.toMatchObject({ code: 'ENOENT' });
    });
  });
}
