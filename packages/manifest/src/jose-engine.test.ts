// The two JwsEngines against each other: jose (publisher, server) and the hand-written WebCrypto
// engine (device). Each accepts the other's output, they sign the same bytes, and both refuse
// the same tampered documents with the same error code — through verifyManifest,
// verifyTrustRoot and verifyRootChain, the calls the server and the device make.
import { base64url, generalVerify, importJWK } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { exampleManifest, keys, LATER, makeRoot, NOW, type RootFixture } from '../test/fixtures.js';
import { canonicalJsonBytes } from './canonical-json.js';
import { ManifestError, type ManifestErrorCode } from './errors.js';
import { joseEngine } from './jose-engine.js';
import { type GeneralJws, JWS_TYPE_RELEASE, type JwsEngine, webCryptoEngine } from './jws.js';
import { signManifest, verifyManifest } from './release.js';
import { createTrustRoot, signTrustRoot, verifyRootChain, verifyTrustRoot } from './root.js';

const ENGINES: [string, JwsEngine][] = [
  ['jose', joseEngine],
  ['WebCrypto', webCryptoEngine],
];

let fixture: RootFixture;
beforeAll(async () => {
  fixture = await makeRoot({ releaseKeys: 3, releaseThreshold: 2 });
});

async function outcome(promise: Promise<unknown>): Promise<ManifestErrorCode | 'accepted'> {
  try {
    await promise;
    return 'accepted';
  } catch (err) {
    if (!(err instanceof ManifestError)) throw err;
    return err.code;
  }
}

function flipChar(text: string, index: number): string {
  return text.slice(0, index) + (text[index] === 'A' ? 'B' : 'A') + text.slice(index + 1);
}

function header(jws: GeneralJws, index: number): Record<string, unknown> {
  return JSON.parse(new TextDecoder().decode(base64url.decode(jws.signatures[index]!.protected)));
}

function withHeader(jws: GeneralJws, index: number, value: Record<string, unknown>): GeneralJws {
  const signatures = jws.signatures.map((s, i) =>
    i === index ? { ...s, protected: base64url.encode(JSON.stringify(value)) } : s,
  );
  return { ...jws, signatures };
}

/** Altered copies of a document signed by release keys 0 and 1, and what each must give. */
async function tamperedVectors(jws: GeneralJws): Promise<[string, GeneralJws, ManifestErrorCode][]> {
  const [s0, s1] = [jws.signatures[0]!, jws.signatures[1]!];
  const stranger = (await keys(1))[0]!;
  const strangerSigned = await signManifest(exampleManifest(), [stranger]);
  return [
    [
      'payload replaced by another valid manifest',
      { ...jws, payload: base64url.encode(canonicalJsonBytes(exampleManifest({ securityVersion: 9 }))) },
      'ERR_SIGNATURE_INVALID',
    ],
    ['payload, one character', { ...jws, payload: flipChar(jws.payload, 12) }, 'ERR_SIGNATURE_INVALID'],
    [
      'payload not base64url-decodable',
      { ...jws, payload: jws.payload.slice(0, jws.payload.length - (jws.payload.length % 4) + 1) },
      'ERR_SIGNATURE_INVALID',
    ],
    [
      'signature, one character',
      { ...jws, signatures: [{ ...s0, signature: flipChar(s0.signature, 7) }, s1] },
      'ERR_SIGNATURE_INVALID',
    ],
    [
      'signature truncated',
      { ...jws, signatures: [{ ...s0, signature: s0.signature.slice(0, 40) }, s1] },
      'ERR_SIGNATURE_INVALID',
    ],
    [
      'signatures swapped between the keys',
      {
        ...jws,
        signatures: [
          { ...s0, signature: s1.signature },
          { ...s1, signature: s0.signature },
        ],
      },
      'ERR_SIGNATURE_INVALID',
    ],
    [
      'kid of signature 0 changed to key 2',
      withHeader(jws, 0, { ...header(jws, 0), kid: fixture.releaseKeys[2]!.kid }),
      'ERR_SIGNATURE_INVALID',
    ],
    ['alg Ed25519', withHeader(jws, 0, { ...header(jws, 0), alg: 'Ed25519' }), 'ERR_JWS_MALFORMED'],
    ['alg none', withHeader(jws, 0, { ...header(jws, 0), alg: 'none' }), 'ERR_JWS_MALFORMED'],
    [
      'b64 false with crit',
      withHeader(jws, 0, { ...header(jws, 0), b64: false, crit: ['b64'] }),
      'ERR_JWS_MALFORMED',
    ],
    ['typ of a root', withHeader(jws, 0, { ...header(jws, 0), typ: 'abota-root+jws' }), 'ERR_JWS_MALFORMED'],
    ['one signature left of two required', { ...jws, signatures: [s0] }, 'ERR_THRESHOLD_NOT_MET'],
    ['the same signature twice', { ...jws, signatures: [s0, s0] }, 'ERR_THRESHOLD_NOT_MET'],
    ['signed by a key outside the root', strangerSigned, 'ERR_THRESHOLD_NOT_MET'],
    ['no signatures', { ...jws, signatures: [] }, 'ERR_JWS_MALFORMED'],
  ];
}

