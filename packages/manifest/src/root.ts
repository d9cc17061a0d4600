// The trust root (`root.json`): which Ed25519 keys may sign for the `root` and `release` roles,
// with how many signatures each needs, a version and an expiry. Signed by the root role as a
// General JWS. Rotation and the device-side chain walk follow the TUF specification §5.3
// ("Update the root role"): version N+1 must be signed by a threshold of N's root keys AND of
// its own, versions never skip, and only the final root of a walk must be unexpired.
import * as v from 'valibot';
import { base64urlDecode } from './base64url.js';
import { canonicalJson, canonicalJsonBytes } from './canonical-json.js';
import { ManifestError } from './errors.js';
import {
  checkProtectedHeaders,
  decodeCanonicalPayload,
  type GeneralJws,
  JWS_TYPE_ROOT,
  type JwsOptions,
  parseGeneralJws,
  type RoleKeys,
  signGeneralJws,
  verifyRoleSignatures,
} from './jws.js';
import { jwkThumbprint, KidSchema, PublicJwkSchema, type PublicJwk, type SigningKey } from './keys.js';
import { describeIssues, intSchema, TimestampSchema } from './manifest-schema.js';

/** Most keys one root (and one role) may list. */
export const MAX_ROOT_KEYS = 64;
export const MAX_ROOT_VERSION = 2 ** 31 - 1;

export const RoleSchema = v.pipe(
  v.strictObject({
    threshold: intSchema(1, MAX_ROOT_KEYS),
    keyIds: v.pipe(v.array(KidSchema), v.minLength(1), v.maxLength(MAX_ROOT_KEYS)),
  }),
  v.forward(
    v.check((role) => new Set(role.keyIds).size === role.keyIds.length, 'key ids must be unique'),
    ['keyIds'],
  ),
  v.forward(
    v.check(
      (role) => role.threshold <= role.keyIds.length,
      (issue) =>
        `threshold ${issue.input.threshold} exceeds the ${issue.input.keyIds.length} keys of the role`,
    ),
    ['threshold'],
  ),
);

export const ROLE_NAMES = ['root', 'release'] as const;
export type RoleName = (typeof ROLE_NAMES)[number];

export const TrustRootSchema = v.pipe(
  v.strictObject({
    schemaVersion: v.literal(1),
    version: intSchema(1, MAX_ROOT_VERSION),
    expires: TimestampSchema,
    keys: v.record(KidSchema, PublicJwkSchema),
    roles: v.strictObject({ root: RoleSchema, release: RoleSchema }),
  }),
  v.forward(
    v.check((root) => Object.keys(root.keys).length <= MAX_ROOT_KEYS, `more than ${MAX_ROOT_KEYS} keys`),
    ['keys'],
  ),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const root = dataset.value;
    for (const name of ROLE_NAMES) {
      for (const [i, kid] of root.roles[name].keyIds.entries()) {
        if (!Object.hasOwn(root.keys, kid)) {
          addIssue({
            message: `key ${kid} is not in keys`,
            path: [
              { type: 'object', origin: 'value', input: root, key: 'roles', value: root.roles },
              { type: 'object', origin: 'value', input: root.roles, key: name, value: root.roles[name] },
              {
                type: 'object',
                origin: 'value',
                input: root.roles[name],
                key: 'keyIds',
                value: root.roles[name].keyIds,
              },
              { type: 'array', origin: 'value', input: root.roles[name].keyIds, key: i, value: kid },
            ],
          });
        }
      }
    }
  }),
);

export type TrustRoot = v.InferOutput<typeof TrustRootSchema>;
export type Role = v.InferOutput<typeof RoleSchema>;
/** The content of a root.json: a General JWS whose payload is the canonical TrustRoot. */
export type SignedRoot = GeneralJws;

/**
 * Validate a trust root value: schema, and every kid equal to its key's RFC 7638 thumbprint
 * (so a kid in a signature header names exactly one key). Throws ERR_ROOT_INVALID.
 */
export async function parseTrustRoot(value: unknown, where = 'trust root'): Promise<TrustRoot> {
  const parsed = v.safeParse(TrustRootSchema, value);
  if (!parsed.success) {
    throw new ManifestError('ERR_ROOT_INVALID', `${where}: ${describeIssues(parsed.issues)}`);
  }
  for (const [kid, jwk] of Object.entries(parsed.output.keys)) {
    const thumbprint = await jwkThumbprint(jwk);
    if (thumbprint !== kid) {
      throw new ManifestError(
        'ERR_ROOT_INVALID',
        `${where}: keys.${kid}: kid is not the key's thumbprint ${thumbprint}`,
      );
    }
  }
  return parsed.output;
}

