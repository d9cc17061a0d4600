// Deltas of releases (CONTRACTS.md "Deltas end to end"), in-process through main() on real ext4
// images (mkfs.ext4 -d): `release build --delta-from`, `release add-delta`, the checks of
// `release verify` and the listing of `release inspect`. A delta is proved by applying it with
// `abota delta apply` onto the previous image, every block verified against the new release's
// tree, and comparing the result with the new image byte for byte. Refusals leave nothing behind.
import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type GeneralJws, type ReleaseManifest, signManifest } from '@abota/manifest';
import { describeWithTool, findTool } from '@abota/testkit';
import { zstdCompressSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkfsExt4, writeSyntheticTree } from '../../bench/ext4-image.js';
import { loadRoleSigningKeys } from '../keys/trust-root.js';
import { runCli } from '../test-support/run-cli.js';
import { addDeltas } from './add-delta.js';
import { buildRelease } from './build.js';
import { type DeltaEntry, type DeltasFile, parseDeltasFile } from './deltas-json.js';
import type { DeltaOutcome } from './deltas-make.js';

const abota = runCli;
const IMAGE_MIB = 16;
const BOOT_BYTES = 1024 * 1024;

function errorOf(r: { stdout: string }): { code: string; message: string } {
  return (JSON.parse(r.stdout) as { error: { code: string; message: string } }).error;
}

