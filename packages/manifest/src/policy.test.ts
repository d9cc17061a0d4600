// checkRelease / verifyManifest against real signed artifacts: every refusal is produced by a
// document that actually exhibits the fault (tampered, mis-signed, expired, …).
import { base64url, FlattenedSign, importJWK } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  decodePayload,
  EARLIER,
  exampleManifest,
  keys,
  makeRoot,
  NOW,
  type RootFixture,
  signBytes,
  signRaw,
  withPayload,
} from '../test/fixtures.js';
import { canonicalJson } from './canonical-json.js';
import { type ManifestErrorCode, ManifestError } from './errors.js';
import { addSignatures, type GeneralJws, JWS_TYPE_ROOT, MAX_JWS_BYTES } from './jws.js';
import { type DeviceFacts, checkRelease } from './policy.js';
import { signManifest, verifyManifest } from './release.js';

const device: DeviceFacts = {
  product: 'eflow-vm',
  hardware: 'hyperv-x64',
  currentVersion: '1.1.0',
  securityVersionFloor: 2,
};

async function refusal(promise: Promise<unknown>): Promise<ManifestError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(ManifestError);
    return err as ManifestError;
  }
  throw new Error('expected a ManifestError, the call succeeded');
}

async function expectCode(promise: Promise<unknown>, code: ManifestErrorCode): Promise<ManifestError> {
  const err = await refusal(promise);
  expect(err.code, err.message).toBe(code);
  return err;
}

let single: RootFixture;
let twoOfThree: RootFixture;

beforeAll(async () => {
  single = await makeRoot();
  twoOfThree = await makeRoot({ releaseKeys: 3, releaseThreshold: 2 });
});

describe('checkRelease accepts', () => {
  it('a manifest signed by the single release key, parsed from the signed bytes', async () => {
    const jws = await signManifest(exampleManifest(), single.releaseKeys, single.root);
    const decision = await checkRelease(JSON.stringify(jws), single.root, device, NOW);
    expect(decision.manifest).toEqual(exampleManifest());
    expect(decision.signedBy).toEqual([single.releaseKeys[0]!.kid]);
    expect(decision.unknownKids).toEqual([]);
  });

  it('a 2-of-3 release signed by two distinct release keys, reporting both kids', async () => {
    const [a, , c] = twoOfThree.releaseKeys;
    const jws = await signManifest(exampleManifest(), [a!, c!], twoOfThree.root);
    const decision = await checkRelease(
      new TextEncoder().encode(JSON.stringify(jws)),
      twoOfThree.root,
      device,
      NOW,
    );
    expect(decision.signedBy).toEqual([a!.kid, c!.kid]);
  });

  it('a 2-of-3 release whose second signature was added later by another signer', async () => {
    const [a, b] = twoOfThree.releaseKeys;
    const first = await signManifest(exampleManifest(), [a!]);
    const both = await addSignatures(first, [b!], 'abota-release+jws');
    const decision = await checkRelease(both, twoOfThree.root, device, NOW);
    expect(decision.signedBy.sort()).toEqual([a!.kid, b!.kid].sort());
  });

  it('a threshold met despite an extra signature by an unknown key, which is reported', async () => {
    const [stranger] = await keys(1);
    const jws = await signManifest(exampleManifest(), [single.releaseKeys[0]!, stranger!]);
    const decision = await checkRelease(jws, single.root, device, NOW);
    expect(decision.signedBy).toEqual([single.releaseKeys[0]!.kid]);
    expect(decision.unknownKids).toEqual([stranger!.kid]);
  });

  it('a downgrade when the rollout allows it and the security floor permits', async () => {
    const jws = await signManifest(exampleManifest({ version: '1.0.5' }), single.releaseKeys);
    const decision = await checkRelease(jws, single.root, { ...device, allowDowngrade: true }, NOW);
    expect(decision.manifest.version).toBe('1.0.5');
  });

  it('a release whose securityVersion equals the floor', async () => {
    const jws = await signManifest(exampleManifest({ securityVersion: 2 }), single.releaseKeys);
    await expect(checkRelease(jws, single.root, device, NOW)).resolves.toBeDefined();
  });

  it('verifyManifest returns the exact canonical JSON that was signed', async () => {
    const jws = await signManifest(exampleManifest(), single.releaseKeys);
    const verified = await verifyManifest(jws, single.root, NOW);
    expect(verified.payloadText).toBe(canonicalJson(exampleManifest()));
  });
});