export interface TrustRootInit {
  version: number;
  /** ISO timestamp or Date; stored as `YYYY-MM-DDTHH:MM:SSZ`. */
  expires: string | Date;
  rootKeys: readonly (SigningKey | { kid: string; publicJwk: PublicJwk })[];
  rootThreshold: number;
  releaseKeys: readonly (SigningKey | { kid: string; publicJwk: PublicJwk })[];
  releaseThreshold: number;
}

/** Build (and validate) a trust root from the public halves of its keys. */
export async function createTrustRoot(init: TrustRootInit): Promise<TrustRoot> {
  const keys: Record<string, PublicJwk> = {};
  for (const key of [...init.rootKeys, ...init.releaseKeys]) {
    keys[key.kid] = { kty: 'OKP', crv: 'Ed25519', x: key.publicJwk.x };
  }
  return parseTrustRoot({
    schemaVersion: 1,
    version: init.version,
    expires: formatTimestamp(init.expires),
    keys,
    roles: {
      root: { threshold: init.rootThreshold, keyIds: init.rootKeys.map((k) => k.kid) },
      release: { threshold: init.releaseThreshold, keyIds: init.releaseKeys.map((k) => k.kid) },
    },
  });
}

/** `YYYY-MM-DDTHH:MM:SSZ` (whole seconds, UTC) for a Date or timestamp string. */
export function formatTimestamp(time: string | Date): string {
  const date = typeof time === 'string' ? new Date(time) : time;
  if (Number.isNaN(date.getTime())) {
    throw new ManifestError('ERR_INVALID_ARGUMENT', `not a timestamp: ${String(time)}`);
  }
  return `${date.toISOString().slice(0, 19)}Z`;
}

/**
 * Sign a trust root with `keys`. For version 1 these are its own root keys; for a rotation
 * they must include a threshold of the previous root's root keys as well as of the new ones
 * (checked here, so a root that devices would refuse is never written).
 */
export async function signTrustRoot(
  root: TrustRoot,
  keys: readonly SigningKey[],
  previous?: TrustRoot,
  { engine }: JwsOptions = {},
): Promise<SignedRoot> {
  const valid = await parseTrustRoot(root);
  if (previous !== undefined && valid.version !== previous.version + 1) {
    throw new ManifestError(
      'ERR_ROOT_VERSION_GAP',
      `a rotation of root v${previous.version} must be version ${previous.version + 1}, not ${valid.version}`,
    );
  }
  const signed = await signGeneralJws(canonicalJsonBytes(valid), keys, JWS_TYPE_ROOT, engine);
  await verifyRoleSignatures(signed, JWS_TYPE_ROOT, roleKeys(valid, 'root'), engine);
  if (previous !== undefined)
    await verifyRoleSignatures(signed, JWS_TYPE_ROOT, roleKeys(previous, 'root'), engine);
  return signed;
}

/** The keys and threshold of one role of a root, for signature verification. */
export function roleKeys(root: TrustRoot, role: RoleName): RoleKeys {
  return {
    label: `${role} role of root v${root.version}`,
    threshold: root.roles[role].threshold,
    keyIds: root.roles[role].keyIds,
    keys: root.keys,
  };
}

function decodeRootPayload(payload: Uint8Array, where: string): unknown {
  const decoded = decodeCanonicalPayload(payload, canonicalJson);
  if (!decoded.ok) throw new ManifestError('ERR_ROOT_INVALID', `${where}: ${decoded.reason}`);
  return decoded.value;
}

/**
 * Verify a root that is trusted out of band (baked into the device image, or the publisher's
 * own root.json): its payload must be a valid root signed by a threshold of its own root keys.
 * Expiry is not checked here (see verifyRootChain / checkRelease).
 */
export async function verifyTrustRoot(
  signed: SignedRoot | string | Uint8Array,
  { engine }: JwsOptions = {},
): Promise<TrustRoot> {
  const jws = parseGeneralJws(signed, 'root.json');
  checkProtectedHeaders(jws, JWS_TYPE_ROOT);
  // Out-of-band trust: the candidate keys come from the payload itself, then must sign it.
  const candidate = await parseTrustRoot(
    decodeRootPayload(base64urlDecode(jws.payload, 'root.json payload'), 'root.json'),
    'root.json',
  );
  const { payload } = await verifyRoleSignatures(jws, JWS_TYPE_ROOT, roleKeys(candidate, 'root'), engine);
  return parseTrustRoot(decodeRootPayload(payload, 'root.json'), 'root.json');
}

