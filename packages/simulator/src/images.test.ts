import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeWithTool, withTempDir } from '@abota/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { buildRootfsImage } from './images.js';

const MiB = 1024 * 1024;
const REQUIRE = 'ABOTA_REQUIRE_TOOLS';
const saved = process.env[REQUIRE];
afterEach(() => {
  if (saved === undefined) delete process.env[REQUIRE];
  else process.env[REQUIRE] = saved;
});

describe('buildRootfsImage without mkfs.ext4', () => {
  // No mkfs.ext4 where the builder looks: an empty list of candidate paths.
  const nowhere: readonly string[] = [];

  it('fails under ABOTA_REQUIRE_TOOLS=1 instead of falling back to a raw image', async () => {
    process.env[REQUIRE] = '1';
    await withTempDir(async (dir) => {
      await expect(
        buildRootfsImage({
          path: join(dir, 'r.img'),
          version: '1.0.0',
          sizeBytes: MiB,
          mkfsExt4Paths: nowhere,
        }),
      ).rejects.toMatchObject({ code: 'ERR_SIM_TOOL_MISSING', message: expect.stringMatching(/e2fsprogs/) });
    });
  });

  it('falls back to a raw image otherwise, and to a raw one when asked for under ABOTA_REQUIRE_TOOLS=1', async () => {
    delete process.env[REQUIRE];
    await withTempDir(async (dir) => {
      const fallback = await buildRootfsImage({
        path: join(dir, 'r.img'),
        version: '1.0.0',
        sizeBytes: MiB,
        mkfsExt4Paths: nowhere,
      });
      expect(fallback.kind).toBe('raw');
      expect((await readFile(fallback.path)).subarray(0, 16).toString()).toBe('ABOTA-RAW-ROOTFS');
      process.env[REQUIRE] = '1';
      const raw = await buildRootfsImage({
        path: join(dir, 'q.img'),
        version: '1.0.0',
        sizeBytes: MiB,
        kind: 'raw',
      });
      expect(raw.kind).toBe('raw');
    });
  });
});

describeWithTool('mkfs.ext4', 'e2fsprogs', 'buildRootfsImage with mkfs.ext4', () => {
  it('builds ext4 (superblock magic 0xEF53 at byte 1080)', async () => {
    await withTempDir(async (dir) => {
      const img = await buildRootfsImage({ path: join(dir, 'r.img'), version: '1.0.0', sizeBytes: 2 * MiB });
      expect(img.kind).toBe('ext4');
      expect((await readFile(img.path)).readUInt16LE(1080)).toBe(0xef53);
    });
  });
});