describeWithTool('mkfs.ext4', 'e2fsprogs', 'release deltas on real ext4 images', () => {
  let work: string;
  let keys: string;
  const images: Record<'v1' | 'v2' | 'v3', { rootfs: string; boot: string }> = {
    v1: { rootfs: '', boot: '' },
    v2: { rootfs: '', boot: '' },
    v3: { rootfs: '', boot: '' },
  };
  let v1: string;
  let v2: string;
  let v2Build: { deltas: DeltaOutcome[] };

  const buildArgv = (
    version: string,
    out: string,
    img: { rootfs: string; boot?: string },
    extra: string[] = [],
    product = 'eflow-vm',
    keysDir = keys,
  ): string[] => [
    'release',
    'build',
    '--image',
    img.rootfs,
    ...(img.boot === undefined ? [] : ['--boot', img.boot]),
    '--product',
    product,
    '--compatible',
    'hyperv-x64',
    '--version',
    version,
    '--security-version',
    '1',
    '--expires',
    '30d',
    '--keys',
    keysDir,
    '--out',
    out,
    '--delta-quality',
    '5',
    ...extra,
    '--json',
  ];

  async function build(
    version: string,
    out: string,
    img: { rootfs: string; boot?: string },
    extra: string[] = [],
  ) {
    const r = await abota(...buildArgv(version, out, img, extra));
    expect(r.code, r.stdout + r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { deltas: DeltaOutcome[] };
  }

  const manifestOf = async (dir: string): Promise<ReleaseManifest> =>
    JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as ReleaseManifest;
  const deltasOf = async (dir: string): Promise<DeltasFile> =>
    parseDeltasFile(JSON.parse(await readFile(join(dir, 'deltas.json'), 'utf8')), 'deltas.json');
  const blobPath = (dir: string, digest: string): string => join(dir, 'blobs', 'sha256', digest.slice(7));
  const leftovers = async (): Promise<string[]> =>
    (await readdir(work)).filter((n) => n.includes('.partial-') || n.includes('.add-delta-'));
  const verify = (dir: string) =>
    abota('release', 'verify', dir, '--root', join(keys, 'root.json'), '--json');

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'abota-deltas-'));
    const mkfs = findTool('mkfs.ext4');
    // v1: a synthetic tree; v2: the same plus new files and one changed file; v3: more of both.
    const tree = join(work, 'tree');
    await writeSyntheticTree(tree, 6 * 1024 * 1024, 1);
    const boot = randomBytes(BOOT_BYTES);
    for (const [name, extraSeed] of [
      ['v1', 0],
      ['v2', 2],
      ['v3', 3],
    ] as const) {
      if (extraSeed > 0) {
        await writeSyntheticTree(join(tree, `opt/extra${extraSeed}`), 512 * 1024, extraSeed);
        await writeFile(join(tree, 'etc', 'os-release'), `VERSION=${name}\n`);
        randomBytes(4096).copy(boot, 64 * 1024 * extraSeed);
      }
      images[name].rootfs = join(work, `${name}.img`);
      mkfsExt4(tree, images[name].rootfs, IMAGE_MIB, mkfs);
      images[name].boot = join(work, `${name}-boot.img`);
      await writeFile(images[name].boot, boot);
    }
    keys = join(work, 'keys');
    expect((await abota('keys', 'init', keys, '--json')).code).toBe(0);
    v1 = join(work, 'r1');
    await build('1.0.0', v1, images.v1);
    v2 = join(work, 'r2');
    v2Build = await build('1.1.0', v2, images.v2, ['--delta-from', v1]);
  }, 180_000);

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  describe('build --delta-from', () => {
    it('writes deltas.json per the contract: one delta per image in both releases, payloads as blobs', async () => {
      const m1 = await manifestOf(v1);
      const m2 = await manifestOf(v2);
      const file = await deltasOf(v2);
      expect(file.schemaVersion).toBe(1);
      expect(file.deltas.map((d) => d.image).sort()).toEqual(['boot', 'rootfs']);
      for (const d of file.deltas) {
        expect(d).toEqual({
          image: d.image,
          sourceVersion: '1.0.0',
          sourceRootHash: m1.images[d.image]!.verity.rootHash,
          sourceSizeBytes: m1.images[d.image]!.sizeBytes,
          targetRootHash: m2.images[d.image]!.verity.rootHash,
          digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
          sizeBytes: (await readFile(blobPath(v2, d.digest))).length,
        });
        expect(d.sizeBytes).toBeLessThan(m2.images[d.image]!.artifact.sizeBytes);
      }
      expect(v2Build.deltas.map((d) => d.status)).toEqual(['added', 'added']);
      expect(await leftovers()).toEqual([]);
      // No scratch files in the release.
      expect((await readdir(v2)).sort()).toEqual([
        'blobs',
        'deltas.json',
        'manifest.json',
        'manifest.jws',
        'root.json',
      ]);
    });

    it('abota delta apply of each delta onto the v1 image reproduces the v2 image byte for byte, every block verified', async () => {
      const m2 = await manifestOf(v2);
      for (const d of (await deltasOf(v2)).deltas) {
        const out = join(work, `applied-${d.image}.img`);
        const image = m2.images[d.image]!;
        const r = await abota(
          'delta',
          'apply',
          images.v1[d.image],
          blobPath(v2, d.digest),
          out,
          '--root-hash',
          image.verity.rootHash,
          '--hash-file',
          blobPath(v2, image.verity.hashTree.digest),
          '--json',
        );
        expect(r.code, r.stdout).toBe(0);
        expect(JSON.parse(r.stdout)).toMatchObject({
          verifiedBy: 'dm-verity',
          blocksWritten: image.sizeBytes / 4096,
        });
        expect((await readFile(out)).equals(await readFile(images.v2[d.image]))).toBe(true);
        await rm(out);
      }
    });

    it('release verify accepts the release and reports each delta it checked', async () => {
      const r = await verify(v2);
      expect(r.code, r.stdout).toBe(0);
      const report = JSON.parse(r.stdout) as { deltas: (DeltaEntry & { ratioToArtifact: number })[] };
      expect(report.deltas).toHaveLength(2);
      for (const d of report.deltas) expect(d.ratioToArtifact).toBeLessThan(1);
      const text = await abota('release', 'verify', v2, '--root', join(keys, 'root.json'));
      expect(text.stdout).toContain('delta rootfs from 1.0.0');
    });

    it('release inspect lists the deltas (text and --json)', async () => {
      const file = await deltasOf(v2);
      const text = await abota('release', 'inspect', v2);
      expect(text.code).toBe(0);
      expect(text.stdout).toContain('deltas            2');
      for (const d of file.deltas) {
        expect(text.stdout).toContain(d.digest);
        expect(text.stdout).toContain(d.sourceRootHash);
      }
      const json = JSON.parse((await abota('release', 'inspect', v2, '--json')).stdout) as {
        deltas: (DeltaEntry & { ratioToArtifact: number })[];
      };
      expect(json.deltas.map(({ ratioToArtifact: _, ...d }) => d)).toEqual(file.deltas);
      expect(json.deltas.every((d) => d.ratioToArtifact > 0 && d.ratioToArtifact < 1)).toBe(true);
    });

    it('a release built without --delta-from has no deltas.json; verify and inspect report none', async () => {
      expect((await readdir(v1)).includes('deltas.json')).toBe(false);
      expect(JSON.parse((await verify(v1)).stdout)).toMatchObject({ ok: true, deltas: [] });
      expect(JSON.parse((await abota('release', 'inspect', v1, '--json')).stdout)).toMatchObject({
        deltas: [],
      });
    });
  });

  describe('add-delta', () => {
    it('adds deltas to a built release, lists sizes and ratios, and a second run is a no-op', async () => {
      const v3 = join(work, 'r3');
      await build('1.2.0', v3, images.v3);
      const r = await abota(
        'release',
        'add-delta',
        v3,
        '--from',
        v1,
        '--from',
        v2,
        '--delta-quality',
        '5',
        '--json',
      );
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { deltas: DeltaOutcome[]; listed: number };
      expect(out.listed).toBe(4);
      expect(out.deltas.map((d) => `${d.image}@${d.sourceVersion}:${d.status}`).sort()).toEqual([
        'boot@1.0.0:added',
        'boot@1.1.0:added',
        'rootfs@1.0.0:added',
        'rootfs@1.1.0:added',
      ]);
      for (const d of out.deltas) {
        expect(d.ratioToArtifact).toBeCloseTo(d.sizeBytes / d.artifactSizeBytes, 3);
        expect(d.ratioToArtifact).toBeLessThan(1);
      }
      const listed = await readFile(join(v3, 'deltas.json'), 'utf8');
      expect(parseDeltasFile(JSON.parse(listed), 'deltas.json').deltas).toHaveLength(4);
      expect((await verify(v3)).code).toBe(0);

      // The delta from v2 applies onto v2's image and gives v3's.
      const fromV2 = out.deltas.find((d) => d.image === 'rootfs' && d.sourceVersion === '1.1.0')!;
      const applied = join(work, 'applied-v3.img');
      const a = await abota(
        'delta',
        'apply',
        images.v2.rootfs,
        blobPath(v3, fromV2.digest!),
        applied,
        '--json',
      );
      expect(a.code, a.stdout).toBe(0);
      expect((await readFile(applied)).equals(await readFile(images.v3.rootfs))).toBe(true);
      await rm(applied);

      const again = await abota('release', 'add-delta', v3, '--from', v2, '--json');
      expect(again.code, again.stdout).toBe(0);
      expect((JSON.parse(again.stdout) as { deltas: DeltaOutcome[] }).deltas.map((d) => d.status)).toEqual([
        'exists',
        'exists',
      ]);
      expect(await readFile(join(v3, 'deltas.json'), 'utf8')).toBe(listed);
      expect(await leftovers()).toEqual([]);
    });

    it('skips (and says so) a delta that is not smaller than the full artifact', async () => {
      // Unrelated random images: nothing to copy, and random bytes do not compress.
      const a = join(work, 'rand-a.img');
      const b = join(work, 'rand-b.img');
      await writeFile(a, randomBytes(2 * 1024 * 1024));
      await writeFile(b, randomBytes(2 * 1024 * 1024));
      const ra = join(work, 'rand-1');
      const rb = join(work, 'rand-2');
      await build('1.0.0', ra, { rootfs: a });
      await build('2.0.0', rb, { rootfs: b });
      const r = await abota('release', 'add-delta', rb, '--from', ra, '--delta-quality', '5', '--json');
      expect(r.code, r.stdout).toBe(0);
      const [d] = (JSON.parse(r.stdout) as { deltas: DeltaOutcome[] }).deltas;
      expect(d).toMatchObject({ status: 'skipped-not-smaller' });
      expect(d!.sizeBytes).toBeGreaterThanOrEqual(d!.artifactSizeBytes);
      expect(d!.digest).toBeUndefined();
      expect((await readdir(rb)).includes('deltas.json')).toBe(false);
      expect((await readdir(join(rb, 'blobs', 'sha256'))).length).toBe(2);
      const text = await abota('release', 'add-delta', rb, '--from', ra, '--delta-quality', '5');
      expect(text.stdout).toContain('SKIPPED');
      expect(await leftovers()).toEqual([]);
    });

    it('refuses a release whose own manifest.json or artifact was tampered with (exit 3), changing nothing', async () => {
      const json = join(work, 'r3-tampered-json');
      await build('1.2.0', json, images.v3);
      const text = await readFile(join(json, 'manifest.json'), 'utf8');
      await writeFile(
        join(json, 'manifest.json'),
        text.replace('"securityVersion":1', '"securityVersion":7'),
      );
      const r1 = await abota('release', 'add-delta', json, '--from', v1, '--json');
      expect(r1.code).toBe(3);
      expect(errorOf(r1).code).toBe('ERR_RELEASE_MANIFEST_MISMATCH');

      const blob = join(work, 'r3-tampered-artifact');
      await build('1.2.0', blob, images.v3);
      const m = await manifestOf(blob);
      const artifact = blobPath(blob, m.images.rootfs.artifact.digest);
      const bytes = await readFile(artifact);
      bytes[2000] = bytes[2000]! ^ 0x04;
      await writeFile(artifact, bytes);
      const before = (await readdir(join(blob, 'blobs', 'sha256'))).sort();
      const r2 = await abota('release', 'add-delta', blob, '--from', v1, '--delta-quality', '5', '--json');
      expect(r2.code).toBe(3);
      expect(errorOf(r2)).toMatchObject({ code: 'ERR_RELEASE_BLOB_DIGEST_MISMATCH' });
      expect(errorOf(r2).message).toContain('rootfs artifact');
      expect((await readdir(join(blob, 'blobs', 'sha256'))).sort()).toEqual(before);
      expect((await readdir(blob)).includes('deltas.json')).toBe(false);
      expect(await leftovers()).toEqual([]);
    });

    it('Ctrl-C during add-delta leaves deltas.json as it was and removes the scratch directory', async () => {
      const v3 = join(work, 'r3-interrupt');
      await build('1.2.0', v3, images.v3);
      const interrupt = new AbortController();
      const err = await addDeltas({
        dir: v3,
        from: [v1],
        quality: 5,
        signal: interrupt.signal,
        onProgress: (done, total) => {
          // Inside the diff (after both images were decompressed).
          if (done > total / 2) interrupt.abort();
        },
      }).catch((e: unknown) => e);
      expect((err as { code?: string }).code).toBe('ERR_RELEASE_INTERRUPTED');
      expect((await readdir(v3)).includes('deltas.json')).toBe(false);
      expect(await leftovers()).toEqual([]);
    });
  });

  describe('previous releases are verified before use', () => {
    async function refusedBuild(extra: string[], version = '1.1.0') {
      const out = join(work, `refused-${Math.random().toString(36).slice(2)}`);
      const r = await abota(...buildArgv(version, out, images.v2, extra));
      expect(r.code).not.toBe(0);
      expect((await readdir(work)).includes(out.split('/').pop()!)).toBe(false);
      expect(await leftovers()).toEqual([]);
      return { ...errorOf(r), exit: r.code };
    }

    it('a previous release of another product → ERR_RELEASE_DELTA_SOURCE_PRODUCT_MISMATCH (exit 2)', async () => {
      const other = join(work, 'other-product');
      const r = await abota(...buildArgv('1.0.0', other, { rootfs: images.v1.rootfs }, [], 'other-vm'));
      expect(r.code, r.stdout).toBe(0);
      const e = await refusedBuild(['--delta-from', other]);
      expect(e).toMatchObject({ code: 'ERR_RELEASE_DELTA_SOURCE_PRODUCT_MISMATCH', exit: 2 });
      expect(e.message).toContain('other-vm');
    });

    it('a previous release with a tampered manifest.jws or manifest.json → ERR_RELEASE_DELTA_SOURCE_INVALID naming the check', async () => {
      const sig = join(work, 'tampered-sig');
      await cp(v1, sig, { recursive: true });
      const jws = JSON.parse(await readFile(join(sig, 'manifest.jws'), 'utf8')) as GeneralJws;
      const s0 = jws.signatures[0]!;
      s0.signature = `${s0.signature[0] === 'A' ? 'B' : 'A'}${s0.signature.slice(1)}`;
      await writeFile(join(sig, 'manifest.jws'), JSON.stringify(jws));
      const e1 = await refusedBuild(['--delta-from', sig]);
      expect(e1).toMatchObject({ code: 'ERR_RELEASE_DELTA_SOURCE_INVALID', exit: 3 });
      expect(e1.message).toContain('ERR_SIGNATURE_INVALID');

      const json = join(work, 'tampered-json');
      await cp(v1, json, { recursive: true });
      const text = await readFile(join(json, 'manifest.json'), 'utf8');
      await writeFile(join(json, 'manifest.json'), text.replace('"version":"1.0.0"', '"version":"0.9.0"'));
      const e2 = await refusedBuild(['--delta-from', json]);
      expect(e2.code).toBe('ERR_RELEASE_DELTA_SOURCE_INVALID');
      expect(e2.message).toContain('ERR_RELEASE_MANIFEST_MISMATCH');
    });

    it("a previous release signed under somebody else's root → ERR_RELEASE_DELTA_SOURCE_INVALID", async () => {
      const otherKeys = join(work, 'stranger-keys');
      expect((await abota('keys', 'init', otherKeys, '--json')).code).toBe(0);
      const stranger = join(work, 'stranger');
      const r = await abota(
        ...buildArgv('1.0.0', stranger, { rootfs: images.v1.rootfs }, [], 'eflow-vm', otherKeys),
      );
      expect(r.code, r.stdout).toBe(0);
      const e = await refusedBuild(['--delta-from', stranger]);
      expect(e.code).toBe('ERR_RELEASE_DELTA_SOURCE_INVALID');
      expect(e.message).toContain('ERR_THRESHOLD_NOT_MET');
    });

    it('a previous release that is not older → ERR_RELEASE_DELTA_SOURCE_NOT_OLDER (equal or newer; build and add-delta)', async () => {
      expect(await refusedBuild(['--delta-from', v2], '1.1.0')).toMatchObject({
        code: 'ERR_RELEASE_DELTA_SOURCE_NOT_OLDER',
        exit: 2,
      });
      expect((await refusedBuild(['--delta-from', v2], '1.0.5')).code).toBe(
        'ERR_RELEASE_DELTA_SOURCE_NOT_OLDER',
      );
      const before = await readdir(join(v1, 'blobs', 'sha256'));
      const r = await abota('release', 'add-delta', v1, '--from', v2, '--json');
      expect(r.code).toBe(2);
      expect(errorOf(r).code).toBe('ERR_RELEASE_DELTA_SOURCE_NOT_OLDER');
      expect(await readdir(join(v1, 'blobs', 'sha256'))).toEqual(before);
      expect((await readdir(v1)).includes('deltas.json')).toBe(false);
    });

    it('a previous release whose artifact is corrupted → ERR_RELEASE_DELTA_SOURCE_INVALID, nothing left behind', async () => {
      const m1 = await manifestOf(v1);
      const flipped = join(work, 'corrupt-artifact');
      await cp(v1, flipped, { recursive: true });
      const artifact = blobPath(flipped, m1.images.rootfs.artifact.digest);
      const bytes = await readFile(artifact);
      bytes[1000] = bytes[1000]! ^ 0x01;
      await writeFile(artifact, bytes);
      const e1 = await refusedBuild(['--delta-from', flipped]);
      expect(e1.code).toBe('ERR_RELEASE_DELTA_SOURCE_INVALID');
      expect(e1.message).toContain('ERR_RELEASE_BLOB_DIGEST_MISMATCH');

      // Correctly signed (a publisher bug or a stolen key) but one data block differs from the
      // verity tree: caught block by block while the image is decompressed.
      const resigned = join(work, 'resigned-artifact');
      await cp(v1, resigned, { recursive: true });
      const image = await readFile(images.v1.rootfs);
      image[4096 * 9 + 17] = image[4096 * 9 + 17]! ^ 0xff;
      const compressed = zstdCompressSync(image);
      const hex = createHash('sha256').update(compressed).digest('hex');
      await rm(blobPath(resigned, m1.images.rootfs.artifact.digest));
      await writeFile(join(resigned, 'blobs', 'sha256', hex), compressed);
      const m = structuredClone(m1);
      m.images.rootfs.artifact.digest = `sha256:${hex}`;
      m.images.rootfs.artifact.sizeBytes = compressed.length;
      const { root, keys: signing } = await loadRoleSigningKeys(keys, 'release');
      const jws = await signManifest(m, signing, root);
      await writeFile(join(resigned, 'manifest.jws'), JSON.stringify(jws));
      await writeFile(
        join(resigned, 'manifest.json'),
        Buffer.from(jws.payload, 'base64url').toString('utf8'),
      );
      const e2 = await refusedBuild(['--delta-from', resigned]);
      expect(e2.code).toBe('ERR_RELEASE_DELTA_SOURCE_INVALID');
      expect(e2.message).toContain('ERR_VERITY_DATA_CORRUPT');
      expect(e2.message).toContain('data block 9');
    });

    it('Ctrl-C during the delta step of a build removes the partial release', async () => {
      const out = join(work, 'interrupted-build');
      const interrupt = new AbortController();
      let phases = 0;
      const err = await buildRelease({
        images: { rootfs: images.v2.rootfs },
        product: 'eflow-vm',
        compatible: ['hyperv-x64'],
        version: '1.1.0',
        securityVersion: 1,
        expires: '1d',
        keysDir: keys,
        outDir: out,
        deltaFrom: [v1],
        deltaQuality: 5,
        signal: interrupt.signal,
        onDeltaProgress: (done, total) => {
          phases += 1;
          if (done > total * 0.6) interrupt.abort();
        },
      }).catch((e: unknown) => e);
      expect(phases).toBeGreaterThan(0);
      expect((err as { code?: string }).code).toBe('ERR_RELEASE_INTERRUPTED');
      expect((await readdir(work)).includes('interrupted-build')).toBe(false);
      expect(await leftovers()).toEqual([]);
    });
  });

  describe('release verify refuses dishonest deltas (exit 3)', () => {
    async function copyV2(name: string): Promise<string> {
      const to = join(work, name);
      await cp(v2, to, { recursive: true });
      return to;
    }

    async function editDeltas(dir: string, edit: (d: DeltaEntry[]) => void): Promise<void> {
      const file = await deltasOf(dir);
      edit(file.deltas);
      await writeFile(join(dir, 'deltas.json'), JSON.stringify(file));
    }

    async function rejected(dir: string): Promise<{ code: string; message: string }> {
      const r = await verify(dir);
      expect(r.code, r.stdout).toBe(3);
      return errorOf(r);
    }

    it('a flipped byte in a delta blob → ERR_RELEASE_BLOB_DIGEST_MISMATCH naming the delta', async () => {
      const dir = await copyV2('tampered-delta-blob');
      const d = (await deltasOf(dir)).deltas.find((e) => e.image === 'rootfs')!;
      const bytes = await readFile(blobPath(dir, d.digest));
      bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0x10;
      await writeFile(blobPath(dir, d.digest), bytes);
      const e = await rejected(dir);
      expect(e.code).toBe('ERR_RELEASE_BLOB_DIGEST_MISMATCH');
      expect(e.message).toContain('rootfs delta from 1.0.0');
    });

    it('a missing delta blob → ERR_RELEASE_BLOB_MISSING', async () => {
      const dir = await copyV2('missing-delta-blob');
      await rm(blobPath(dir, (await deltasOf(dir)).deltas[0]!.digest));
      expect((await rejected(dir)).code).toBe('ERR_RELEASE_BLOB_MISSING');
    });

    it('deltas.json lying about the source root hash or size → ERR_RELEASE_DELTA_INVALID', async () => {
      const dir = await copyV2('lying-source');
      await editDeltas(dir, (ds) => {
        ds[0]!.sourceRootHash = 'ab'.repeat(32);
      });
      const e = await rejected(dir);
      expect(e.code).toBe('ERR_RELEASE_DELTA_INVALID');
      expect(e.message).toContain('source root hash');

      const dir2 = await copyV2('lying-source-size');
      await editDeltas(dir2, (ds) => {
        ds[0]!.sourceSizeBytes += 4096;
      });
      expect((await rejected(dir2)).message).toContain('source size');
    });

    it('deltas.json naming another target root hash than the signed manifest → ERR_RELEASE_DELTA_INVALID', async () => {
      const dir = await copyV2('lying-target');
      await editDeltas(dir, (ds) => {
        ds[0]!.targetRootHash = 'cd'.repeat(32);
      });
      const e = await rejected(dir);
      expect(e.code).toBe('ERR_RELEASE_DELTA_INVALID');
      expect(e.message).toContain('signed manifest');
    });

    it("a real delta for another release, listed with its true digest, is refused: its header's target is not this release", async () => {
      const dir = await copyV2('foreign-delta');
      const v3 = join(work, 'r3');
      const foreign = (await deltasOf(v3)).deltas.find(
        (d) => d.image === 'rootfs' && d.sourceVersion === '1.0.0',
      )!;
      await cp(blobPath(v3, foreign.digest), blobPath(dir, foreign.digest));
      await editDeltas(dir, (ds) => {
        const mine = ds.find((d) => d.image === 'rootfs')!;
        mine.digest = foreign.digest;
        mine.sizeBytes = foreign.sizeBytes;
      });
      const e = await rejected(dir);
      expect(e.code).toBe('ERR_RELEASE_DELTA_INVALID');
      expect(e.message).toContain('target root hash');
    });

    it('a deltas.json that is not the schema → ERR_RELEASE_DELTAS_INVALID with the field path; inspect still shows the release', async () => {
      const dir = await copyV2('bad-deltas-json');
      await editDeltas(dir, (ds) => {
        (ds[1] as unknown as Record<string, unknown>)['sizeBytes'] = '12';
      });
      const e = await rejected(dir);
      expect(e.code).toBe('ERR_RELEASE_DELTAS_INVALID');
      expect(e.message).toContain('deltas[1].sizeBytes');
      const i = await abota('release', 'inspect', dir);
      expect(i.code).toBe(0);
      expect(i.stdout).toContain('WARNING: deltas.json unreadable');
      await writeFile(join(dir, 'deltas.json'), '{"schemaVersion":1,"deltas":[');
      expect((await rejected(dir)).code).toBe('ERR_RELEASE_DELTAS_INVALID');
    });
  });

  it('--help documents the new flags and command', async () => {
    const b = await abota('release', 'build', '--help');
    const a = await abota('release', 'add-delta', '--help');
    expect(b.stdout).toContain('--delta-from');
    expect(b.stdout).toContain('--delta-quality');
    expect(a.stdout).toContain('--from');
    expect(a.stdout).toContain('--root');
  });

  it('a bad --delta-quality is a usage error before any work', async () => {
    const out = join(work, 'bad-quality');
    const r = await abota(...buildArgv('1.1.0', out, images.v2, ['--delta-quality', '12']));
    expect(r.code).toBe(2);
    expect(errorOf(r).code).toBe('ERR_RELEASE_USAGE');
  });
});