describe('checkRelease refuses a malformed JWS (ERR_JWS_MALFORMED)', () => {
  it('text that is not JSON', async () => {
    await expectCode(checkRelease('{"payload":', single.root, device, NOW), 'ERR_JWS_MALFORMED');
  });

  it('a compact-serialised JWS instead of the General JSON form', async () => {
    const jws = await signManifest(exampleManifest(), single.releaseKeys);
    const compact = `${jws.signatures[0]!.protected}.${jws.payload}.${jws.signatures[0]!.signature}`;
    await expectCode(checkRelease(compact, single.root, device, NOW), 'ERR_JWS_MALFORMED');
  });

  it('a document over the 1 MiB limit, before parsing it', async () => {
    const jws = await signManifest(exampleManifest(), single.releaseKeys);
    const huge = JSON.stringify(jws).replace('{', `{"pad":"${'x'.repeat(MAX_JWS_BYTES)}",`);
    const err = await expectCode(checkRelease(huge, single.root, device, NOW), 'ERR_JWS_MALFORMED');
    expect(err.message).toContain('exceeds the limit');
  });

  it('an unsigned copy of the manifest next to the signed payload (unknown member)', async () => {
    const jws = await signManifest(exampleManifest(), single.releaseKeys);
    const smuggled = { ...jws, manifest: exampleManifest({ version: '9.9.9' }) };
    await expectCode(checkRelease(JSON.stringify(smuggled), single.root, device, NOW), 'ERR_JWS_MALFORMED');
  });

  it('no signatures at all', async () => {
    const jws = await signManifest(exampleManifest(), single.releaseKeys);
    await expectCode(checkRelease({ ...jws, signatures: [] }, single.root, device, NOW), 'ERR_JWS_MALFORMED');
  });

  it('a signed trust root offered as a manifest (typ abota-root+jws)', async () => {
    const err = await expectCode(checkRelease(single.signed, single.root, device, NOW), 'ERR_JWS_MALFORMED');
    expect(err.message).toContain(JWS_TYPE_ROOT);
  });

  it('a protected header with alg "none"', async () => {
    const jws = await signManifest(exampleManifest(), single.releaseKeys);
    const header = base64url.encode(
      JSON.stringify({ alg: 'none', kid: single.releaseKeys[0]!.kid, typ: 'abota-release+jws' }),
    );
    const forged: GeneralJws = {
      ...jws,
      signatures: [{ protected: header, signature: jws.signatures[0]!.signature }],
    };
    await expectCode(checkRelease(forged, single.root, device, NOW), 'ERR_JWS_MALFORMED');
  });
});

describe('checkRelease refuses bad signatures and unmet thresholds', () => {
  it('a tampered payload under a release key signature → ERR_SIGNATURE_INVALID', async () => {
    const jws = await signManifest(exampleManifest(), single.releaseKeys);
    const tampered = withPayload(jws, { ...(decodePayload(jws) as object), securityVersion: 99 });
    const err = await expectCode(checkRelease(tampered, single.root, device, NOW), 'ERR_SIGNATURE_INVALID');
    expect(err.message).toContain(single.releaseKeys[0]!.kid);
  });

  it('a signature relabelled with another release key kid → ERR_SIGNATURE_INVALID', async () => {
    const [a, b] = twoOfThree.releaseKeys;
    const jws = await signManifest(exampleManifest(), [a!]);
    const header = base64url.encode(JSON.stringify({ alg: 'EdDSA', kid: b!.kid, typ: 'abota-release+jws' }));
    const relabelled: GeneralJws = {
      ...jws,
      signatures: [...jws.signatures, { protected: header, signature: jws.signatures[0]!.signature }],
    };
    await expectCode(checkRelease(relabelled, twoOfThree.root, device, NOW), 'ERR_SIGNATURE_INVALID');
  });

  it('a signature only by a key not in the root → ERR_THRESHOLD_NOT_MET naming the unknown kid', async () => {
    const [stranger] = await keys(1);
    const jws = await signManifest(exampleManifest(), [stranger!]);
    const err = await expectCode(checkRelease(jws, single.root, device, NOW), 'ERR_THRESHOLD_NOT_MET');
    expect(err.message).toContain('0 of 1');
    expect(err.message).toContain(stranger!.kid);
  });

  it('a manifest signed by a root-role key instead of a release key → ERR_THRESHOLD_NOT_MET', async () => {
    const jws = await signManifest(exampleManifest(), single.rootKeys);
    const err = await expectCode(checkRelease(jws, single.root, device, NOW), 'ERR_THRESHOLD_NOT_MET');
    expect(err.message).toContain(single.rootKeys[0]!.kid);
  });

  it('threshold 2 with one signature → ERR_THRESHOLD_NOT_MET "1 of 2"', async () => {
    const jws = await signManifest(exampleManifest(), [twoOfThree.releaseKeys[1]!]);
    const err = await expectCode(checkRelease(jws, twoOfThree.root, device, NOW), 'ERR_THRESHOLD_NOT_MET');
    expect(err.message).toContain('1 of 2');
  });

  it('threshold 2 with two signatures by the same key → counted once, ERR_THRESHOLD_NOT_MET', async () => {
    const [a] = twoOfThree.releaseKeys;
    const once = await signManifest(exampleManifest(), [a!]);
    // Two independent (valid) signatures by one key: Ed25519 is deterministic, so re-add the same
    // signature object; both verify and must still count as one key.
    const twice: GeneralJws = { ...once, signatures: [once.signatures[0]!, once.signatures[0]!] };
    const err = await expectCode(checkRelease(twice, twoOfThree.root, device, NOW), 'ERR_THRESHOLD_NOT_MET');
    expect(err.message).toContain('1 of 2');
  });
});

