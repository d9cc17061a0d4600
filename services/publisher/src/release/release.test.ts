// `abota release build|verify|inspect`, in-process through main(): a release built from a real
// ext4 image (mkfs.ext4 -d) is accepted by our verifier and by `veritysetup verify`; tampering
// with any part (artifact, hash tree, signature, manifest.json, re-signed lies) is refused with
// its own code; bad input leaves no release directory and no temporary files behind.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type GeneralJws, type ReleaseManifest, signManifest } from '@abota/manifest';
import { describeWithTool, findTool } from '@abota/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../test-support/run-cli.js';
import { mkfsExt4, writeSyntheticTree } from '../../bench/ext4-image.js';
import { loadRoleSigningKeys } from '../keys/trust-root.js';
import { buildRelease } from './build.js';

const abota = runCli;

function errorCode(r: { stdout: string }): string {
  return (JSON.parse(r.stdout) as { error: { code: string } }).error.code;
}

/** `release verify` refused the release: exit 3, and the code that says why. */
function rejection(r: { code: number; stdout: string }): string {
  expect(r.code, r.stdout).toBe(3);
  return errorCode(r);
}

const IMAGE_MIB = 32;

describeWithTool('mkfs.ext4', 'e2fsprogs', 'abota release on a real ext4 image', () => {
  let work: string;
  let image: string;
  let keys: string;
  let release: string;
  let buildOutput: Record<string, unknown>;

  const buildArgs = (out: string, overrides: Record<string, string> = {}): string[] => {
    const o: Record<string, string> = {
      '--image': image,
      '--product': 'eflow-vm',
      '--version': '1.2.0',
      '--security-version': '3',
      '--expires': '180d',
      '--keys': keys,
      '--out': out,
      ...overrides,
    };
    const argv = ['release', 'build'];
    for (const [k, v] of Object.entries(o)) argv.push(k, v);
    argv.push('--compatible', 'hyperv-x64', 'qemu-x64', '--json');
    return argv;
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'abota-release-'));
    const tree = join(work, 'tree');
    await writeSyntheticTree(tree, 16 * 1024 * 1024);
    image = join(work, 'rootfs.img');
    mkfsExt4(tree, image, IMAGE_MIB, findTool('mkfs.ext4'));
    keys = join(work, 'keys');
    const init = await abota(
      'keys',
      'init',
      keys,
      '--release-keys',
      '3',
      '--release-threshold',
      '2',
      '--json',
    );
    expect(init.code, init.stdout + init.stderr).toBe(0);
    release = join(work, 'release');
    const built = await abota(...buildArgs(release));
    expect(built.code, built.stdout + built.stderr).toBe(0);
    buildOutput = JSON.parse(built.stdout) as Record<string, unknown>;
  }, 120_000);

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  async function copyRelease(name: string): Promise<string> {
    const to = join(work, name);
    await cp(release, to, { recursive: true });
    return to;
  }

  async function manifestOf(dir: string): Promise<ReleaseManifest> {
    return JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as ReleaseManifest;
  }

  async function flipByte(path: string, at: number): Promise<void> {
    const bytes = await readFile(path);
    bytes[at] = bytes[at]! ^ 0x01;
    await writeFile(path, bytes);
  }

  it('writes the CONTRACTS.md release layout: manifest.json, manifest.jws, root.json, content-addressed blobs', async () => {
    const m = await manifestOf(release);
    const rootfs = m.images.rootfs;
    expect(m).toMatchObject({
      schemaVersion: 1,
      product: 'eflow-vm',
      compatible: ['hyperv-x64', 'qemu-x64'],
      version: '1.2.0',
      securityVersion: 3,
    });
    expect(Date.parse(m.expires) - Date.parse(m.created)).toBe(180 * 86_400_000);
    expect(rootfs.sizeBytes).toBe(IMAGE_MIB * 1024 * 1024);
    expect(rootfs.verity).toMatchObject({
      hashType: 1,
      algorithm: 'sha256',
      dataBlockSize: 4096,
      hashBlockSize: 4096,
      dataBlocks: (IMAGE_MIB * 1024 * 1024) / 4096,
      superblock: true,
      hashOffset: 0,
    });
    expect(rootfs.verity.salt).toMatch(/^[0-9a-f]{64}$/);
    expect(rootfs.artifact).toMatchObject({ codec: 'zstd', uncompressedSizeBytes: rootfs.sizeBytes });
    const blobs = (await readdir(join(release, 'blobs', 'sha256'))).sort();
    expect(blobs).toEqual([rootfs.artifact.digest.slice(7), rootfs.verity.hashTree.digest.slice(7)].sort());
    for (const name of blobs) {
      const bytes = await readFile(join(release, 'blobs', 'sha256', name));
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(name);
    }
    const jws = JSON.parse(await readFile(join(release, 'manifest.jws'), 'utf8')) as GeneralJws;
    expect(Buffer.from(jws.payload, 'base64url').toString('utf8')).toBe(
      await readFile(join(release, 'manifest.json'), 'utf8'),
    );
    expect(jws.signatures).toHaveLength(3);
    expect(await readFile(join(release, 'root.json'), 'utf8')).toBe(
      await readFile(join(keys, 'root.json'), 'utf8'),
    );
    expect((await readdir(work)).filter((n) => n.includes('.partial-'))).toEqual([]);
  });

  it('prints a --json summary for CI with digests, root hash, sizes, ratio and durations', () => {
    const s = buildOutput as {
      ok: boolean;
      manifestDigest: string;
      images: { rootfs: { rootHash: string; compressionRatio: number; artifact: { sizeBytes: number } } };
      durationsMs: { total: number };
    };
    expect(s.ok).toBe(true);
    expect(s.manifestDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(s.images.rootfs.rootHash).toMatch(/^[0-9a-f]{64}$/);
    expect(s.images.rootfs.compressionRatio).toBeGreaterThan(1.5);
    expect(s.durationsMs.total).toBeGreaterThan(0);
  });

  it('release verify accepts the release against the keys directory root.json', async () => {
    const r = await abota('release', 'verify', release, '--root', join(keys, 'root.json'), '--json');
    expect(r.code, r.stdout).toBe(0);
    const report = JSON.parse(r.stdout) as {
      ok: boolean;
      signedBy: string[];
      images: { rootfs: { blocksVerified: number } };
    };
    expect(report.ok).toBe(true);
    expect(report.signedBy).toHaveLength(3);
    expect(report.images.rootfs.blocksVerified).toBe((IMAGE_MIB * 1024 * 1024) / 4096);
  });

  describeWithTool('veritysetup', 'cryptsetup-bin', 'against the reference tool', (veritysetup) => {
    it('veritysetup verify accepts the image with the hash-tree blob and the signed root hash', async () => {
      const m = await manifestOf(release);
      const tree = join(release, 'blobs', 'sha256', m.images.rootfs.verity.hashTree.digest.slice(7));
      const ok = spawnSync(veritysetup, ['verify', image, tree, m.images.rootfs.verity.rootHash], {
        encoding: 'utf8',
      });
      expect(ok.status, ok.stderr).toBe(0);
      const dump = spawnSync(veritysetup, ['dump', tree], { encoding: 'utf8' });
      expect(dump.stdout).toContain(m.images.rootfs.verity.salt);
      expect(dump.stdout).toContain(m.images.rootfs.verity.uuid);
      const wrong = spawnSync(veritysetup, ['verify', image, tree, '00'.repeat(32)], { encoding: 'utf8' });
      expect(wrong.status).not.toBe(0);
    });
  });

  it('release inspect prints product, version, security version, expiry, root hash, codec, ratio and signers', async () => {
    const m = await manifestOf(release);
    const text = await abota('release', 'inspect', release);
    expect(text.code).toBe(0);
    for (const s of [
      'eflow-vm',
      '1.2.0',
      'security version  3',
      m.expires,
      m.images.rootfs.verity.rootHash,
      'zstd',
      'ratio',
      'NOT verified',
    ]) {
      expect(text.stdout).toContain(s);
    }
    const json = await abota('release', 'inspect', release, '--json');
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, manifest: m, manifestJsonMatches: true });
  });

  it('release verify and inspect on a directory that is not a release say which file is missing', async () => {
    const empty = join(work, 'not-a-release');
    await mkdir(empty, { recursive: true });
    const v = await abota('release', 'verify', empty, '--root', join(keys, 'root.json'), '--json');
    expect(rejection(v)).toBe('ERR_RELEASE_DIR_INVALID');
    expect(v.stdout).toContain('root.json');
    const i = await abota('release', 'inspect', empty, '--json');
    expect(i.code).not.toBe(0);
    expect(errorCode(i)).toBe('ERR_RELEASE_DIR_INVALID');
    expect(i.stdout).toContain('manifest.jws');
  });

  describe('verify refuses tampered releases', () => {
    it('a flipped byte in the compressed artifact → ERR_RELEASE_BLOB_DIGEST_MISMATCH (exit 3)', async () => {
      const dir = await copyRelease('tamper-artifact');
      const m = await manifestOf(dir);
      await flipByte(join(dir, 'blobs', 'sha256', m.images.rootfs.artifact.digest.slice(7)), 1000);
      const r = await abota('release', 'verify', dir, '--root', join(keys, 'root.json'), '--json');
      expect(rejection(r)).toBe('ERR_RELEASE_BLOB_DIGEST_MISMATCH');
      expect(r.stdout).toContain('rootfs artifact');
    });

    it('a flipped byte in the hash tree → ERR_RELEASE_BLOB_DIGEST_MISMATCH naming the hash tree', async () => {
      const dir = await copyRelease('tamper-tree');
      const m = await manifestOf(dir);
      await flipByte(join(dir, 'blobs', 'sha256', m.images.rootfs.verity.hashTree.digest.slice(7)), 8192 + 5);
      const r = await abota('release', 'verify', dir, '--root', join(keys, 'root.json'), '--json');
      expect(rejection(r)).toBe('ERR_RELEASE_BLOB_DIGEST_MISMATCH');
      expect(r.stdout).toContain('rootfs hash tree');
    });

    it('a flipped byte in a signature of manifest.jws → ERR_SIGNATURE_INVALID', async () => {
      const dir = await copyRelease('tamper-jws');
      const jws = JSON.parse(await readFile(join(dir, 'manifest.jws'), 'utf8')) as GeneralJws;
      const sig = jws.signatures[0]!;
      sig.signature = `${sig.signature[0] === 'A' ? 'B' : 'A'}${sig.signature.slice(1)}`;
      await writeFile(join(dir, 'manifest.jws'), JSON.stringify(jws));
      const r = await abota('release', 'verify', dir, '--root', join(keys, 'root.json'), '--json');
      expect(rejection(r)).toBe('ERR_SIGNATURE_INVALID');
    });

    it('a flipped byte in the signed payload of manifest.jws → ERR_SIGNATURE_INVALID', async () => {
      const dir = await copyRelease('tamper-payload');
      const path = join(dir, 'manifest.jws');
      const text = await readFile(path, 'utf8');
      const at = text.indexOf('"payload":"') + 40;
      await writeFile(path, text.slice(0, at) + (text[at] === 'A' ? 'B' : 'A') + text.slice(at + 1));
      const r = await abota('release', 'verify', dir, '--root', join(keys, 'root.json'), '--json');
      expect(rejection(r)).toBe('ERR_SIGNATURE_INVALID');
    });

    it('an edited manifest.json (unsigned copy) → ERR_RELEASE_MANIFEST_MISMATCH', async () => {
      const dir = await copyRelease('tamper-json');
      const text = await readFile(join(dir, 'manifest.json'), 'utf8');
      await writeFile(join(dir, 'manifest.json'), text.replace('"securityVersion":3', '"securityVersion":9'));
      const r = await abota('release', 'verify', dir, '--root', join(keys, 'root.json'), '--json');
      expect(rejection(r)).toBe('ERR_RELEASE_MANIFEST_MISMATCH');
    });

    it('a missing blob → ERR_RELEASE_BLOB_MISSING', async () => {
      const dir = await copyRelease('missing-blob');
      const m = await manifestOf(dir);
      await rm(join(dir, 'blobs', 'sha256', m.images.rootfs.verity.hashTree.digest.slice(7)));
      const r = await abota('release', 'verify', dir, '--root', join(keys, 'root.json'), '--json');
      expect(rejection(r)).toBe('ERR_RELEASE_BLOB_MISSING');
    });

    it('a release checked after its expiry (--now) → ERR_EXPIRED', async () => {
      const m = await manifestOf(release);
      const r = await abota(
        'release',
        'verify',
        release,
        '--root',
        join(keys, 'root.json'),
        '--now',
        m.expires,
        '--json',
      );
      expect(rejection(r)).toBe('ERR_EXPIRED');
    });

    it("a release checked against somebody else's trust root → ERR_THRESHOLD_NOT_MET", async () => {
      const other = join(work, 'other-keys');
      expect((await abota('keys', 'init', other, '--json')).code).toBe(0);
      const r = await abota('release', 'verify', release, '--root', join(other, 'root.json'), '--json');
      expect(rejection(r)).toBe('ERR_THRESHOLD_NOT_MET');
    });

    it('a missing --root file or a bad --now is a usage error (exit 2), not a rejected release', async () => {
      const missing = await abota('release', 'verify', release, '--root', join(work, 'nope.json'), '--json');
      expect(missing.code).toBe(2);
      expect(errorCode(missing)).toBe('ERR_RELEASE_USAGE');
      const badNow = await abota(
        'release',
        'verify',
        release,
        '--root',
        join(keys, 'root.json'),
        '--now',
        'tomorrow',
        '--json',
      );
      expect(badNow.code).toBe(2);
      expect(errorCode(badNow)).toBe('ERR_RELEASE_USAGE');
    });

    // The signature covers digests, not content: a publisher bug (or a stolen key) can sign
    // blobs that do not match the root hash. The per-block check still catches it.
    async function resignWith(dir: string, edit: (m: ReleaseManifest) => void): Promise<void> {
      const m = await manifestOf(dir);
      edit(m);
      const { root, keys: signing } = await loadRoleSigningKeys(keys, 'release');
      const jws = await signManifest(m, signing, root);
      await writeFile(join(dir, 'manifest.jws'), JSON.stringify(jws));
      await writeFile(join(dir, 'manifest.json'), Buffer.from(jws.payload, 'base64url').toString('utf8'));
    }

    async function replaceBlob(dir: string, oldDigest: string, bytes: Buffer): Promise<string> {
      await rm(join(dir, 'blobs', 'sha256', oldDigest.slice(7)));
      const hex = createHash('sha256').update(bytes).digest('hex');
      await writeFile(join(dir, 'blobs', 'sha256', hex), bytes);
      return `sha256:${hex}`;
    }

    it('a correctly signed artifact whose data block differs from the tree → ERR_VERITY_DATA_CORRUPT', async () => {
      const dir = await copyRelease('resigned-data');
      const bad = await readFile(image);
      bad[4096 * 7 + 100] = bad[4096 * 7 + 100]! ^ 0xff;
      const { zstdCompressSync } = await import('node:zlib');
      const compressed = zstdCompressSync(bad);
      const m0 = await manifestOf(dir);
      const digest = await replaceBlob(dir, m0.images.rootfs.artifact.digest, compressed);
      await resignWith(dir, (m) => {
        m.images.rootfs.artifact.digest = digest;
        m.images.rootfs.artifact.sizeBytes = compressed.length;
      });
      const r = await abota('release', 'verify', dir, '--root', join(keys, 'root.json'), '--json');
      expect(rejection(r)).toBe('ERR_VERITY_DATA_CORRUPT');
      expect(r.stdout).toContain('data block 7');
    });

    it('a correctly signed hash tree that does not hash to the root hash → refused before any data block', async () => {
      const dir = await copyRelease('resigned-tree');
      const m0 = await manifestOf(dir);
      const treePath = join(dir, 'blobs', 'sha256', m0.images.rootfs.verity.hashTree.digest.slice(7));
      const tree = await readFile(treePath);
      tree[4096 + 3] = tree[4096 + 3]! ^ 0x01;
      const digest = await replaceBlob(dir, m0.images.rootfs.verity.hashTree.digest, tree);
      await resignWith(dir, (m) => {
        m.images.rootfs.verity.hashTree.digest = digest;
      });
      const r = await abota('release', 'verify', dir, '--root', join(keys, 'root.json'), '--json');
      expect(['ERR_VERITY_ROOT_HASH_MISMATCH', 'ERR_VERITY_TREE_CORRUPT']).toContain(rejection(r));
    });

    it('a correctly signed manifest whose salt disagrees with the tree superblock → ERR_RELEASE_VERITY_PARAMS_MISMATCH', async () => {
      const dir = await copyRelease('resigned-salt');
      await resignWith(dir, (m) => {
        m.images.rootfs.verity.salt = '00'.repeat(32);
      });
      const r = await abota('release', 'verify', dir, '--root', join(keys, 'root.json'), '--json');
      expect(rejection(r)).toBe('ERR_RELEASE_VERITY_PARAMS_MISMATCH');
    });
  });

  describe('build refuses bad input with a specific code and leaves nothing behind', () => {
    async function expectRefused(argv: string[], code: string, out: string): Promise<string> {
      const r = await abota(...argv);
      expect(r.code).not.toBe(0);
      expect(errorCode(r), r.stdout).toBe(code);
      const left = await readdir(work);
      expect(left).not.toContain(out.split('/').pop());
      expect(left.filter((n) => n.includes('.partial-'))).toEqual([]);
      return (JSON.parse(r.stdout) as { error: { message: string } }).error.message;
    }

    it('an unreadable image → ERR_RELEASE_IMAGE_UNREADABLE', async () => {
      const out = join(work, 'bad-image');
      const msg = await expectRefused(
        buildArgs(out, { '--image': join(work, 'nope.img') }),
        'ERR_RELEASE_IMAGE_UNREADABLE',
        out,
      );
      expect(msg).toContain('not found');
    });

    it('an image that is not a whole number of 4096-byte blocks → ERR_RELEASE_IMAGE_NOT_ALIGNED', async () => {
      const odd = join(work, 'odd.img');
      await writeFile(odd, Buffer.alloc(4096 * 3 + 512));
      const out = join(work, 'bad-align');
      const msg = await expectRefused(
        buildArgs(out, { '--image': odd }),
        'ERR_RELEASE_IMAGE_NOT_ALIGNED',
        out,
      );
      expect(msg).toContain('12800 bytes');
    });

    it('a keys directory without root.json → ERR_ROOT_NOT_FOUND', async () => {
      const empty = join(work, 'no-keys');
      await mkdir(empty, { recursive: true });
      const out = join(work, 'bad-keys');
      await expectRefused(buildArgs(out, { '--keys': empty }), 'ERR_ROOT_NOT_FOUND', out);
    });

    it('fewer release keys than the threshold → ERR_KEY_MISSING', async () => {
      const partial = join(work, 'partial-keys');
      await cp(keys, partial, { recursive: true });
      const names = (await readdir(join(partial, 'keys'))).filter((n) => n.startsWith('release-'));
      for (const n of names.slice(0, 2)) await rm(join(partial, 'keys', n));
      const out = join(work, 'bad-missing');
      await expectRefused(buildArgs(out, { '--keys': partial }), 'ERR_KEY_MISSING', out);
    });

    it('a release key file that is not an Ed25519 JWK → ERR_KEY_FILE_INVALID', async () => {
      const broken = join(work, 'broken-keys');
      await cp(keys, broken, { recursive: true });
      const name = (await readdir(join(broken, 'keys'))).find((n) => n.startsWith('release-'))!;
      await writeFile(join(broken, 'keys', name), '{"kty":"RSA"}', { mode: 0o600 });
      const out = join(work, 'bad-keyfile');
      await expectRefused(buildArgs(out, { '--keys': broken }), 'ERR_KEY_FILE_INVALID', out);
    });

    it('a version that is not semver → ERR_RELEASE_USAGE naming the flag', async () => {
      const out = join(work, 'bad-version');
      const msg = await expectRefused(buildArgs(out, { '--version': 'v1.2' }), 'ERR_RELEASE_USAGE', out);
      expect(msg).toContain('--version');
    });

    it('an expiry in the past → ERR_RELEASE_EXPIRY_IN_PAST', async () => {
      const out = join(work, 'bad-expiry');
      await expectRefused(
        buildArgs(out, { '--expires': '2020-01-01T00:00:00Z' }),
        'ERR_RELEASE_EXPIRY_IN_PAST',
        out,
      );
    });

    it('an existing output directory → ERR_RELEASE_OUT_EXISTS, and its content is untouched', async () => {
      const before = await readFile(join(release, 'manifest.jws'), 'utf8');
      const r = await abota(...buildArgs(release));
      expect(errorCode(r)).toBe('ERR_RELEASE_OUT_EXISTS');
      expect(await readFile(join(release, 'manifest.jws'), 'utf8')).toBe(before);
    });

    it('an aborted build (Ctrl-C) stops with ERR_RELEASE_INTERRUPTED and removes the partial directory', async () => {
      const out = join(work, 'interrupted');
      const interrupt = new AbortController();
      const err = await buildRelease({
        images: { rootfs: image },
        product: 'eflow-vm',
        compatible: ['hyperv-x64'],
        version: '1.0.0',
        securityVersion: 1,
        expires: '1d',
        keysDir: keys,
        outDir: out,
        signal: interrupt.signal,
        onProgress: (done) => {
          if (done > 4 * 1024 * 1024) interrupt.abort();
        },
      }).catch((e: unknown) => e);
      expect((err as { code?: string }).code).toBe('ERR_RELEASE_INTERRUPTED');
      const left = await readdir(work);
      expect(left).not.toContain('interrupted');
      expect(left.filter((n) => n.includes('.partial-'))).toEqual([]);
    });

    it('a failure in the middle of the build (here: the progress consumer throws) removes the partial directory', async () => {
      const out = join(work, 'mid-failure');
      let sawPartial = false;
      const err = await buildRelease({
        images: { rootfs: image },
        product: 'eflow-vm',
        compatible: ['hyperv-x64'],
        version: '1.0.0',
        securityVersion: 1,
        expires: '1d',
        keysDir: keys,
        outDir: out,
        onProgress: (done) => {
          if (done > 8 * 1024 * 1024) {
            sawPartial = true;
            throw new Error('progress consumer crashed');
          }
        },
      }).catch((e: unknown) => e);
      expect(sawPartial).toBe(true);
      expect((err as Error).message).toContain('progress consumer crashed');
      const left = await readdir(work);
      expect(left).not.toContain('mid-failure');
      expect(left.filter((n) => n.includes('.partial-'))).toEqual([]);
    });
  });

  it('ships earlier roots so a verifier on root v1 walks to v3 after two rotations; a missing step is ERR_ROOT_VERSION_GAP', async () => {
    const rotated = join(work, 'rotated-keys');
    await cp(keys, rotated, { recursive: true });
    for (let i = 0; i < 2; i++) {
      const r = await abota(
        'keys',
        'rotate',
        rotated,
        '--release-keys',
        '2',
        '--release-threshold',
        '1',
        '--json',
      );
      expect(r.code, r.stdout + r.stderr).toBe(0);
    }
    const out = join(work, 'after-rotation');
    const built = await abota(...buildArgs(out, { '--keys': rotated }));
    expect(built.code, built.stdout).toBe(0);
    expect((await readdir(join(out, 'roots'))).sort()).toEqual(['1.root.json', '2.root.json']);
    const ok = await abota('release', 'verify', out, '--root', join(keys, 'root.json'), '--json');
    expect(ok.code, ok.stdout).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ rootVersion: 3 });
    await rm(join(out, 'roots', '2.root.json'));
    const gap = await abota('release', 'verify', out, '--root', join(keys, 'root.json'), '--json');
    expect(rejection(gap)).toBe('ERR_ROOT_VERSION_GAP');
  });

  it('builds a release with a boot image too, and verify checks both images', async () => {
    const boot = join(work, 'boot.img');
    await writeFile(boot, Buffer.alloc(0));
    await truncate(boot, 4 * 1024 * 1024);
    const bytes = await readFile(boot);
    bytes.write('abota boot image', 4096);
    await writeFile(boot, bytes);
    const out = join(work, 'releases', 'nested', 'with-boot');
    const argv = buildArgs(out);
    argv.splice(2, 0, '--boot', boot);
    const r = await abota(...argv);
    expect(r.code, r.stdout).toBe(0);
    const v = await abota('release', 'verify', out, '--root', join(keys, 'root.json'), '--json');
    expect(v.code, v.stdout).toBe(0);
    const report = JSON.parse(v.stdout) as { images: Record<string, { blocksVerified: number }> };
    expect(report.images['boot']?.blocksVerified).toBe(1024);
    expect(report.images['rootfs']?.blocksVerified).toBe((IMAGE_MIB * 1024 * 1024) / 4096);
  });
});
