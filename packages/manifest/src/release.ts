// Signing and verifying release manifests: canonical JSON payload in a General JWS with
// `typ: abota-release+jws`, accepted when the release role's threshold of distinct keys signed it.
import { canonicalJson, canonicalJsonBytes } from './canonical-json.js';
import { ManifestError } from './errors.js';
import {
  decodeCanonicalPayload,
  type GeneralJws,
  JWS_TYPE_RELEASE,
  type JwsOptions,
  parseGeneralJws,
  signGeneralJws,
  verifyRoleSignatures,
} from './jws.js';
import type { SigningKey } from './keys.js';
import * as v from 'valibot';
import { describeIssues, type ReleaseManifest, ReleaseManifestSchema } from './manifest-schema.js';
import { assertRootUnexpired, assertValidNow, roleKeys, type TrustRoot, TrustRootSchema } from './root.js';

/** Validate a manifest value against the schema; throws ERR_MANIFEST_INVALID with field paths. */
export function parseManifest(value: unknown): ReleaseManifest {
  const parsed = v.safeParse(ReleaseManifestSchema, value);
  if (!parsed.success) {
    throw new ManifestError('ERR_MANIFEST_INVALID', `release manifest: ${describeIssues(parsed.issues)}`);
  }
  return parsed.output;
}

/**
 * Sign a manifest with release keys. Validates it first (nothing invalid is ever signed) and,
 * when `root` is given, checks the keys meet its release threshold so the result will verify.
 */
export async function signManifest(
  manifest: ReleaseManifest,
  keys: readonly SigningKey[],
  root?: TrustRoot,
  { engine }: JwsOptions = {},
): Promise<GeneralJws> {
  const valid = parseManifest(manifest);
  const jws = await signGeneralJws(canonicalJsonBytes(valid), keys, JWS_TYPE_RELEASE, engine);
  if (root !== undefined)
    await verifyRoleSignatures(jws, JWS_TYPE_RELEASE, roleKeys(root, 'release'), engine);
  return jws;
}

/** What a verified release manifest is accepted as. */
export interface VerifiedManifest {
  /** Parsed from the verified payload bytes only. */
  manifest: ReleaseManifest;
  /** Distinct release-role kids whose signatures verified. */
  signedBy: string[];
  /** Kids of signatures that were ignored (keys not in the release role). */
  unknownKids: string[];
  /** The exact canonical JSON that was signed: the release directory's manifest.json. */
  payloadText: string;
}

/**
 * Verify a manifest JWS against a trust root, in the order of docs/trust-model.md "What the device
 * checks, in order": JWS shape (ERR_JWS_MALFORMED) → signatures (ERR_SIGNATURE_INVALID) → release
 * threshold (ERR_THRESHOLD_NOT_MET) → schema of the signed payload (ERR_MANIFEST_INVALID) → trust
 * root expiry (ERR_ROOT_EXPIRED) → manifest expiry (ERR_EXPIRED). Device-specific policy is
 * checkRelease's job.
 */
export async function verifyManifest(
  manifestJws: string | Uint8Array | GeneralJws,
  trustRoot: TrustRoot,
  now: Date,
  { engine }: JwsOptions = {},
): Promise<VerifiedManifest> {
  assertValidNow(now);
  // The caller should pass a root from verifyRootChain; re-check its shape so a hand-built
  // object (threshold 0, dangling kids) cannot weaken the signature check.
  if (!v.is(TrustRootSchema, trustRoot)) {
    throw new ManifestError(
      'ERR_ROOT_INVALID',
      'trust root: not a valid TrustRoot (use verifyRootChain / verifyTrustRoot)',
    );
  }
  const jws = parseGeneralJws(manifestJws, 'manifest.jws');
  const { payload, signedBy, unknownKids } = await verifyRoleSignatures(
    jws,
    JWS_TYPE_RELEASE,
    roleKeys(trustRoot, 'release'),
    engine,
  );
  const decoded = decodeCanonicalPayload(payload, canonicalJson);
  if (!decoded.ok) throw new ManifestError('ERR_MANIFEST_INVALID', `release manifest: ${decoded.reason}`);
  const manifest = parseManifest(decoded.value);
  assertRootUnexpired(trustRoot, now);
  if (Date.parse(manifest.expires) <= now.getTime()) {
    throw new ManifestError(
      'ERR_EXPIRED',
      `release ${manifest.version} expired at ${manifest.expires} (now ${now.toISOString()}); re-sign it with a later expiry`,
    );
  }
  return { manifest, signedBy, unknownKids, payloadText: new TextDecoder().decode(payload) };
}
