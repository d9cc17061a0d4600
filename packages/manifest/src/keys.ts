// Ed25519 signing keys as JWK (RFC 8037), identified by their RFC 7638 thumbprint so a kid can
// never name a different key than the one it was computed from.
import {
  calculateJwkThumbprint,
  exportJWK,
  FlattenedSign,
  flattenedVerify,
  generateKeyPair,
  importJWK,
} from 'jose';
import { z } from 'zod';
import { ManifestError } from './errors.js';

const B64URL_32_BYTES = /^[A-Za-z0-9_-]{43}$/;

/** A key id: base64url SHA-256 JWK thumbprint (RFC 7638), 43 characters. */
export const KidSchema = z
  .string()
  .regex(B64URL_32_BYTES, 'expected an RFC 7638 SHA-256 thumbprint (43 base64url characters)');

/** An Ed25519 public key as it appears in a trust root: exactly the RFC 7638 required members. */
export const PublicJwkSchema = z.strictObject({
  kty: z.literal('OKP'),
  crv: z.literal('Ed25519'),
  x: z.string().regex(B64URL_32_BYTES, 'expected 32 bytes base64url'),
});
export type PublicJwk = z.infer<typeof PublicJwkSchema>;

/** A private key file: the public members plus `d`, optionally `kid`, `alg`, `use` (checked). */
export const PrivateJwkSchema = z.strictObject({
  kty: z.literal('OKP'),
  crv: z.literal('Ed25519'),
  x: z.string().regex(B64URL_32_BYTES, 'expected 32 bytes base64url'),
  d: z.string().regex(B64URL_32_BYTES, 'expected 32 bytes base64url'),
  kid: KidSchema.optional(),
  alg: z.literal('EdDSA').optional(),
  use: z.literal('sig').optional(),
});
/** What a key file may hold (PrivateJwkSchema). */
export type PrivateJwkFile = z.infer<typeof PrivateJwkSchema>;
/** The private key itself: exactly the members needed to sign. */
export interface PrivateJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  d: string;
}

export interface SigningKey {
  kid: string;
  privateJwk: PrivateJwk;
  publicJwk: PublicJwk;
}

/** RFC 7638 SHA-256 thumbprint of an Ed25519 public key: its kid. */
export async function jwkThumbprint(jwk: PublicJwk): Promise<string> {
  return calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x }, 'sha256');
}

/** A fresh Ed25519 key pair with its kid. */
export async function generateSigningKey(): Promise<SigningKey> {
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const jwk = await exportJWK(privateKey);
  return importSigningKey(jwk);
}

/**
 * Validate a private JWK (e.g. read from a key file) and return it as a SigningKey.
 * Throws ERR_KEY_INVALID when it is not an Ed25519 private key, when its `kid` is not its
 * thumbprint, or when `d` and `x` are not one key pair (a corrupted file).
 */
export async function importSigningKey(jwk: unknown): Promise<SigningKey> {
  const parsed = PrivateJwkSchema.safeParse(jwk);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ManifestError(
      'ERR_KEY_INVALID',
      `not an Ed25519 private JWK: ${issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'invalid'}`,
    );
  }
  const publicJwk: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x: parsed.data.x };
  const kid = await jwkThumbprint(publicJwk);
  if (parsed.data.kid !== undefined && parsed.data.kid !== kid) {
    throw new ManifestError(
      'ERR_KEY_INVALID',
      `JWK kid ${parsed.data.kid} is not its key's thumbprint ${kid}`,
    );
  }
  const privateJwk: PrivateJwk = { kty: 'OKP', crv: 'Ed25519', x: parsed.data.x, d: parsed.data.d };
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
    const jws = await new FlattenedSign(probe)
      .setProtectedHeader({ alg: 'EdDSA' })
      .sign(await importJWK(privateJwk, 'EdDSA'));
    await flattenedVerify(jws, await importJWK(publicJwk, 'EdDSA'), { algorithms: ['EdDSA'] });
    ok = true;
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
