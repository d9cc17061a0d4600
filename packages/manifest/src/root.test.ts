// Trust root signing, verification and the TUF §5.3 chain walk, with real signed roots.
import { base64url } from 'jose';
import { describe, expect, it } from 'vitest';
import { EARLIER, exampleManifest, keys, LATER, makeRoot, NOW, signRaw } from '../test/fixtures.js';
import { type ManifestErrorCode, ManifestError } from './errors.js';
import type { SigningKey } from './keys.js';
import { checkRelease } from './policy.js';
import { signManifest } from './release.js';
import {
  createTrustRoot,
  type SignedRoot,
  signTrustRoot,
  type TrustRoot,
  verifyRootChain,
  verifyRootUpdate,
  verifyTrustRoot,
} from './root.js';

async function expectCode(promise: Promise<unknown>, code: ManifestErrorCode): Promise<ManifestError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(ManifestError);
    expect((err as ManifestError).code, (err as Error).message).toBe(code);
    return err as ManifestError;
  }
  throw new Error(`expected ${code}, the call succeeded`);
}

/** Root version `version` with the given root/release keys (thresholds default to 1). */
async function rootVersion(
  version: number,
  rootKeys: SigningKey[],
  releaseKeys: SigningKey[],
  opts: { rootThreshold?: number; expires?: string } = {},
): Promise<TrustRoot> {
  return createTrustRoot({
    version,
    expires: opts.expires ?? LATER,
    rootKeys,
    rootThreshold: opts.rootThreshold ?? 1,
    releaseKeys,
    releaseThreshold: 1,
  });
}

describe('verifyTrustRoot', () => {
  it('accepts a root signed by its own root key and returns the signed content', async () => {
    const { signed, root } = await makeRoot({
      rootKeys: 3,
      rootThreshold: 2,
      releaseKeys: 3,
      releaseThreshold: 2,
    });
    expect(await verifyTrustRoot(JSON.stringify(signed))).toEqual(root);
    expect(signed.signatures).toHaveLength(3);
  });

  it('refuses a root signed only by its release key → ERR_THRESHOLD_NOT_MET', async () => {
    const fx = await makeRoot();
    const signed = await signRaw(fx.root, fx.releaseKeys, 'root');
    await expectCode(verifyTrustRoot(signed), 'ERR_THRESHOLD_NOT_MET');
  });

  it('refuses a root whose kid is not the thumbprint of its key → ERR_ROOT_INVALID', async () => {
    const fx = await makeRoot();
    const [other] = await keys(1);
    const kid = fx.rootKeys[0]!.kid;
    // The kid of the root key now names a different public key; signed by that other key.
    const lying = { ...fx.root, keys: { ...fx.root.keys, [kid]: other!.publicJwk } };
    const signed = await signRaw(lying, [{ ...other!, kid }], 'root');
    const err = await expectCode(verifyTrustRoot(signed), 'ERR_ROOT_INVALID');
    expect(err.message).toContain('thumbprint');
  });

  it('refuses a root whose role names a key that is not listed → ERR_ROOT_INVALID', async () => {
    const fx = await makeRoot();
    const [stray] = await keys(1);
    const broken = {
      ...fx.root,
      roles: { ...fx.root.roles, release: { threshold: 1, keyIds: [stray!.kid] } },
    };
    const err = await expectCode(
      verifyTrustRoot(await signRaw(broken, fx.rootKeys, 'root')),
      'ERR_ROOT_INVALID',
    );
    expect(err.message).toContain('roles.release.keyIds.0');
  });

  it('refuses a tampered root (release threshold lowered after signing) → ERR_SIGNATURE_INVALID', async () => {
    const fx = await makeRoot({ releaseKeys: 3, releaseThreshold: 2 });
    const tampered = {
      ...fx.root,
      roles: { ...fx.root.roles, release: { ...fx.root.roles.release, threshold: 1 } },
    };
    const forged: SignedRoot = {
      ...fx.signed,
      payload: base64url.encode(JSON.stringify(sortDeep(tampered))),
    };
    await expectCode(verifyTrustRoot(forged), 'ERR_SIGNATURE_INVALID');
  });

  it('refuses a release manifest offered as a root (typ) → ERR_JWS_MALFORMED', async () => {
    const fx = await makeRoot();
    const manifest = await signManifest(exampleManifest(), fx.rootKeys);
    await expectCode(verifyTrustRoot(manifest), 'ERR_JWS_MALFORMED');
  });
});

