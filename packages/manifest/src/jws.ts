// General JWS JSON serialization (RFC 7515 §7.2.1) with EdDSA signatures, and the threshold rule
// of our trust model (TUF-style): a document is accepted for a role when at least `threshold`
// DISTINCT keys of that role produced a valid signature over the same payload.
// The rules live here whoever computes the signatures: limits, the protected header being exactly
// { alg: EdDSA, kid, typ } (so no `crit` or `b64` extension, RFC 7515 §4.1.11 / RFC 7797, can
// ever change what is signed), typ, kids and thresholds. The Ed25519 operations over the JWS
// Signing Input ASCII(BASE64URL(protected) || '.' || BASE64URL(payload)) (RFC 7515 §5.1-5.2) are
// a JwsEngine's: jose (./jose-engine.ts, `@abota/manifest/jose`) for the publisher and the
// server, the hand-written WebCrypto one below (webCryptoEngine) on the device.
import * as v from 'valibot';
import { base64urlDecode, base64urlEncode } from './base64url.js';
import { importPrivateKey, importPublicKey, signEd25519, verifyEd25519 } from './ed25519.js';
import { ManifestError } from './errors.js';
import type { PublicJwk, SigningKey } from './keys.js';
import { describeIssues } from './manifest-schema.js';

/** Largest JWS document accepted, checked before any parsing (a manifest is a few KiB). */
export const MAX_JWS_BYTES = 1024 * 1024;
/** Most signatures one document may carry. */
export const MAX_SIGNATURES = 64;

export const JWS_TYPE_RELEASE = 'abota-release+jws';
export const JWS_TYPE_ROOT = 'abota-root+jws';
export type JwsType = typeof JWS_TYPE_RELEASE | typeof JWS_TYPE_ROOT;

const B64URL = /^[A-Za-z0-9_-]*$/;

const Base64urlSchema = v.pipe(v.string(), v.regex(B64URL, 'expected base64url'));
const NonEmptyBase64urlSchema = v.pipe(v.string(), v.minLength(1), v.regex(B64URL, 'expected base64url'));

export const GeneralJwsSchema = v.strictObject({
  payload: Base64urlSchema,
  signatures: v.pipe(
    v.array(v.strictObject({ protected: NonEmptyBase64urlSchema, signature: NonEmptyBase64urlSchema })),
    v.minLength(1),
    v.maxLength(MAX_SIGNATURES),
  ),
});
/** `{ payload, signatures: [{ protected, signature }] }` — the content of manifest.jws and root.json. */
export type GeneralJws = v.InferOutput<typeof GeneralJwsSchema>;

/** The keys and threshold one role trusts. */
export interface RoleKeys {
  /** For messages: "release role of root v3". */
  label: string;
  threshold: number;
  keyIds: readonly string[];
  keys: Readonly<Record<string, PublicJwk>>;
}

export interface RoleVerification {
  /** The payload bytes exactly as signed (decode THESE, never an unsigned copy). */
  payload: Uint8Array;
  /** Distinct kids of the role with a valid signature, in signature order. */
  signedBy: string[];
  /** Kids of signatures that were ignored because the key is not in the role. */
  unknownKids: string[];
}

/** One signature of a General JWS with its payload: a flattened JWS (RFC 7515 §7.2.2). */
export interface FlattenedJws {
  payload: string;
  protected: string;
  signature: string;
}

/**
 * Who makes and checks the Ed25519 signatures of our General JWS documents. Both engines must
 * produce the same bytes for the same keys (Ed25519 is deterministic) and accept and refuse the
 * same documents (jose-engine.test.ts).
 */
export interface JwsEngine {
  /** True when `jws.signature` verifies with `jwk`; false, never a throw, on any malformed input. */
  verify(jws: FlattenedJws, jwk: PublicJwk): Promise<boolean>;
  /** `payload` signed once per key, protected header { alg: EdDSA, kid, typ } in that member order. */
  sign(payload: Uint8Array, keys: readonly SigningKey[], typ: JwsType): Promise<GeneralJws>;
}

/** Which engine signs or verifies; WebCrypto (webCryptoEngine) unless one is given. */
export interface JwsOptions {
  engine?: JwsEngine;
}

/**
 * The hand-written engine over WebCrypto Ed25519 (./ed25519.ts), kept for the device, where
 * memory is the constraint. Measured with bench/engine-rss.ts (a fresh Node 24 process loads the
 * agent's library, @abota/client, then verifies a manifest 50 times; median of 7, 2-core machine):
 * this engine adds 4.35 MiB of resident memory to the 67.55 MiB of the loaded agent library,
 * jose adds 8.34 MiB — jose would cost the agent 4.0 MiB more for the same checks. The
 * publisher and the server sign and verify with jose (./jose-engine.ts).
 */