/**
 * One rotation step (TUF §5.3.4-5.3.5): `next` must be signed by a threshold of `current`'s
 * root keys, be exactly version current+1, and be signed by a threshold of its own root keys.
 */
export async function verifyRootUpdate(
  current: TrustRoot,
  next: SignedRoot | string | Uint8Array,
  { engine }: JwsOptions = {},
): Promise<TrustRoot> {
  const expected = current.version + 1;
  const where = `root v${expected}`;
  const jws = parseGeneralJws(next, where);
  const claimed = peekVersion(jws);
  // Reported before the signature check only because it is the more actionable message;
  // either way the step is refused.
  if (claimed !== undefined && claimed !== expected) {
    throw new ManifestError(
      'ERR_ROOT_VERSION_GAP',
      `root chain after v${current.version} continues with v${claimed}; expected v${expected} (roots may not be skipped)`,
    );
  }
  const byOld = await verifyRoleSignatures(jws, JWS_TYPE_ROOT, roleKeys(current, 'root'), engine);
  const candidate = await parseTrustRoot(decodeRootPayload(byOld.payload, where), where);
  if (candidate.version !== expected) {
    throw new ManifestError(
      'ERR_ROOT_VERSION_GAP',
      `root chain after v${current.version} continues with v${candidate.version}; expected v${expected}`,
    );
  }
  await verifyRoleSignatures(jws, JWS_TYPE_ROOT, roleKeys(candidate, 'root'), engine);
  return candidate;
}

/** Version a root claims, read WITHOUT verification: only ever used to refuse earlier. */
function peekVersion(jws: GeneralJws): number | undefined {
  try {
    const value: unknown = JSON.parse(new TextDecoder().decode(base64urlDecode(jws.payload)));
    const version = (value as { version?: unknown } | null)?.version;
    return typeof version === 'number' ? version : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Walk from a trusted root through `chain` (TUF §5.3): each root must be the next version,
 * signed by the previous root's threshold and its own. Entries not newer than the current root
 * are skipped (a publisher may ship its whole roots/ history). Intermediate roots may have
 * expired; the final one must not (ERR_ROOT_EXPIRED). Returns the newest verified root.
 * `trusted` is the signed root.json (its self-signatures are checked) or a TrustRoot the caller
 * already verified (its shape and kids are re-checked, not its signatures).
 */
export async function verifyRootChain(
  trusted: SignedRoot | TrustRoot,
  chain: readonly SignedRoot[],
  now: Date,
  options: JwsOptions = {},
): Promise<TrustRoot> {
  assertValidNow(now);
  const current = await walkRootChain(trusted, chain, options);
  assertRootUnexpired(current, now);
  return current;
}

/**
 * verifyRootChain without the expiry check (TUF §5.3.4-5.3.9): the newest root the signatures
 * lead to, expired or not. For a client that walks the roots it holds and then the roots a
 * release ships, and checks the expiry of the newest once at the end (TUF §5.3.10) — so an
 * expired root can still be replaced by the rotation it signed.
 */
export async function walkRootChain(
  trusted: SignedRoot | TrustRoot,
  chain: readonly SignedRoot[],
  options: JwsOptions = {},
): Promise<TrustRoot> {
  let current =
    'payload' in trusted ? await verifyTrustRoot(trusted, options) : await parseTrustRoot(trusted);
  for (const next of chain) {
    const jws = parseGeneralJws(next, `root after v${current.version}`);
    const claimed = peekVersion(jws);
    if (claimed !== undefined && claimed <= current.version) continue;
    current = await verifyRootUpdate(current, jws, options);
  }
  return current;
}

/**
 * A usable clock reading. An Invalid Date compares false with everything, which would make
 * every expiry check pass — so it is refused (fail closed).
 */
export function assertValidNow(now: Date): void {
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) {
    throw new ManifestError('ERR_INVALID_ARGUMENT', `now must be a valid Date, got ${String(now)}`);
  }
}

/** Throw ERR_ROOT_EXPIRED when `root.expires` is not after `now`. */
export function assertRootUnexpired(root: TrustRoot, now: Date): void {
  assertValidNow(now);
  if (Date.parse(root.expires) <= now.getTime()) {
    throw new ManifestError(
      'ERR_ROOT_EXPIRED',
      `trust root v${root.version} expired at ${root.expires} (now ${formatTimestamp(now)}); a newer root must be installed`,
    );
  }
}
