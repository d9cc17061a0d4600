// `abota keys init|rotate|show`, run in-process through main() on real directories, with the
// results checked by @abota/manifest's verifier exactly as a device would check them.
import { chmod, mkdtemp, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkRelease,
  type ReleaseManifest,
  type SignedRoot,
  signManifest,
  verifyRootChain,
  verifyTrustRoot,
} from '@abota/manifest';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { runCli } from '../test-support/run-cli.js';
import { loadRoleSigningKeys, loadRootChain } from '../keys/trust-root.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'abota-keys-'));
});
afterEach(async () => {
  vi.restoreAllMocks();
  await rm(dir, { recursive: true, force: true });
});

const abota = runCli;

async function readRoot(path: string): Promise<SignedRoot> {
  return JSON.parse(await readFile(path, 'utf8')) as SignedRoot;
}

function manifest(version = '2.0.0'): ReleaseManifest {
  return {
    schemaVersion: 1,
    product: 'eflow-vm',
    compatible: ['hyperv-x64'],
    version,
    securityVersion: 1,
    created: '2026-01-01T00:00:00Z',
    expires: '2099-01-01T00:00:00Z',
    images: {
      rootfs: {
        sizeBytes: 4096 * 16,
        verity: {
          hashType: 1,
          algorithm: 'sha256',
          dataBlockSize: 4096,
          hashBlockSize: 4096,
          dataBlocks: 16,
          salt: '',
          rootHash: 'aa'.repeat(32),
          superblock: false,
          hashOffset: 0,
          hashTree: { digest: `sha256:${'bb'.repeat(32)}`, sizeBytes: 4096 },
        },
        artifact: {
          digest: `sha256:${'cc'.repeat(32)}`,
          sizeBytes: 4096 * 16,
          codec: 'none',
          uncompressedSizeBytes: 4096 * 16,
        },
      },
    },
  };
}

const device = {
  product: 'eflow-vm',
  hardware: 'hyperv-x64',
  currentVersion: '1.0.0',
  securityVersionFloor: 0,
};