describe('root rotation and verifyRootChain (TUF §5.3)', () => {
  it('walks v1 → v2 → v3 with new root keys (2-of-3) and accepts releases of the newest root', async () => {
    const v1 = await makeRoot();
    const rootKeys2 = await keys(3);
    const release2 = await keys(3);
    const r2 = await createTrustRoot({
      version: 2,
      expires: LATER,
      rootKeys: rootKeys2,
      rootThreshold: 2,
      releaseKeys: release2,
      releaseThreshold: 2,
    });
    const s2 = await signTrustRoot(r2, [...v1.rootKeys, rootKeys2[0]!, rootKeys2[2]!], v1.root);
    const rootKeys3 = await keys(1);
    const r3 = await rootVersion(3, rootKeys3, release2);
    const s3 = await signTrustRoot(r3, [rootKeys2[1]!, rootKeys2[2]!, ...rootKeys3], r2);

    const newest = await verifyRootChain(v1.signed, [s2, s3], NOW);
    expect(newest).toEqual(r3);

    const release = await signManifest(exampleManifest(), release2.slice(0, 1), newest);
    const device = {
      product: 'eflow-vm',
      hardware: 'hyperv-x64',
      currentVersion: '1.0.0',
      securityVersionFloor: 0,
    };
    await expect(checkRelease(release, newest, device, NOW)).resolves.toMatchObject({
      signedBy: [release2[0]!.kid],
    });
    // …and releases signed by the retired release key are refused under the new root.
    const stale = await signManifest(exampleManifest(), v1.releaseKeys);
    await expectCode(checkRelease(stale, newest, device, NOW), 'ERR_THRESHOLD_NOT_MET');
  });

  it('refuses a chain with a gap (v1, v2, v4) → ERR_ROOT_VERSION_GAP', async () => {
    const v1 = await makeRoot();
    const r2 = await rootVersion(2, v1.rootKeys, v1.releaseKeys);
    const r3 = await rootVersion(3, v1.rootKeys, v1.releaseKeys);
    const r4 = await rootVersion(4, v1.rootKeys, v1.releaseKeys);
    const s2 = await signTrustRoot(r2, v1.rootKeys, v1.root);
    const s4 = await signTrustRoot(r4, v1.rootKeys, r3);
    const err = await expectCode(verifyRootChain(v1.signed, [s2, s4], NOW), 'ERR_ROOT_VERSION_GAP');
    expect(err.message).toContain('expected v3');
  });

  it('refuses a version jump signed by the old root keys (v1 → v3) → ERR_ROOT_VERSION_GAP', async () => {
    const v1 = await makeRoot();
    const jump = await rootVersion(3, v1.rootKeys, v1.releaseKeys);
    await expectCode(
      verifyRootUpdate(v1.root, await signRaw(jump, v1.rootKeys, 'root')),
      'ERR_ROOT_VERSION_GAP',
    );
  });

  it('refuses v2 signed only by its new root keys, not by v1 root keys → ERR_THRESHOLD_NOT_MET', async () => {
    const v1 = await makeRoot();
    const fresh = await keys(1);
    const r2 = await rootVersion(2, fresh, v1.releaseKeys);
    const err = await expectCode(
      verifyRootChain(v1.signed, [await signRaw(r2, fresh, 'root')], NOW),
      'ERR_THRESHOLD_NOT_MET',
    );
    expect(err.message).toContain('root role of root v1');
  });

  it('refuses v2 signed only by v1 root keys, not by its own new root keys → ERR_THRESHOLD_NOT_MET', async () => {
    const v1 = await makeRoot();
    const fresh = await keys(1);
    const r2 = await rootVersion(2, fresh, v1.releaseKeys);
    const err = await expectCode(
      verifyRootChain(v1.signed, [await signRaw(r2, v1.rootKeys, 'root')], NOW),
      'ERR_THRESHOLD_NOT_MET',
    );
    expect(err.message).toContain('root role of root v2');
  });

  it('accepts expired intermediate roots on the way to an unexpired final root', async () => {
    const v1 = await makeRoot({ expires: EARLIER });
    const r2 = await rootVersion(2, v1.rootKeys, v1.releaseKeys, { expires: EARLIER });
    const r3 = await rootVersion(3, v1.rootKeys, v1.releaseKeys, { expires: LATER });
    const s2 = await signTrustRoot(r2, v1.rootKeys, v1.root);
    const s3 = await signTrustRoot(r3, v1.rootKeys, r2);
    expect((await verifyRootChain(v1.signed, [s2, s3], NOW)).version).toBe(3);
  });

  it('refuses a chain whose final root has expired → ERR_ROOT_EXPIRED', async () => {
    const v1 = await makeRoot();
    const r2 = await rootVersion(2, v1.rootKeys, v1.releaseKeys, { expires: EARLIER });
    const s2 = await signTrustRoot(r2, v1.rootKeys, v1.root);
    await expectCode(verifyRootChain(v1.signed, [s2], NOW), 'ERR_ROOT_EXPIRED');
  });

  it('refuses an expired trusted root with no newer root → ERR_ROOT_EXPIRED', async () => {
    const v1 = await makeRoot({ expires: EARLIER });
    await expectCode(verifyRootChain(v1.signed, [], NOW), 'ERR_ROOT_EXPIRED');
  });

  it('skips chain entries not newer than the trusted root (a shipped roots/ history)', async () => {
    const v1 = await makeRoot();
    const r2 = await rootVersion(2, v1.rootKeys, v1.releaseKeys);
    const s2 = await signTrustRoot(r2, v1.rootKeys, v1.root);
    expect((await verifyRootChain(s2, [v1.signed, s2], NOW)).version).toBe(2);
  });

  it('refuses a tampered intermediate root → ERR_SIGNATURE_INVALID', async () => {
    const v1 = await makeRoot();
    const [attacker] = await keys(1);
    const r2 = await rootVersion(2, v1.rootKeys, v1.releaseKeys);
    const s2 = await signTrustRoot(r2, v1.rootKeys, v1.root);
    const evil = await rootVersion(2, v1.rootKeys, [attacker!]);
    const forged = { ...s2, payload: base64url.encode(JSON.stringify(sortDeep(evil))) };
    await expectCode(verifyRootChain(v1.signed, [forged], NOW), 'ERR_SIGNATURE_INVALID');
  });

  it('signTrustRoot refuses to write a rotation the old root keys did not sign', async () => {
    const v1 = await makeRoot();
    const fresh = await keys(1);
    await expectCode(
      signTrustRoot(await rootVersion(2, fresh, v1.releaseKeys), fresh, v1.root),
      'ERR_THRESHOLD_NOT_MET',
    );
    await expectCode(
      signTrustRoot(await rootVersion(3, v1.rootKeys, v1.releaseKeys), v1.rootKeys, v1.root),
      'ERR_ROOT_VERSION_GAP',
    );
  });
});

