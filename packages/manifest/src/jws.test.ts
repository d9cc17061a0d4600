// The WebCrypto General JWS code against jose, an independent implementation of RFC 7515/8037:
// the same keys produce the same bytes, documents signed by jose verify here, ours verify in
// jose, and every altered part of a jose-signed document is refused.
import { base64url, GeneralSign, generalVerify, importJWK } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { exampleManifest, makeRoot, NOW, type RootFixture } from '../test/fixtures.js';
import { canonicalJsonBytes } from './canonical-json.js';
import { ManifestError, type ManifestErrorCode } from './errors.js';
import { type GeneralJws, JWS_TYPE_RELEASE, signGeneralJws } from './jws.js';
import type { SigningKey } from './keys.js';
import { verifyManifest } from './release.js';

let fixture: RootFixture;
beforeAll(async () => {
  fixture = await makeRoot({ releaseKeys: 2, releaseThreshold: 2 });
});

/** Sign with jose's GeneralSign, one signature per key, with the given protected header. */
async function joseSign(
  payload: Uint8Array,
  signers: readonly SigningKey[],
  header: (key: SigningKey) => Record<string, unknown> = (key) => ({
    alg: 'EdDSA',
    kid: key.kid,
    typ: JWS_TYPE_RELEASE,
  }),
): Promise<GeneralJws> {
  const sign = new GeneralSign(payload);
  for (const key of signers) {
    sign.addSignature(await importJWK(key.privateJwk, 'EdDSA')).setProtectedHeader(header(key) as never);
  }
  const jws = await sign.sign();
  return {
    payload: jws.payload,
    signatures: jws.signatures.map((s) => ({ protected: s.protected ?? '', signature: s.signature })),
  };
}

async function codeOf(promise: Promise<unknown>): Promise<ManifestErrorCode> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(ManifestError);
    return (err as ManifestError).code;
  }
  throw new Error('expected a ManifestError, the call succeeded');
}

/** Replace one base64url character with another (so the text stays base64url). */
function flipChar(text: string, index: number): string {
  const c = text[index] === 'A' ? 'B' : 'A';
  return text.slice(0, index) + c + text.slice(index + 1);
}

describe('General JWS against jose', () => {
  it('signs the same bytes as jose (Ed25519 is deterministic) and jose verifies them', async () => {
    const payload = canonicalJsonBytes(exampleManifest());
    const ours = await signGeneralJws(payload, fixture.releaseKeys, JWS_TYPE_RELEASE);
    expect(ours).toEqual(await joseSign(payload, fixture.releaseKeys));
    for (const key of fixture.releaseKeys) {
      const index = ours.signatures.findIndex(
        (s) => JSON.parse(new TextDecoder().decode(base64url.decode(s.protected))).kid === key.kid,
      );
      const { payload: verified } = await generalVerify(
        { payload: ours.payload, signatures: [ours.signatures[index]!] },
        await importJWK(key.publicJwk, 'EdDSA'),
      );
      expect(verified).toEqual(payload);
    }
  });

  it('verifies a manifest signed by jose', async () => {
    const jws = await joseSign(canonicalJsonBytes(exampleManifest()), fixture.releaseKeys);
    const verified = await verifyManifest(JSON.stringify(jws), fixture.root, NOW);
    expect(verified.manifest).toEqual(exampleManifest());
    expect(verified.signedBy.sort()).toEqual(fixture.releaseKeys.map((k) => k.kid).sort());
  });

  it('refuses a jose-signed manifest with an altered payload, signature or header', async () => {
    const jws = await joseSign(canonicalJsonBytes(exampleManifest()), fixture.releaseKeys);
    const sig0 = jws.signatures[0]!;
    const tampered: [string, GeneralJws, ManifestErrorCode][] = [
      [
        'payload (another valid manifest)',
        {
          ...jws,
          payload: base64url.encode(canonicalJsonBytes(exampleManifest({ securityVersion: 9 }))),
        },
        'ERR_SIGNATURE_INVALID',
      ],
      ['payload (one character)', { ...jws, payload: flipChar(jws.payload, 10) }, 'ERR_SIGNATURE_INVALID'],
      [
        'signature (one character)',
        { ...jws, signatures: [{ ...sig0, signature: flipChar(sig0.signature, 5) }, jws.signatures[1]!] },
        'ERR_SIGNATURE_INVALID',
      ],
      [
        'signature (truncated)',
        { ...jws, signatures: [{ ...sig0, signature: sig0.signature.slice(0, 40) }, jws.signatures[1]!] },
        'ERR_SIGNATURE_INVALID',
      ],
      [
        'signature swapped between keys',
        {
          ...jws,
          signatures: [
            { ...sig0, signature: jws.signatures[1]!.signature },
            { ...jws.signatures[1]!, signature: sig0.signature },
          ],
        },
        'ERR_SIGNATURE_INVALID',
      ],
      [
        'payload not base64url-decodable (length 1 mod 4)',
        { ...jws, payload: `${jws.payload}A`.slice(0, jws.payload.length - (jws.payload.length % 4) + 1) },
        'ERR_SIGNATURE_INVALID',
      ],
    ];
    for (const [name, doc, code] of tampered) {
      expect(await codeOf(verifyManifest(doc, fixture.root, NOW)), name).toBe(code);
    }
  });

  it('refuses headers outside { alg: EdDSA, kid, typ }, even when jose signed them validly', async () => {
    const payload = canonicalJsonBytes(exampleManifest());
    const headers: [string, (key: SigningKey) => Record<string, unknown>][] = [
      ['alg Ed25519 (RFC 9864 name)', (k) => ({ alg: 'Ed25519', kid: k.kid, typ: JWS_TYPE_RELEASE })],
      [
        'b64 false with crit',
        (k) => ({ alg: 'EdDSA', kid: k.kid, typ: JWS_TYPE_RELEASE, b64: false, crit: ['b64'] }),
      ],
      ['an extra member', (k) => ({ alg: 'EdDSA', kid: k.kid, typ: JWS_TYPE_RELEASE, cty: 'json' })],
      ['no kid', () => ({ alg: 'EdDSA', typ: JWS_TYPE_RELEASE })],
      ['the root typ', (k) => ({ alg: 'EdDSA', kid: k.kid, typ: 'abota-root+jws' })],
    ];
    for (const [name, header] of headers) {
      const jws = await joseSign(payload, fixture.releaseKeys, header);
      expect(await codeOf(verifyManifest(jws, fixture.root, NOW)), name).toBe('ERR_JWS_MALFORMED');
    }
  });

  it('counts a jose signature by only one of two required keys as under threshold', async () => {
    const jws = await joseSign(canonicalJsonBytes(exampleManifest()), fixture.releaseKeys.slice(0, 1));
    expect(await codeOf(verifyManifest(jws, fixture.root, NOW))).toBe('ERR_THRESHOLD_NOT_MET');
  });
});