describe('abota keys init', () => {
  it('writes 0600 key files and a self-signed root.json v1 that a device verifies; prints no private key', async () => {
    const res = await abota('keys', 'init', dir, '--release-keys', '3', '--release-threshold', '2', '--json');
    expect(res.code, res.stderr).toBe(0);
    const summary = JSON.parse(res.stdout);
    expect(summary).toMatchObject({
      ok: true,
      version: 1,
      roles: { root: { threshold: 1 }, release: { threshold: 2 } },
    });
    expect(summary.roles.release.keys).toHaveLength(3);

    const names = (await readdir(join(dir, 'keys'))).sort();
    expect(names).toEqual([
      'release-1.jwk.json',
      'release-2.jwk.json',
      'release-3.jwk.json',
      'root-1.jwk.json',
    ]);
    for (const name of names) {
      const path = join(dir, 'keys', name);
      expect((await stat(path)).mode & 0o777, name).toBe(0o600);
      const { d } = JSON.parse(await readFile(path, 'utf8'));
      expect(res.stdout).not.toContain(d);
    }
    expect((await stat(join(dir, 'keys'))).mode & 0o777).toBe(0o700);

    const root = await verifyTrustRoot(await readFile(join(dir, 'root.json'), 'utf8'));
    expect(root.version).toBe(1);
    expect(root.roles.release.keyIds).toEqual(summary.roles.release.keys.map((k: { kid: string }) => k.kid));
    const expiresInDays = (Date.parse(root.expires) - Date.now()) / 86_400_000;
    expect(expiresInDays).toBeGreaterThan(364);
    expect(expiresInDays).toBeLessThanOrEqual(365);
  });

  it('gives release signing keys that meet the 2-of-3 threshold a device checks', async () => {
    expect((await abota('keys', 'init', dir, '--release-keys', '3', '--release-threshold', '2')).code).toBe(
      0,
    );
    const { root, keys } = await loadRoleSigningKeys(dir, 'release');
    expect(keys).toHaveLength(3);
    const jws = await signManifest(manifest(), keys.slice(0, 2), root);
    await expect(checkRelease(jws, root, device, new Date())).resolves.toMatchObject({
      signedBy: [keys[0]!.kid, keys[1]!.kid],
    });
  });

  it('refuses to overwrite an existing root.json and leaves it untouched', async () => {
    expect((await abota('keys', 'init', dir)).code).toBe(0);
    const before = await readFile(join(dir, 'root.json'), 'utf8');
    const res = await abota('keys', 'init', dir, '--json');
    expect(res.code).toBe(1);
    expect(JSON.parse(res.stdout).error.code).toBe('ERR_ROOT_EXISTS');
    expect(await readFile(join(dir, 'root.json'), 'utf8')).toBe(before);
    expect(await readdir(join(dir, 'keys'))).toHaveLength(2);
  });

  it.each([
    [['--root-threshold', '2'], '--root-threshold'],
    [['--release-keys', '2', '--release-threshold', '0'], '--release-threshold'],
    [['--release-keys', 'many'], '--release-keys'],
    [['--expires', '1y'], '--expires'],
  ])('refuses %j with ERR_USAGE (exit 2) and writes nothing', async (flags, flag) => {
    const res = await abota('keys', 'init', dir, ...flags);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('ERR_USAGE');
    expect(res.stderr).toContain(flag);
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('abota keys rotate', () => {
  it('rotates the root role to fresh 2-of-3 keys: v2 signed by old and new keys, v1 kept for the chain', async () => {
    expect((await abota('keys', 'init', dir)).code).toBe(0);
    const v1Text = await readFile(join(dir, 'root.json'), 'utf8');
    const res = await abota(
      'keys',
      'rotate',
      dir,
      '--root-keys',
      '3',
      '--root-threshold',
      '2',
      '--expires',
      '30d',
      '--json',
    );
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ version: 2, roles: { root: { threshold: 2 } } });

    expect(await readFile(join(dir, 'roots', '1.root.json'), 'utf8')).toBe(v1Text);
    const v2 = await readRoot(join(dir, 'root.json'));
    expect(v2.signatures).toHaveLength(4); // 1 old root key + 3 new ones
    const newest = await verifyRootChain(JSON.parse(v1Text), [v2], new Date());
    expect(newest.version).toBe(2);
    expect(newest.roles.root.keyIds).not.toContain((await verifyTrustRoot(v1Text)).roles.root.keyIds[0]);
    expect((await readdir(join(dir, 'keys'))).sort()).toEqual([
      'release-1.jwk.json',
      'root-1.jwk.json',
      'root-2.jwk.json',
      'root-3.jwk.json',
      'root-4.jwk.json',
    ]);
  });

  it('rotates the release role: releases by the retired key are refused under the new root', async () => {
    expect((await abota('keys', 'init', dir)).code).toBe(0);
    const v1 = await readRoot(join(dir, 'root.json'));
    const old = await loadRoleSigningKeys(dir, 'release');
    expect((await abota('keys', 'rotate', dir, '--release-keys', '2', '--release-threshold', '2')).code).toBe(
      0,
    );
    const fresh = await loadRoleSigningKeys(dir, 'release');
    expect(fresh.keys.map((k) => k.kid)).not.toContain(old.keys[0]!.kid);

    const newest = await verifyRootChain(v1, [await readRoot(join(dir, 'root.json'))], new Date());
    await expect(
      checkRelease(await signManifest(manifest(), fresh.keys), newest, device, new Date()),
    ).resolves.toBeDefined();
    await expect(
      checkRelease(await signManifest(manifest(), old.keys), newest, device, new Date()),
    ).rejects.toMatchObject({
      code: 'ERR_THRESHOLD_NOT_MET',
    });
  });

  it('rotating twice leaves a chain a device at v1 can walk to v3', async () => {
    expect((await abota('keys', 'init', dir)).code).toBe(0);
    const v1 = await readRoot(join(dir, 'root.json'));
    expect((await abota('keys', 'rotate', dir, '--root-keys', '2')).code).toBe(0);
    expect((await abota('keys', 'rotate', dir, '--root-keys', '1', '--release-keys', '1')).code).toBe(0);
    const chain = [await readRoot(join(dir, 'roots', '2.root.json')), await readRoot(join(dir, 'root.json'))];
    expect((await verifyRootChain(v1, chain, new Date())).version).toBe(3);
    // loadRootChain is what a release ships: v1, v2, v3 in order; v1 is skipped by the device.
    const shipped = await loadRootChain(dir);
    expect(shipped).toHaveLength(3);
    expect((await verifyRootChain(v1, shipped, new Date())).version).toBe(3);
    // Without the intermediate root the device refuses the jump.
    await expect(verifyRootChain(v1, [chain[1]!], new Date())).rejects.toMatchObject({
      code: 'ERR_ROOT_VERSION_GAP',
    });
  });

  it('refuses when the old root keys are missing, leaving root.json unchanged', async () => {
    expect((await abota('keys', 'init', dir)).code).toBe(0);
    const before = await readFile(join(dir, 'root.json'), 'utf8');
    await unlink(join(dir, 'keys', 'root-1.jwk.json'));
    const res = await abota('keys', 'rotate', dir, '--release-keys', '1');
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/ERR_KEY_MISSING: the root role of root v1 needs 1 signing key\(s\); found 0/);
    expect(await readFile(join(dir, 'root.json'), 'utf8')).toBe(before);
  });

  it('refuses a corrupted key file, naming it', async () => {
    expect((await abota('keys', 'init', dir)).code).toBe(0);
    const path = join(dir, 'keys', 'root-1.jwk.json');
    const jwk = JSON.parse(await readFile(path, 'utf8'));
    await writeFile(path, JSON.stringify({ ...jwk, d: `${jwk.d.slice(0, -2)}AA` }), { mode: 0o600 });
    const res = await abota('keys', 'rotate', dir);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('ERR_KEY_FILE_INVALID');
    expect(res.stderr).toContain(path);
    await writeFile(path, 'not json', { mode: 0o600 });
    expect((await abota('keys', 'rotate', dir)).stderr).toContain('not JSON');
  });

  it('refuses a key file readable by others', async () => {
    expect((await abota('keys', 'init', dir)).code).toBe(0);
    await chmod(join(dir, 'keys', 'root-1.jwk.json'), 0o644);
    const res = await abota('keys', 'rotate', dir);
    expect(res.stderr).toContain('ERR_KEY_FILE_PERMISSIONS');
    expect(res.stderr).toContain('chmod 600');
  });

  it('refuses two key files claiming the same kid', async () => {
    expect((await abota('keys', 'init', dir)).code).toBe(0);
    const copy = join(dir, 'keys', 'root-9.jwk.json');
    await writeFile(copy, await readFile(join(dir, 'keys', 'root-1.jwk.json')), { mode: 0o600 });
    const res = await abota('keys', 'rotate', dir);
    expect(res.stderr).toContain('ERR_KEY_FILE_INVALID');
    expect(res.stderr).toContain(copy);
  });

  it('refuses a root.json whose signature no longer verifies', async () => {
    expect((await abota('keys', 'init', dir)).code).toBe(0);
    const signed = await readRoot(join(dir, 'root.json'));
    const other = await mkdtemp(join(tmpdir(), 'abota-keys-other-'));
    try {
      expect((await abota('keys', 'init', other)).code).toBe(0);
      const foreign = await readRoot(join(other, 'root.json'));
      // Payload of one root under the signatures of another.
      await writeFile(join(dir, 'root.json'), JSON.stringify({ ...signed, payload: foreign.payload }));
      const res = await abota('keys', 'show', dir);
      expect(res.code).toBe(1);
      expect(res.stderr).toContain('ERR_THRESHOLD_NOT_MET');
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });
});

describe('abota keys show', () => {
  it('prints roles, thresholds, kids, key files and expiry without private material', async () => {
    expect((await abota('keys', 'init', dir, '--release-keys', '2', '--release-threshold', '2')).code).toBe(
      0,
    );
    const res = await abota('keys', 'show', dir, '--json');
    expect(res.code).toBe(0);
    const shown = JSON.parse(res.stdout);
    expect(shown).toMatchObject({ version: 1, expired: false, roles: { release: { threshold: 2 } } });
    expect(shown.roles.release.keys[0].keyFile).toBe(join(dir, 'keys', 'release-1.jwk.json'));
    for (const name of await readdir(join(dir, 'keys'))) {
      expect(res.stdout).not.toContain(JSON.parse(await readFile(join(dir, 'keys', name), 'utf8')).d);
    }
    const text = await abota('keys', 'show', dir);
    expect(text.stdout).toContain('release: 2 of 2');
  });

  it('says how to create a root when there is none', async () => {
    const res = await abota('keys', 'show', dir);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('ERR_ROOT_NOT_FOUND');
    expect(res.stderr).toContain('abota keys init');
  });
});

describe('passphrase-encrypted key files', () => {
  const VAR = 'ABOTA_TEST_KEY_PASSPHRASE';
  afterEach(() => {
    delete process.env[VAR];
  });

  it('writes scrypt/AES-GCM envelopes that hold no plain key, and signs with them given the passphrase', async () => {
    process.env[VAR] = 'correct horse battery staple';
    const res = await abota('keys', 'init', dir, '--passphrase-env', VAR, '--json');
    expect(res.code, res.stderr).toBe(0);
    for (const name of await readdir(join(dir, 'keys'))) {
      const path = join(dir, 'keys', name);
      const file = JSON.parse(await readFile(path, 'utf8'));
      expect(file).toMatchObject({
        type: 'abota-encrypted-jwk',
        kdf: { name: 'scrypt' },
        cipher: { name: 'aes-256-gcm' },
      });
      expect(file).not.toHaveProperty('d');
      expect((await stat(path)).mode & 0o777).toBe(0o600);
    }
    // show needs no passphrase: kids are readable, private keys are not.
    const shown = JSON.parse((await abota('keys', 'show', dir, '--json')).stdout);
    expect(shown.roles.release.keys[0].keyFile).toBe(join(dir, 'keys', 'release-1.jwk.json'));

    const { root, keys } = await loadRoleSigningKeys(dir, 'release', { passphrase: process.env[VAR] });
    await expect(
      checkRelease(await signManifest(manifest(), keys, root), root, device, new Date()),
    ).resolves.toBeDefined();

    // Rotation with the passphrase unlocks the old root key and encrypts the new ones.
    const rotated = await abota('keys', 'rotate', dir, '--root-keys', '1', '--passphrase-env', VAR);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(JSON.parse(await readFile(join(dir, 'keys', 'root-2.jwk.json'), 'utf8')).type).toBe(
      'abota-encrypted-jwk',
    );
  });

  it('refuses a wrong passphrase, a missing one, and a modified envelope with clear codes', async () => {
    process.env[VAR] = 'correct horse battery staple';
    expect((await abota('keys', 'init', dir, '--passphrase-env', VAR)).code).toBe(0);

    process.env[VAR] = 'wrong horse battery staple';
    let res = await abota('keys', 'rotate', dir, '--passphrase-env', VAR);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('ERR_KEY_PASSPHRASE: key file');
    expect(res.stderr).toContain('wrong passphrase');

    delete process.env[VAR];
    res = await abota('keys', 'rotate', dir);
    expect(res.stderr).toContain('ERR_KEY_PASSPHRASE_REQUIRED');
    expect(res.stderr).toContain('ABOTA_KEY_PASSPHRASE');

    // The clear-text KDF parameters are authenticated: weakening them breaks the AES-GCM tag.
    const rootFile = join(dir, 'keys', 'root-1.jwk.json');
    const envelope = JSON.parse(await readFile(rootFile, 'utf8'));
    await writeFile(rootFile, JSON.stringify({ ...envelope, kdf: { ...envelope.kdf, N: 2 ** 14 } }), {
      mode: 0o600,
    });
    await expect(
      loadRoleSigningKeys(dir, 'root', { passphrase: 'correct horse battery staple' }),
    ).rejects.toMatchObject({ code: 'ERR_KEY_PASSPHRASE' });
  });

  it('refuses --passphrase-env naming an unset variable, and passphrases under 8 characters', async () => {
    let res = await abota('keys', 'init', dir, '--passphrase-env', VAR);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain(`--passphrase-env ${VAR}: the variable is not set`);
    process.env[VAR] = 'short';
    res = await abota('keys', 'init', dir, '--passphrase-env', VAR);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('shorter than 8');
    expect(await readdir(dir)).toEqual([]);
  });
});
