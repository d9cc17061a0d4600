// The JwsEngine of the publisher and the update server (`@abota/manifest/jose`): jose's
// GeneralSign makes the signatures, its flattenedVerify checks each one. The document rules
// (header shape, typ, kids, thresholds) stay in ./jws.ts, shared with the device's WebCrypto
// engine; the two produce the same bytes and accept and refuse the same documents
// (jose-engine.test.ts). Not imported by the package's main entry, so the device never loads
// jose (./jws.ts webCryptoEngine says why).
import { type CryptoKey, flattenedVerify, GeneralSign, importJWK } from 'jose';
import type { JwsEngine } from './jws.js';
import type { PrivateJwk, PublicJwk } from './keys.js';

/** Only the RFC 8037 members go to jose: a kid, alg or use in a key file changes nothing. */
async function importKey(jwk: PublicJwk | PrivateJwk): Promise<CryptoKey> {
  const members =
    'd' in jwk
      ? { kty: 'OKP', crv: 'Ed25519', x: jwk.x, d: jwk.d }
      : { kty: 'OKP', crv: 'Ed25519', x: jwk.x };
  return (await importJWK(members, 'EdDSA')) as CryptoKey;
}

export const joseEngine: JwsEngine = {
  async verify(jws, jwk) {
    try {
      await flattenedVerify(jws, await importKey(jwk), { algorithms: ['EdDSA'] });
      return true;
    } catch {
      return false;
    }
  },
  async sign(payload, keys, typ) {
    const general = new GeneralSign(payload);
    for (const key of keys) {
      // Member order alg, kid, typ: what the WebCrypto engine writes too.
      general
        .addSignature(await importKey(key.privateJwk))
        .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ });
    }
    const jws = await general.sign();
    return {
      payload: jws.payload,
      signatures: jws.signatures.map((s) => {
        if (s.protected === undefined)
          throw new Error('jose GeneralSign returned a signature without a protected header');
        return { protected: s.protected, signature: s.signature };
      }),
    };
  },
};
