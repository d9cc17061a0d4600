// `abota verity format|verify|dump`, run in-process through main() on real files and compared
// with the real veritysetup: same hash file bytes, same header lines, same exit statuses.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeWithTool } from '@abota/testkit';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { runCli } from '../test-support/run-cli.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'abota-verity-cli-'));
});
afterEach(async () => {
  vi.restoreAllMocks();
  await rm(dir, { recursive: true, force: true });
});

const abota = runCli;

const UUID = '12345678-1234-5678-9abc-def012345678';
const SALT = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';

async function dataFile(blocks: number, name = 'data.img'): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, randomBytes(blocks * 4096));
  return path;
}

function rootHashOf(stdout: string): string {
  const m = /^Root hash:\s+([0-9a-f]+)$/m.exec(stdout);
  if (!m) throw new Error(`no Root hash line in ${stdout}`);
  return m[1]!;
}

describe('abota verity format / verify / dump', () => {
  it('format prints the veritysetup header with the root hash, verify accepts it, dump shows the superblock', async () => {
    const data = await dataFile(129);
    const hash = join(dir, 'hash.img');
    const f = await abota('verity', 'format', data, hash, `--salt=${SALT}`, '--uuid', UUID);
    expect(f.code).toBe(0);
    expect(f.stdout).toContain(`VERITY header information for ${hash}\n`);
    expect(f.stdout).toContain(`UUID:            \t${UUID}\n`);
    expect(f.stdout).toContain('Data blocks:     \t129\n');
    expect(f.stdout).toContain('Hash blocks:     \t3\n');
    expect(f.stdout).toContain(`Salt:            \t${SALT}\n`);
    expect(f.stdout).toContain('Hash device size: \t16384 [bytes]\n');
    const root = rootHashOf(f.stdout);
    expect(root).toMatch(/^[0-9a-f]{64}$/);

    const v = await abota('verity', 'verify', data, hash, root);
    expect([v.code, v.stderr]).toEqual([0, '']);

    const d = await abota('verity', 'dump', hash);
    expect(d.code).toBe(0);
    expect(d.stdout).toBe(f.stdout.replace(/^Root hash:.*\n/m, ''));

    const dj = await abota('verity', 'dump', hash, '--json');
    expect(JSON.parse(dj.stdout)).toMatchObject({
      ok: true,
      uuid: UUID,
      dataBlocks: 129,
      salt: SALT,
      hashBlocks: 3,
    });
  });

  it('format --json reports root hash and geometry; --root-hash-file holds bare lower-case hex for verify', async () => {
    const data = await dataFile(300);
    const hash = join(dir, 'hash.img');
    const rootFile = join(dir, 'root.txt');
    const f = await abota(
      'verity',
      'format',
      data,
      hash,
      '--json',
      '--salt=-',
      '--hash',
      'sha512',
      '--format',
      '0',
      '--root-hash-file',
      rootFile,
    );
    expect(f.code).toBe(0);
    const out = JSON.parse(f.stdout) as Record<string, unknown>;
    expect(out).toMatchObject({ ok: true, algorithm: 'sha512', hashType: 0, salt: '-', dataBlocks: 300 });
    expect(await readFile(rootFile, 'utf8')).toBe(out['rootHash']);
    const v = await abota('verity', 'verify', data, hash, '--root-hash-file', rootFile, '--json');
    expect(v.code).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({ ok: true, verified: true, rootHash: out['rootHash'] });
  });

  it('verify exits 1 for a wrong root hash and 2 for a corrupted data block, naming the position', async () => {
    const data = await dataFile(129);
    const hash = join(dir, 'hash.img');
    const root = rootHashOf((await abota('verity', 'format', data, hash)).stdout);
    const wrong = (root[0] === '0' ? '1' : '0') + root.slice(1);
    const bad = await abota('verity', 'verify', data, hash, wrong);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^abota: ERR_VERITY_ROOT_HASH_MISMATCH: Verification of root hash failed/);
    const bytes = await readFile(data);
    bytes[5 * 4096 + 7] = bytes[5 * 4096 + 7]! ^ 0x40;
    await writeFile(data, bytes);
    const corrupt = await abota('verity', 'verify', data, hash, root);
    expect(corrupt.code).toBe(2);
    expect(corrupt.stderr).toContain(
      'ERR_VERITY_DATA_CORRUPT: Verification failed at position 20480: data block 5',
    );
    const json = await abota('verity', 'verify', data, hash, root, '--json');
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, error: { code: 'ERR_VERITY_DATA_CORRUPT' } });
  });

  it('writes data and tree into one file with --hash-offset and --data-blocks (single-device variant)', async () => {
    const device = join(dir, 'device.img');
    await writeFile(device, Buffer.alloc(9 * 1024 * 1024));
    const f = await abota(
      'verity',
      'format',
      device,
      device,
      '--hash-offset=8388608',
      '--data-blocks=2048',
      '--salt=e48da609055204e89ae53b655ca2216dd983cf3cb829f34f63a297d106d53e2d',
    );
    expect(f.code).toBe(0);
    // cryptsetup verity-compat-test: the same root hash as with separate devices.
    expect(rootHashOf(f.stdout)).toBe('e522df0f97da4febb882ac40f30b37dc0b444bf6df418929463fa25280f09d5c');
    expect(f.stdout).not.toContain('Hash device size');
    const v = await abota('verity', 'verify', device, device, rootHashOf(f.stdout), '--hash-offset=8388608');
    expect(v.code).toBe(0);
  });

  it('every command has --help', async () => {
    for (const cmd of ['format', 'verify', 'dump']) {
      const h = await abota('verity', cmd, '--help');
      expect(h.code).toBe(0);
      expect(h.stdout).toContain(`Usage: abota verity ${cmd}`);
      expect(h.stdout).toContain('--json');
    }
  });
});

