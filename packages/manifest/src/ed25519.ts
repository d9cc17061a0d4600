// Ed25519 (RFC 8032) through WebCrypto, which every runtime we target has (Node ≥ 20, Deno,
// Bun, workers, current browsers): key import from JWK (RFC 8037 §2), sign, verify, key
// generation and the SHA-256 of RFC 7638 thumbprints. No JOSE library here: the device loads
// only what it needs to verify (./jws.ts webCryptoEngine has the measurement).

const ED25519 = { name: 'Ed25519' } as const;

// Typed from the global (no DOM lib in this project's TypeScript settings).
type Subtle = typeof globalThis.crypto.subtle;
export type CryptoKey = Awaited<ReturnType<Subtle['importKey']>>;

function subtle(): Subtle {
  return globalThis.crypto.subtle;
}

/** The private key itself: exactly the members needed to sign. */
export interface PrivateJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  d: string;
}

/** A public key for verification (a trust root's PublicJwk, keys.ts); only `x` is passed on. */
export function importPublicKey(jwk: { readonly x: string }): Promise<CryptoKey> {
  return subtle().importKey('jwk', { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, ED25519, false, ['verify']);
}

export function importPrivateKey(jwk: PrivateJwk): Promise<CryptoKey> {
  return subtle().importKey('jwk', { kty: 'OKP', crv: 'Ed25519', x: jwk.x, d: jwk.d }, ED25519, false, [
    'sign',
  ]);
}

/** True when `signature` is a valid Ed25519 signature of `data`; false on any malformed input. */
export async function verifyEd25519(
  key: CryptoKey,
  signature: Uint8Array,
  data: Uint8Array,
): Promise<boolean> {
  try {
    return await subtle().verify(ED25519, key, signature, data);
  } catch {
    return false;
  }
}

export async function signEd25519(key: CryptoKey, data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().sign(ED25519, key, data));
}

/** A fresh key pair as the private JWK members (x, d). */
export async function generateEd25519(): Promise<PrivateJwk> {
  const pair = (await subtle().generateKey(ED25519, true, ['sign', 'verify'])) as {
    privateKey: CryptoKey;
  };
  const jwk = await subtle().exportKey('jwk', pair.privateKey);
  if (typeof jwk.x !== 'string' || typeof jwk.d !== 'string') throw new Error('Ed25519 export lacks x or d');
  return { kty: 'OKP', crv: 'Ed25519', x: jwk.x, d: jwk.d };
}

export async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().digest('SHA-256', data));
}