export const webCryptoEngine: JwsEngine = {
  async verify(jws, jwk) {
    const encoder = new TextEncoder();
    try {
      // The payload must decode too (as jose's flattenedVerify requires), even though only
      // its encoded form is signed.
      base64urlDecode(jws.payload, 'payload');
      return await verifyEd25519(
        await importPublicKey(jwk),
        base64urlDecode(jws.signature, 'signature'),
        encoder.encode(`${jws.protected}.${jws.payload}`),
      );
    } catch {
      return false;
    }
  },
  async sign(payload, keys, typ) {
    const encodedPayload = base64urlEncode(payload);
    const encoder = new TextEncoder();
    const signatures: GeneralJws['signatures'] = [];
    for (const key of keys) {
      // Member order alg, kid, typ: the same bytes jose's GeneralSign produces for this header.
      const header = base64urlEncode(encoder.encode(JSON.stringify({ alg: 'EdDSA', kid: key.kid, typ })));
      const signature = await signEd25519(
        await importPrivateKey(key.privateJwk),
        encoder.encode(`${header}.${encodedPayload}`),
      );
      signatures.push({ protected: header, signature: base64urlEncode(signature) });
    }
    return { payload: encodedPayload, signatures };
  },
};

/**
 * Parse a General JWS from text, bytes or an already-parsed object. The byte limit applies
 * before JSON parsing; shape and header errors are ERR_JWS_MALFORMED.
 */
export function parseGeneralJws(input: string | Uint8Array | GeneralJws, what: string): GeneralJws {
  let value: unknown = input;
  if (typeof input !== 'string' && !(input instanceof Uint8Array)) {
    // Already parsed by the caller: still bound what we are about to walk.
    if (JSON.stringify(input).length > MAX_JWS_BYTES) {
      throw new ManifestError(
        'ERR_JWS_MALFORMED',
        `${what}: larger than the limit of ${MAX_JWS_BYTES} bytes`,
      );
    }
  } else {
    // UTF-8 needs at least one byte per UTF-16 code unit, so a long string is refused unencoded.
    const sizeBytes =
      typeof input === 'string'
        ? input.length > MAX_JWS_BYTES
          ? input.length
          : new TextEncoder().encode(input).length
        : input.length;
    if (sizeBytes > MAX_JWS_BYTES) {
      throw new ManifestError(
        'ERR_JWS_MALFORMED',
        `${what}: ${sizeBytes} bytes exceeds the limit of ${MAX_JWS_BYTES}`,
      );
    }
    let text: string;
    try {
      text = typeof input === 'string' ? input : new TextDecoder('utf-8', { fatal: true }).decode(input);
      value = JSON.parse(text);
    } catch (err) {
      throw new ManifestError('ERR_JWS_MALFORMED', `${what}: not JSON (${(err as Error).message})`, {
        cause: err,
      });
    }
  }
  const parsed = v.safeParse(GeneralJwsSchema, value);
  if (!parsed.success) {
    throw new ManifestError(
      'ERR_JWS_MALFORMED',
      `${what}: not a General JWS JSON document (${describeIssues(parsed.issues.slice(0, 1))})`,
    );
  }
  return parsed.output;
}

// kid is any short string here: a co-signature by a key outside our roots (whatever its kid
// scheme) is ignored and reported, not a malformed document. Role kids are thumbprints.
const ProtectedHeaderSchema = v.strictObject({
  alg: v.literal('EdDSA'),
  kid: v.pipe(v.string(), v.minLength(1), v.maxLength(256)),
  typ: v.string(),
});

/** Decode and check one protected header: exactly { alg: EdDSA, kid, typ } with the expected typ. */
function decodeProtectedHeader(encoded: string, typ: JwsType, where: string): { kid: string } {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(base64urlDecode(encoded)));
  } catch (err) {
    throw new ManifestError('ERR_JWS_MALFORMED', `${where}: protected header is not base64url JSON`, {
      cause: err,
    });
  }
  const parsed = v.safeParse(ProtectedHeaderSchema, header);
  if (!parsed.success) {
    throw new ManifestError(
      'ERR_JWS_MALFORMED',
      `${where}: protected header must be exactly { alg: "EdDSA", kid, typ } (${describeIssues(parsed.issues.slice(0, 1))})`,
    );
  }
  // typ binds the signature to one document kind, so a root can never pass as a manifest.
  if (parsed.output.typ !== typ) {
    throw new ManifestError(
      'ERR_JWS_MALFORMED',
      `${where}: typ is ${JSON.stringify(parsed.output.typ)}, expected ${JSON.stringify(typ)}`,
    );
  }
  return { kid: parsed.output.kid };
}