describe('duplicate signatures by one key with different bytes', () => {
  it('two distinct valid signatures by one key (different header member order) count once', async () => {
    const [a] = twoOfThree.releaseKeys;
    const once = await signManifest(exampleManifest(), [a!]);
    // Same key, same payload, protected header members in another order: a second, different,
    // valid signature — still one key.
    const second = await new FlattenedSign(base64url.decode(once.payload))
      .setProtectedHeader({ typ: 'abota-release+jws', kid: a!.kid, alg: 'EdDSA' })
      .sign(await importJWK(a!.privateJwk, 'EdDSA'));
    expect(second.signature).not.toBe(once.signatures[0]!.signature);
    const twice: GeneralJws = {
      ...once,
      signatures: [...once.signatures, { protected: second.protected!, signature: second.signature }],
    };
    const err = await expectCode(checkRelease(twice, twoOfThree.root, device, NOW), 'ERR_THRESHOLD_NOT_MET');
    expect(err.message).toContain('1 of 2');
  });
});

describe('checkRelease refuses a signed but invalid manifest (ERR_MANIFEST_INVALID)', () => {
  it('an unknown field, naming its path', async () => {
    const bad = { ...exampleManifest(), images: { ...exampleManifest().images, efi: {} } };
    const err = await expectCode(
      checkRelease(await signRaw(bad, single.releaseKeys), single.root, device, NOW),
      'ERR_MANIFEST_INVALID',
    );
    expect(err.message).toContain('images');
    expect(err.message).toContain('efi');
  });

  it('a root hash of the wrong length for its algorithm, naming the field path', async () => {
    const m = exampleManifest();
    const bad = {
      ...m,
      images: {
        rootfs: { ...m.images.rootfs, verity: { ...m.images.rootfs.verity, rootHash: 'ab'.repeat(20) } },
      },
    };
    const err = await expectCode(
      checkRelease(await signRaw(bad, single.releaseKeys), single.root, device, NOW),
      'ERR_MANIFEST_INVALID',
    );
    expect(err.message).toContain('images.rootfs.verity.rootHash');
  });

  it('a payload that is valid JSON but not canonical', async () => {
    const text = JSON.stringify(exampleManifest(), null, 2);
    const err = await expectCode(
      checkRelease(
        await signBytes(new TextEncoder().encode(text), single.releaseKeys),
        single.root,
        device,
        NOW,
      ),
      'ERR_MANIFEST_INVALID',
    );
    expect(err.message).toContain('canonical');
  });

  it('signManifest refuses to sign an invalid manifest at all', async () => {
    await expectCode(
      signManifest({ ...exampleManifest(), version: '1.2' }, single.releaseKeys),
      'ERR_MANIFEST_INVALID',
    );
  });
});

