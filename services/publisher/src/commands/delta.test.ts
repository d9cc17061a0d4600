// `abota delta make|apply`, run in-process through main() on real files; the target's hash
// tree comes from the real veritysetup so apply verifies blocks the way a device does.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeWithTool } from '@abota/testkit';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { runCli } from '../test-support/run-cli.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'abota-delta-cli-'));
});
afterEach(async () => {
  vi.restoreAllMocks();
  await rm(dir, { recursive: true, force: true });
});

const abota = runCli;

/** OLD: 64 random blocks; NEW: OLD with a 1000-byte insert (shifts the rest), a zeroed and a new region. */
async function imagePair(): Promise<{ oldPath: string; newPath: string; newBytes: Buffer }> {
  const old = randomBytes(64 * 4096);
  const shifted = Buffer.concat([old.subarray(0, 10_000), randomBytes(1000), old.subarray(10_000)]);
  const next = Buffer.alloc(64 * 4096);
  shifted.copy(next, 0, 0, next.length);
  next.fill(0, 100_000, 140_000);
  randomBytes(8192).copy(next, 200_000);
  const oldPath = join(dir, 'old.img');
  const newPath = join(dir, 'new.img');
  await writeFile(oldPath, old);
  await writeFile(newPath, next);
  return { oldPath, newPath, newBytes: next };
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

describe('abota delta make / apply', () => {
  it('make writes a delta much smaller than the target and apply reproduces the target byte for byte', async () => {
    const { oldPath, newPath, newBytes } = await imagePair();
    const deltaPath = join(dir, 'd.bin');
    const made = await abota('delta', 'make', oldPath, newPath, deltaPath, '--json', '--quality', '5');
    expect(made.code).toBe(0);
    const doc = JSON.parse(made.stdout) as { ok: boolean; payloadSizeBytes: number };
    expect(doc.ok).toBe(true);
    expect(doc.payloadSizeBytes).toBeLessThan(16_000);
    const outPath = join(dir, 'out.img');
    const applied = await abota('delta', 'apply', oldPath, deltaPath, outPath, '--json');
    expect(applied.code).toBe(0);
    expect(JSON.parse(applied.stdout)).toMatchObject({
      ok: true,
      verifiedBy: 'delta-sha256',
      blocksWritten: 64,
    });
    expect((await readFile(outPath)).equals(newBytes)).toBe(true);
  });

  it('apply refuses a corrupted delta with its DeltaError code and leaves no output file', async () => {
    const { oldPath, newPath } = await imagePair();
    const deltaPath = join(dir, 'd.bin');
    expect((await abota('delta', 'make', oldPath, newPath, deltaPath, '--quality', '5')).code).toBe(0);
    const bytes = await readFile(deltaPath);
    bytes[bytes.length - 5]! ^= 0x40;
    await writeFile(deltaPath, bytes);
    const outPath = join(dir, 'out.img');
    const applied = await abota('delta', 'apply', oldPath, deltaPath, outPath, '--json');
    expect(applied.code).toBe(1);
    expect(JSON.parse(applied.stdout)).toMatchObject({
      ok: false,
      error: { code: 'ERR_DELTA_OP_DIGEST_MISMATCH' },
    });
    expect(await exists(outPath)).toBe(false);
  });

  it('make refuses images that are not a whole number of blocks', async () => {
    const oldPath = join(dir, 'old.img');
    await writeFile(oldPath, randomBytes(5000));
    const r = await abota('delta', 'make', oldPath, oldPath, join(dir, 'd.bin'));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ERR_DELTA_INPUT_INVALID');
  });
});

describeWithTool(
  'veritysetup',
  'cryptsetup-bin',
  'abota delta apply against a veritysetup hash tree',
  (veritysetup) => {
    function format(dataPath: string, hashPath: string): string {
      const r = spawnSync(veritysetup, ['format', dataPath, hashPath], { encoding: 'utf8' });
      expect(r.status).toBe(0);
      const m = /^Root hash:\s+([0-9a-f]+)$/m.exec(r.stdout);
      if (!m) throw new Error(`no root hash in ${r.stdout}`);
      return m[1]!;
    }

    it('verifies every block against the dm-verity tree and refuses the wrong root hash', async () => {
      const { oldPath, newPath, newBytes } = await imagePair();
      const hashPath = join(dir, 'new.hash');
      const rootHash = format(newPath, hashPath);
      const deltaPath = join(dir, 'd.bin');
      expect(
        (
          await abota(
            'delta',
            'make',
            oldPath,
            newPath,
            deltaPath,
            '--quality',
            '5',
            '--target-root-hash',
            rootHash,
          )
        ).code,
      ).toBe(0);
      const outPath = join(dir, 'out.img');
      const ok = await abota(
        'delta',
        'apply',
        oldPath,
        deltaPath,
        outPath,
        '--json',
        '--root-hash',
        rootHash,
        '--hash-file',
        hashPath,
      );
      expect(ok.code).toBe(0);
      expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, verifiedBy: 'dm-verity', blocksWritten: 64 });
      expect((await readFile(outPath)).equals(newBytes)).toBe(true);

      // The delta names another target than the trusted root hash: refused before any write.
      const otherHash = join(dir, 'old.hash');
      const otherRoot = format(oldPath, otherHash);
      const bad = await abota(
        'delta',
        'apply',
        oldPath,
        deltaPath,
        outPath,
        '--json',
        '--root-hash',
        otherRoot,
        '--hash-file',
        otherHash,
      );
      expect(bad.code).toBe(1);
      expect(JSON.parse(bad.stdout)).toMatchObject({ ok: false, error: { code: 'ERR_DELTA_WRONG_TARGET' } });
    });

    it('stops at the first block that does not match the tree when the source is not the one the delta was made from', async () => {
      const { oldPath, newPath } = await imagePair();
      const hashPath = join(dir, 'new.hash');
      const rootHash = format(newPath, hashPath);
      const deltaPath = join(dir, 'd.bin');
      expect((await abota('delta', 'make', oldPath, newPath, deltaPath, '--quality', '5')).code).toBe(0);
      await writeFile(oldPath, randomBytes(64 * 4096)); // same size, other content
      const outPath = join(dir, 'out.img');
      const r = await abota(
        'delta',
        'apply',
        oldPath,
        deltaPath,
        outPath,
        '--json',
        '--root-hash',
        rootHash,
        '--hash-file',
        hashPath,
      );
      expect(r.code).toBe(1);
      const doc = JSON.parse(r.stdout) as { error: { code: string; message: string } };
      expect(doc.error.code).toBe('ERR_DELTA_TARGET_VERIFICATION');
      expect(doc.error.message).toMatch(/target block \d+/);
      expect(await exists(outPath)).toBe(false);
    });
  },
);