/** Check every protected header (alg, kid, typ) without verifying: ERR_JWS_MALFORMED on the first bad one. */
export function checkProtectedHeaders(jws: GeneralJws, typ: JwsType): void {
  for (const [index, sig] of jws.signatures.entries())
    decodeProtectedHeader(sig.protected, typ, `signature #${index}`);
}

/**
 * Verify the signatures of `jws` for one role. A signature whose kid is in the role and does not
 * verify is ERR_SIGNATURE_INVALID (a tampered document is never "just under threshold");
 * signatures by other keys are ignored and reported; a key signing twice counts once; fewer
 * distinct valid kids than the threshold is ERR_THRESHOLD_NOT_MET.
 */
export async function verifyRoleSignatures(
  jws: GeneralJws,
  typ: JwsType,
  role: RoleKeys,
  engine: JwsEngine = webCryptoEngine,
): Promise<RoleVerification> {
  // A threshold below 1 would accept a document nobody signed: never, whatever the caller built.
  if (!Number.isInteger(role.threshold) || role.threshold < 1) {
    throw new ManifestError(
      'ERR_INVALID_ARGUMENT',
      `${role.label}: threshold ${role.threshold} is not a positive integer`,
    );
  }
  const signedBy: string[] = [];
  const signedKeys = new Set<string>();
  const unknownKids: string[] = [];
  for (const [index, sig] of jws.signatures.entries()) {
    const where = `signature #${index}`;
    const { kid } = decodeProtectedHeader(sig.protected, typ, where);
    const jwk = role.keyIds.includes(kid) ? role.keys[kid] : undefined;
    if (jwk === undefined) {
      if (!unknownKids.includes(kid)) unknownKids.push(kid);
      continue;
    }
    const valid = await engine.verify({ payload: jws.payload, ...sig }, jwk);
    if (!valid) {
      throw new ManifestError(
        'ERR_SIGNATURE_INVALID',
        `${where} by key ${kid} of the ${role.label} does not verify: the document was altered after signing or the signature is corrupt`,
      );
    }
    if (!signedBy.includes(kid)) signedBy.push(kid);
    // Distinct keys, not distinct kids: one key listed under two kids (or two spellings of its
    // x: atob ignores the unused bits a non-canonical spelling sets) counts once.
    signedKeys.add(atob(jwk.x.replace(/-/g, '+').replace(/_/g, '/')));
  }
  if (signedKeys.size < role.threshold) {
    const unknown =
      unknownKids.length > 0 ? `; ignored signatures by keys not in the role: ${unknownKids.join(', ')}` : '';
    throw new ManifestError(
      'ERR_THRESHOLD_NOT_MET',
      `${role.label}: ${signedKeys.size} of ${role.threshold} required valid signatures by distinct keys (role keys: ${role.keyIds.join(', ')})${unknown}`,
    );
  }
  return { payload: base64urlDecode(jws.payload, 'payload'), signedBy, unknownKids };
}

/** Sign `payload` once per distinct key (duplicates in `keys` are signed once). */
export async function signGeneralJws(
  payload: Uint8Array,
  keys: readonly SigningKey[],
  typ: JwsType,
  engine: JwsEngine = webCryptoEngine,
): Promise<GeneralJws> {
  if (keys.length === 0) {
    throw new ManifestError('ERR_INVALID_ARGUMENT', 'signing needs at least one key');
  }
  const distinct = keys.filter((key, index) => keys.findIndex((k) => k.kid === key.kid) === index);
  return engine.sign(payload, distinct, typ);
}

/** Append signatures by more keys to an existing document (offline multi-party signing). */
export async function addSignatures(
  jws: GeneralJws,
  keys: readonly SigningKey[],
  typ: JwsType,
  engine: JwsEngine = webCryptoEngine,
): Promise<GeneralJws> {
  const extra = await signGeneralJws(base64urlDecode(jws.payload, 'payload'), keys, typ, engine);
  return { payload: jws.payload, signatures: [...jws.signatures, ...extra.signatures] };
}

/** Decode verified payload bytes as strict UTF-8 JSON that must be in canonical form. */
export function decodeCanonicalPayload(
  payload: Uint8Array,
  canonicalize: (value: unknown) => string,
): { ok: true; value: unknown } | { ok: false; reason: string } {
  let text: string;
  let value: unknown;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(payload);
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: `payload is not UTF-8 JSON (${(err as Error).message})` };
  }
  let canonical: string;
  try {
    canonical = canonicalize(value);
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  if (canonical !== text) {
    return { ok: false, reason: 'payload is not canonical JSON (sorted keys, no whitespace; RFC 8785)' };
  }
  return { ok: true, value };
}