describe('abota verity: bad input is a clear error and leaves no output file', () => {
  it.each([
    ['a missing data file', ['missing.img'], 'ERR_VERITY_FILE_NOT_FOUND', 4, 'does not exist'],
    [
      'an image smaller than one block',
      ['tiny.img'],
      'ERR_VERITY_DATA_TOO_SMALL',
      1,
      'smaller than one data block',
    ],
    [
      'a block size that is not a power of two',
      ['data.img', '--data-block-size', '1000'],
      'ERR_VERITY_INVALID_BLOCK_SIZE',
      1,
      'power of two',
    ],
    [
      'a salt longer than 256 bytes',
      ['data.img', `--salt=${'ab'.repeat(257)}`],
      'ERR_VERITY_INVALID_SALT',
      1,
      '257 bytes',
    ],
    ['a salt that is not hex', ['data.img', '--salt=xyz1'], 'ERR_VERITY_INVALID_SALT', 1, 'hex'],
    [
      'an unknown algorithm',
      ['data.img', '--hash', 'whirlpool'],
      'ERR_VERITY_UNKNOWN_ALGORITHM',
      1,
      'whirlpool',
    ],
    [
      'a non-numeric block count',
      ['data.img', '--data-blocks', 'ten'],
      'ERR_VERITY_INVALID_PARAMS',
      1,
      '--data-blocks',
    ],
    [
      'a hash offset not a multiple of 512',
      ['data.img', '--hash-offset', '1000'],
      'ERR_VERITY_INVALID_HASH_OFFSET',
      1,
      '512',
    ],
  ])('%s', async (_name, args, code, exit, text) => {
    await dataFile(16);
    await writeFile(join(dir, 'tiny.img'), randomBytes(1000));
    const [first, ...rest] = args as [string, ...string[]];
    const before = (await readdir(dir)).sort();
    const r = await abota('verity', 'format', join(dir, first), join(dir, 'out.img'), ...rest);
    expect(r.code).toBe(exit);
    expect(r.stderr).toMatch(new RegExp(`^abota: ${code}: `));
    expect(r.stderr).toContain(text);
    expect((await readdir(dir)).sort()).toEqual(before);
  });

  it('a hash offset that overlaps the data in one file', async () => {
    const device = join(dir, 'device.img');
    const contents = randomBytes(64 * 4096);
    await writeFile(device, contents);
    const r = await abota('verity', 'format', device, device, '--hash-offset=131072', '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, error: { code: 'ERR_VERITY_OVERLAP' } });
    expect((await readFile(device)).equals(contents)).toBe(true);
  });

  it('dump of a file without a superblock', async () => {
    const data = await dataFile(4);
    const r = await abota('verity', 'dump', data);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ERR_VERITY_BAD_SUPERBLOCK');
    expect(r.stderr).toContain('not a valid VERITY device');
  });
});

describeWithTool('veritysetup', 'cryptsetup-bin', 'abota verity next to veritysetup', (veritysetup) => {
  it('prints the same header lines and writes the same bytes as veritysetup format', async () => {
    const data = await dataFile(257);
    const args = [
      `--salt=${SALT}`,
      `--uuid=${UUID}`,
      '--hash-offset=4608',
      '--hash=sha1',
      '--data-block-size=1024',
    ];
    const ours = join(dir, 'ours.img');
    const theirs = join(dir, 'theirs.img');
    const f = await abota('verity', 'format', data, ours, ...args);
    const ref = spawnSync(veritysetup, ['format', data, theirs, ...args], { encoding: 'utf8' });
    expect(ref.status).toBe(0);
    const body = (s: string) => s.split('\n').slice(1).join('\n');
    expect(body(f.stdout)).toBe(body(ref.stdout));
    expect((await readFile(ours)).equals(await readFile(theirs))).toBe(true);
    const refDump = spawnSync(veritysetup, ['dump', theirs, '--hash-offset=4608'], { encoding: 'utf8' });
    const d = await abota('verity', 'dump', ours, '--hash-offset=4608');
    expect(body(d.stdout)).toBe(body(refDump.stdout));
  });

  it('exits with veritysetup verify status for good, wrong-root and corrupted-tree cases', async () => {
    const data = await dataFile(300);
    const hash = join(dir, 'hash.img');
    const root = rootHashOf(
      (await abota('verity', 'format', data, hash, '--no-superblock', '--salt=abcd')).stdout,
    );
    const opts = ['--no-superblock', '--salt=abcd'];
    const run = async (h: string, r: string) => {
      const ours = await abota('verity', 'verify', data, h, r, ...opts);
      const ref = spawnSync(veritysetup, ['verify', data, h, r, ...opts], { encoding: 'utf8' });
      return [ours.code, ref.status];
    };
    expect(await run(hash, root)).toEqual([0, 0]);
    expect(await run(hash, 'f'.repeat(64))).toEqual([1, 1]);
    const bytes = await readFile(hash);
    bytes[4096 + 2000] = 1; // padding after the 3 digests of the top block
    await writeFile(hash, bytes);
    expect(await run(hash, root)).toEqual([2, 2]);
  });
});
