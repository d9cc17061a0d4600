// Ed25519 signing keys as JWK (RFC 8037), identified by their RFC 7638 thumbprint so a kid can
// never name a different key than the one it was computed from.
import * as v from 'valibot';
import { base64urlEncode } from './base64url.js';
import {
  generateEd25519,
  type PrivateJwk,
  importPrivateKey,
  importPublicKey,
  sha256,
  signEd25519,
  verifyEd25519,
} from './ed25519.js';
import { ManifestError } from './errors.js';
import { describeIssues } from './manifest-schema.js';

/**
 * 32 bytes in canonical base64url: 43 characters, the last one carrying 4 bits and 2 unused zero
 * bits. A non-canonical spelling decodes to the same key under another thumbprint (issue #16).
 */
const B64URL_32_BYTES = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;

/** A key id: base64url SHA-256 JWK thumbprint (RFC 7638), 43 characters. */
export const KidSchema = v.pipe(
  v.string(),
  v.regex(B64URL_32_BYTES, 'expected an RFC 7638 SHA-256 thumbprint (43 canonical base64url characters)'),
);

const Key32Schema = v.pipe(
  v.string(),
  v.regex(
    B64URL_32_BYTES,
    "expected 32 bytes in canonical base64url (43 characters, the last one's 2 unused bits zero)",
  ),
);

/** An Ed25519 public key as it appears in a trust root: exactly the RFC 7638 required members. */
export const PublicJwkSchema = v.strictObject({
  kty: v.literal('OKP'),
  crv: v.literal('Ed25519'),
  x: Key32Schema,
});
export type PublicJwk = v.InferOutput<typeof PublicJwkSchema>;

/** A private key file: the public members plus `d`, optionally `kid`, `alg`, `use` (checked). */
export const PrivateJwkSchema = v.strictObject({
  kty: v.literal('OKP'),
  crv: v.literal('Ed25519'),
  x: Key32Schema,
  d: Key32Schema,
  kid: v.optional(KidSchema),
  alg: v.optional(v.literal('EdDSA')),
  use: v.optional(v.literal('sig')),
});
/** What a key file may hold (PrivateJwkSchema). */
export type PrivateJwkFile = v.InferOutput<typeof PrivateJwkSchema>;
export type { PrivateJwk };

export interface SigningKey {
  kid: string;
  privateJwk: PrivateJwk;
  publicJwk: PublicJwk;
}

/** RFC 7638 SHA-256 thumbprint of an Ed25519 public key: its kid. */
export async function jwkThumbprint(jwk: PublicJwk): Promise<string> {
  // RFC 7638 §3.2: the required members only, lexicographic order, no whitespace.
  const members = `{"crv":"Ed25519","kty":"OKP","x":${JSON.stringify(jwk.x)}}`;
  return base64urlEncode(await sha256(new TextEncoder().encode(members)));
}

/** A fresh Ed25519 key pair with its kid. */
export async function generateSigningKey(): Promise<SigningKey> {
  return importSigningKey(await generateEd25519());
}

/**
 * Validate a private JWK (e.g. read from a key file) and return it as a SigningKey.
 * Throws ERR_KEY_INVALID when it is not an Ed25519 private key, when its `kid` is not its
 * thumbprint, or when `d` and `x` are not one key pair (a corrupted file).
 */
export async function importSigningKey(jwk: unknown): Promise<SigningKey> {
  const parsed = v.safeParse(PrivateJwkSchema, jwk);
  if (!parsed.success) {
    throw new ManifestError(
      'ERR_KEY_INVALID',
      `not an Ed25519 private JWK: ${describeIssues(parsed.issues.slice(0, 1))}`,
    );
  }
  const publicJwk: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x: parsed.output.x };
  const kid = await jwkThumbprint(publicJwk);
  if (parsed.output.kid !== undefined && parsed.output.kid !== kid) {
    throw new ManifestError(
      'ERR_KEY_INVALID',
      `JWK kid ${parsed.output.kid} is not its key's thumbprint ${kid}`,
    );
  }
  const privateJwk: PrivateJwk = { kty: 'OKP', crv: 'Ed25519', x: parsed.output.x, d: parsed.output.d };
  await assertKeyPair(privateJwk, publicJwk, kid);
  return { kid, privateJwk, publicJwk };
}

/** The JWK to write to a private key file: the key plus its kid, alg and use. */
export function exportPrivateJwk(key: SigningKey): Required<PrivateJwkFile> {
  return { ...key.privateJwk, kid: key.kid, alg: 'EdDSA', use: 'sig' };
}

/** The public half of a signing key, as a trust root lists it. */
export function exportPublicJwk(key: SigningKey): PublicJwk {
  return { ...key.publicJwk };
}

// WebCrypto cannot derive x from d, so a sign/verify round trip is how we notice a file whose
// two halves do not belong together (it would otherwise produce signatures nobody accepts).
async function assertKeyPair(privateJwk: PrivateJwk, publicJwk: PublicJwk, kid: string): Promise<void> {
  let ok = false;
  try {
    const probe = new TextEncoder().encode('abota key pair check');
    const signature = await signEd25519(await importPrivateKey(privateJwk), probe);
    ok = await verifyEd25519(await importPublicKey(publicJwk), signature, probe);
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new ManifestError(
      'ERR_KEY_INVALID',
      `private key ${kid}: d does not match x (corrupted key file?)`,
    );
  }
}