describe('createTrustRoot', () => {
  it('refuses a threshold above the number of keys', async () => {
    const k = await keys(2);
    const err = await expectCode(
      createTrustRoot({
        version: 1,
        expires: LATER,
        rootKeys: k,
        rootThreshold: 3,
        releaseKeys: k,
        releaseThreshold: 1,
      }),
      'ERR_ROOT_INVALID',
    );
    expect(err.message).toContain('roles.root.threshold');
  });
});

function sortDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortDeep);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, sortDeep((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

// Issue #16 defect 7: base64url's last character of a 32-byte value carries 2 unused bits, so
// four spellings of `x` decode to the same key, each with its own thumbprint (kid). A root that
// lists one key under two kids must not let one private key meet a threshold of 2.
describe('one key under two kids', () => {
  const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  /** The same 32 bytes, spelled with non-zero unused bits in the last character. */
  const respell = (x: string) => `${x.slice(0, 42)}${ALPHABET[ALPHABET.indexOf(x.slice(42)) | 1]}`;

  it('refuses a root whose second key is a non-canonical spelling of the first', async () => {
    const { jwkThumbprint } = await import('./keys.js');
    const [k] = await keys(1);
    if (k === undefined) throw new Error('no key');
    const x2 = respell(k.publicJwk.x);
    expect(base64url.decode(x2)).toEqual(base64url.decode(k.publicJwk.x)); // the same key
    const twin: SigningKey = {
      kid: await jwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: x2 }),
      privateJwk: k.privateJwk,
      publicJwk: { kty: 'OKP', crv: 'Ed25519', x: x2 },
    };
    expect(twin.kid).not.toBe(k.kid);
    // Built by hand as an attacker would: createTrustRoot/signTrustRoot refuse it now.
    const root = {
      schemaVersion: 1,
      version: 1,
      expires: LATER,
      keys: {
        [k.kid]: k.publicJwk,
        [twin.kid]: twin.publicJwk,
      },
      roles: {
        root: { threshold: 2, keyIds: [k.kid, twin.kid] },
        release: { threshold: 2, keyIds: [k.kid, twin.kid] },
      },
    };
    const { signGeneralJws, JWS_TYPE_ROOT } = await import('./jws.js');
    const { canonicalJsonBytes } = await import('./canonical-json.js');
    const signed = await signGeneralJws(canonicalJsonBytes(root), [k, twin], JWS_TYPE_ROOT);
    const err = await expectCode(verifyTrustRoot(signed as SignedRoot), 'ERR_ROOT_INVALID');
    expect(err.message).toMatch(/canonical/);
  });

  it('counts distinct keys by their bytes when the role lists a twin (defence in depth)', async () => {
    const { verifyRoleSignatures, signGeneralJws, JWS_TYPE_ROOT } = await import('./jws.js');
    const [k] = await keys(1);
    if (k === undefined) throw new Error('no key');
    const x2 = respell(k.publicJwk.x);
    const twin: SigningKey = {
      kid: 'twin-kid',
      privateJwk: k.privateJwk,
      publicJwk: { ...k.publicJwk, x: x2 },
    };
    const signed = await signGeneralJws(new TextEncoder().encode('{}'), [k, twin], JWS_TYPE_ROOT);
    await expectCode(
      verifyRoleSignatures(signed, JWS_TYPE_ROOT, {
        label: 'root role',
        threshold: 2,
        keyIds: [k.kid, twin.kid],
        keys: { [k.kid]: k.publicJwk, [twin.kid]: twin.publicJwk },
      }),
      'ERR_THRESHOLD_NOT_MET',
    );
  });

  it('refuses base64url whose last character has unused bits set', async () => {
    const { base64urlDecode } = await import('./base64url.js');
    expect(base64urlDecode('AQ')).toEqual(new Uint8Array([1]));
    expect(() => base64urlDecode('AR')).toThrow(/canonical/);
    expect(() => base64urlDecode('AQB')).toThrow(/canonical/);
    expect(base64urlDecode('AQE')).toEqual(new Uint8Array([1, 1]));
    expect(base64urlDecode('AQA')).toEqual(new Uint8Array([1, 0]));
  });
});
