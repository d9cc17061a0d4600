// General JWS JSON serialization (RFC 7515 §7.2.1) with EdDSA signatures, and the threshold rule
// of our trust model (TUF-style): a document is accepted for a role when at least `threshold`
// DISTINCT keys of that role produced a valid signature over the same payload.
// Signatures are made and checked with WebCrypto Ed25519 (ed25519.ts) over the JWS Signing
// Input ASCII(BASE64URL(protected) || '.' || BASE64URL(payload)) (RFC 7515 §5.1-5.2); the
// protected header is exactly { alg: EdDSA, kid, typ }, so no `crit` or `b64` extension
// (RFC 7515 §4.1.11, RFC 7797) can ever change what is signed.
import * as v from 'valibot';
import { base64urlDecode, base64urlEncode } from './base64url.js';
import { type CryptoKey, importPrivateKey, importPublicKey, signEd25519, verifyEd25519 } from './ed25519.js';
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
): Promise<RoleVerification> {
  // A threshold below 1 would accept a document nobody signed: never, whatever the caller built.
  if (!Number.isInteger(role.threshold) || role.threshold < 1) {
    throw new ManifestError(
      'ERR_INVALID_ARGUMENT',
      `${role.label}: threshold ${role.threshold} is not a positive integer`,
    );
  }
  const signedBy: string[] = [];
  const unknownKids: string[] = [];
  const imported = new Map<string, CryptoKey>();
  const encoder = new TextEncoder();
  for (const [index, sig] of jws.signatures.entries()) {
    const where = `signature #${index}`;
    const { kid } = decodeProtectedHeader(sig.protected, typ, where);
    const jwk = role.keyIds.includes(kid) ? role.keys[kid] : undefined;
    if (jwk === undefined) {
      if (!unknownKids.includes(kid)) unknownKids.push(kid);
      continue;
    }
    let key = imported.get(kid);
    let valid = false;
    let cause: unknown;
    try {
      if (key === undefined) {
        key = await importPublicKey(jwk);
        imported.set(kid, key);
      }
      // The payload must decode too (as jose's flattenedVerify requires), even though only
      // its encoded form is signed.
      base64urlDecode(jws.payload, 'payload');
      valid = await verifyEd25519(
        key,
        base64urlDecode(sig.signature, 'signature'),
        encoder.encode(`${sig.protected}.${jws.payload}`),
      );
    } catch (err) {
      cause = err;
    }
    if (!valid) {
      throw new ManifestError(
        'ERR_SIGNATURE_INVALID',
        `${where} by key ${kid} of the ${role.label} does not verify: the document was altered after signing or the signature is corrupt`,
        cause === undefined ? undefined : { cause },
      );
    }
    if (!signedBy.includes(kid)) signedBy.push(kid);
  }
  if (signedBy.length < role.threshold) {
    const unknown =
      unknownKids.length > 0 ? `; ignored signatures by keys not in the role: ${unknownKids.join(', ')}` : '';
    throw new ManifestError(
      'ERR_THRESHOLD_NOT_MET',
      `${role.label}: ${signedBy.length} of ${role.threshold} required distinct valid signatures (role keys: ${role.keyIds.join(', ')})${unknown}`,
    );
  }
  return { payload: base64urlDecode(jws.payload, 'payload'), signedBy, unknownKids };
}

/** Sign `payload` once per distinct key (duplicates in `keys` are signed once). */
export async function signGeneralJws(
  payload: Uint8Array,
  keys: readonly SigningKey[],
  typ: JwsType,
): Promise<GeneralJws> {
  if (keys.length === 0) {
    throw new ManifestError('ERR_INVALID_ARGUMENT', 'signing needs at least one key');
  }
  const encodedPayload = base64urlEncode(payload);
  const encoder = new TextEncoder();
  const signatures: GeneralJws['signatures'] = [];
  const seen = new Set<string>();
  for (const key of keys) {
    if (seen.has(key.kid)) continue;
    seen.add(key.kid);
    // Member order alg, kid, typ: the same bytes jose's GeneralSign produces for this header.
    const header = base64urlEncode(encoder.encode(JSON.stringify({ alg: 'EdDSA', kid: key.kid, typ })));
    const signature = await signEd25519(
      await importPrivateKey(key.privateJwk),
      encoder.encode(`${header}.${encodedPayload}`),
    );
    signatures.push({ protected: header, signature: base64urlEncode(signature) });
  }
  return { payload: encodedPayload, signatures };
}

/** Append signatures by more keys to an existing document (offline multi-party signing). */
export async function addSignatures(
  jws: GeneralJws,
  keys: readonly SigningKey[],
  typ: JwsType,
): Promise<GeneralJws> {
  const extra = await signGeneralJws(base64urlDecode(jws.payload, 'payload'), keys, typ);
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