describe('jose and WebCrypto engines', () => {
  it('sign the same bytes (Ed25519 is deterministic): manifests and trust roots', async () => {
    const signers = fixture.releaseKeys.slice(0, 2);
    const byJose = await signManifest(exampleManifest(), signers, fixture.root, { engine: joseEngine });
    expect(byJose).toEqual(await signManifest(exampleManifest(), signers, fixture.root));
    const rootByJose = await signTrustRoot(fixture.root, fixture.rootKeys, undefined, { engine: joseEngine });
    expect(rootByJose).toEqual(fixture.signed);
  });

  for (const [signerName, signer] of ENGINES) {
    for (const [verifierName, verifier] of ENGINES) {
      it(`a manifest signed by ${signerName} verifies with ${verifierName}`, async () => {
        const jws = await signManifest(exampleManifest(), fixture.releaseKeys.slice(0, 2), undefined, {
          engine: signer,
        });
        const verified = await verifyManifest(JSON.stringify(jws), fixture.root, NOW, { engine: verifier });
        expect(verified.manifest).toEqual(exampleManifest());
        expect(verified.signedBy).toEqual(fixture.releaseKeys.slice(0, 2).map((k) => k.kid));
      });
    }
  }

  it("our WebCrypto signer's output verifies in jose's own generalVerify, signature by signature", async () => {
    const jws = await signManifest(exampleManifest(), fixture.releaseKeys.slice(0, 2));
    for (const [index, key] of fixture.releaseKeys.slice(0, 2).entries()) {
      const { payload, protectedHeader } = await generalVerify(
        { payload: jws.payload, signatures: [jws.signatures[index]!] },
        await importJWK(key.publicJwk, 'EdDSA'),
        { algorithms: ['EdDSA'] },
      );
      expect(payload).toEqual(canonicalJsonBytes(exampleManifest()));
      expect(protectedHeader).toEqual({ alg: 'EdDSA', kid: key.kid, typ: JWS_TYPE_RELEASE });
    }
  });

  it('both refuse the same tampered documents with the same code', async () => {
    const jws = await signManifest(exampleManifest(), fixture.releaseKeys.slice(0, 2), undefined, {
      engine: joseEngine,
    });
    const vectors = await tamperedVectors(jws);
    for (const [name, doc, code] of vectors) {
      const byJose = await outcome(verifyManifest(doc, fixture.root, NOW, { engine: joseEngine }));
      const byDevice = await outcome(verifyManifest(doc, fixture.root, NOW));
      expect({ name, byJose, byDevice }).toEqual({ name, byJose: code, byDevice: code });
    }
    // The untouched document is accepted by both: the vectors fail for what was altered.
    expect(await outcome(verifyManifest(jws, fixture.root, NOW, { engine: joseEngine }))).toBe('accepted');
    expect(await outcome(verifyManifest(jws, fixture.root, NOW))).toBe('accepted');
  });

  it('walk a rotated root chain alike, and both refuse a rotation signed only by the new keys', async () => {
    const newRootKeys = await keys(1);
    const v2 = await createTrustRoot({
      version: 2,
      expires: LATER,
      rootKeys: newRootKeys,
      rootThreshold: 1,
      releaseKeys: fixture.releaseKeys,
      releaseThreshold: 2,
    });
    const rotated = await signTrustRoot(v2, [...fixture.rootKeys, ...newRootKeys], fixture.root, {
      engine: joseEngine,
    });
    const selfSigned = await signTrustRoot(v2, newRootKeys);
    for (const [, engine] of ENGINES) {
      expect(await verifyTrustRoot(fixture.signed, { engine })).toEqual(fixture.root);
      expect((await verifyRootChain(fixture.signed, [rotated], NOW, { engine })).version).toBe(2);
      expect(await outcome(verifyRootChain(fixture.signed, [selfSigned], NOW, { engine }))).toBe(
        'ERR_THRESHOLD_NOT_MET',
      );
    }
  });
});