describe('checkRelease applies expiry and device policy in order', () => {
  it('an expired manifest → ERR_EXPIRED', async () => {
    const jws = await signManifest(
      exampleManifest({ created: '2026-10-01T00:00:00Z', expires: EARLIER }),
      single.releaseKeys,
    );
    await expectCode(checkRelease(jws, single.root, device, NOW), 'ERR_EXPIRED');
  });

  it('an expired trust root → ERR_ROOT_EXPIRED, checked before the manifest expiry', async () => {
    const old = await makeRoot({ expires: EARLIER });
    const jws = await signManifest(
      exampleManifest({ created: '2026-10-01T00:00:00Z', expires: EARLIER }),
      old.releaseKeys,
    );
    await expectCode(checkRelease(jws, old.root, device, NOW), 'ERR_ROOT_EXPIRED');
  });

  it('another product → ERR_WRONG_PRODUCT', async () => {
    const jws = await signManifest(exampleManifest({ product: 'other-vm' }), single.releaseKeys);
    await expectCode(checkRelease(jws, single.root, device, NOW), 'ERR_WRONG_PRODUCT');
  });

  it('hardware not in compatible → ERR_INCOMPATIBLE_HARDWARE', async () => {
    const jws = await signManifest(exampleManifest(), single.releaseKeys);
    const err = await expectCode(
      checkRelease(jws, single.root, { ...device, hardware: 'rpi4-arm64' }, NOW),
      'ERR_INCOMPATIBLE_HARDWARE',
    );
    expect(err.message).toContain('rpi4-arm64');
  });

  it('securityVersion below the floor → ERR_SECURITY_VERSION_TOO_LOW, even for a newer version', async () => {
    const jws = await signManifest(
      exampleManifest({ version: '2.0.0', securityVersion: 1 }),
      single.releaseKeys,
    );
    await expectCode(checkRelease(jws, single.root, device, NOW), 'ERR_SECURITY_VERSION_TOO_LOW');
  });

  it('an allowed downgrade below the security floor is still refused', async () => {
    const jws = await signManifest(
      exampleManifest({ version: '1.0.0', securityVersion: 1 }),
      single.releaseKeys,
    );
    await expectCode(
      checkRelease(jws, single.root, { ...device, allowDowngrade: true }, NOW),
      'ERR_SECURITY_VERSION_TOO_LOW',
    );
  });

  it('the running version again (build metadata ignored) → ERR_SAME_VERSION', async () => {
    const jws = await signManifest(exampleManifest({ version: '1.1.0+build.7' }), single.releaseKeys);
    await expectCode(checkRelease(jws, single.root, device, NOW), 'ERR_SAME_VERSION');
  });

  it('an older version without allowDowngrade → ERR_DOWNGRADE_NOT_ALLOWED', async () => {
    const jws = await signManifest(exampleManifest({ version: '1.1.0-rc.1' }), single.releaseKeys);
    await expectCode(checkRelease(jws, single.root, device, NOW), 'ERR_DOWNGRADE_NOT_ALLOWED');
  });

  it('reports the earliest failing check when several apply (expired and wrong product → ERR_EXPIRED)', async () => {
    const jws = await signManifest(
      exampleManifest({ product: 'other-vm', created: '2026-10-01T00:00:00Z', expires: EARLIER }),
      single.releaseKeys,
    );
    await expectCode(checkRelease(jws, single.root, device, NOW), 'ERR_EXPIRED');
  });

  it('a signature failure wins over every policy failure', async () => {
    const jws = await signManifest(exampleManifest({ product: 'other-vm' }), single.releaseKeys);
    const tampered = withPayload(jws, { ...(decodePayload(jws) as object), version: '0.0.1' });
    await expectCode(checkRelease(tampered, single.root, device, NOW), 'ERR_SIGNATURE_INVALID');
  });

  it('an invalid running version in the device facts → ERR_VERSION_INVALID', async () => {
    const jws = await signManifest(exampleManifest(), single.releaseKeys);
    await expectCode(
      checkRelease(jws, single.root, { ...device, currentVersion: 'v1' }, NOW),
      'ERR_VERSION_INVALID',
    );
  });
});

describe('checkRelease fails closed on bad caller input', () => {
  it('an Invalid Date clock → ERR_INVALID_ARGUMENT instead of skipping the expiry checks', async () => {
    const jws = await signManifest(exampleManifest(), single.releaseKeys);
    await expectCode(checkRelease(jws, single.root, device, new Date('not a date')), 'ERR_INVALID_ARGUMENT');
  });

  it('a NaN security floor → ERR_INVALID_ARGUMENT instead of passing every release', async () => {
    const jws = await signManifest(exampleManifest(), single.releaseKeys);
    const err = await expectCode(
      checkRelease(jws, single.root, { ...device, securityVersionFloor: Number.NaN }, NOW),
      'ERR_INVALID_ARGUMENT',
    );
    expect(err.message).toContain('securityVersionFloor');
  });

  it('a hand-built trust root with threshold 0 → ERR_ROOT_INVALID, never an unsigned accept', async () => {
    const [stranger] = await keys(1);
    const jws = await signManifest(exampleManifest(), [stranger!]);
    const weakened = {
      ...single.root,
      roles: { ...single.root.roles, release: { ...single.root.roles.release, threshold: 0 } },
    };
    await expectCode(checkRelease(jws, weakened, device, NOW), 'ERR_ROOT_INVALID');
  });

  it('a co-signature with a non-thumbprint kid is ignored and reported, not malformed', async () => {
    const jws = await signManifest(exampleManifest(), single.releaseKeys);
    const [other] = await keys(1);
    const foreign = await signManifest(exampleManifest(), [{ ...other!, kid: 'corp-signing-2026' }]);
    const both: GeneralJws = { ...jws, signatures: [...jws.signatures, ...foreign.signatures] };
    const decision = await checkRelease(both, single.root, device, NOW);
    expect(decision.unknownKids).toEqual(['corp-signing-2026']);
  });
});
