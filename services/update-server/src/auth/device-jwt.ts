// Device authentication: every /v1/device/* call after registration carries a short JWT signed
// by the device's own Ed25519 key (docs/CONTRACTS.md "Update server HTTP API"). Checks, in order:
// well-formed (length, compact JWS of three base64url parts, header and claims JSON objects,
// alg EdDSA, no `crit`, a 64-byte signature, sub a UUID), known and not decommissioned device,
// the Ed25519 signature with the stored key, the claims (RFC 7519 §4.1: iss, sub, aud, iat,
// exp, nbf, lifetime ≤ maxTokenLifetimeSeconds, jti), then the jti is recorded in the database
// so a replay is refused on every replica.
//
// The JWS is checked here with node:crypto rather than jose: an Ed25519 verify (RFC 8037 §3.1)
// with a cached KeyObject on the libuv pool, without jose's and WebCrypto's per-call work on the
// event loop. This is the poll hot path, so speed decides: bench/token-verify.ts (same tokens,
// same claim rules, cached keys, 64 verifications in flight as on a busy server) measured
// 5228 verifications/s here against 1816/s with jose's jwtVerify (2.9×), 46 µs of event-loop
// time per verification against 234 µs. One at a time jose is quicker (7304/s against 4561/s:
// the pool hand-off costs latency), which is not the load the poll path sees. Manifests and
// trust roots, checked once per upload, are verified with jose (../manifest-check.ts).
// Header parameters other than alg (typ, kid, jwk, jku, x5u, ...) are never used: the key is
// the one registered for the claimed device.
//
// Two entry points: authenticateDevice (load row, verify, consume jti: three steps, used by
// every device route but poll) and verifyDeviceToken (signature and claims only, with the key
// from the per-process cache when present) for the poll hot path, which consumes the jti and
// re-checks the device in the same single statement as its offer query (routes/device.ts).
import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type { AppConfig } from '../config.js';
import type { AppDeps, AuthedDevice, Clock, VerifiedDeviceToken } from '../context.js';
import { devices, usedJwtIds } from '../db/schema.js';
import { ServerError } from '../errors.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const BASE64URL = /^[A-Za-z0-9_-]+$/;
export const MAX_JWT_LENGTH = 4096;
const MAX_CACHED_KEYS = 200_000;
/** "EdDSA" (RFC 8037) and its fully-specified name "Ed25519" (RFC 9864) — the same signature. */
const ALGORITHMS: ReadonlySet<unknown> = new Set(['EdDSA', 'Ed25519']);
/** An Ed25519 signature is 64 bytes: 86 base64url characters, whose last carries 2 data bits. */
const SIGNATURE_CHARS = 86;
const SIGNATURE_LAST_CHARS = 'AQgw';
const JTI_MIN_CHARS = 8;
const JTI_MAX_CHARS = 128;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** A structurally valid compact JWS, not yet verified. */
export interface ParsedDeviceToken {
  /** The claimed device id (`sub`), used only to find the key that must verify the token. */
  deviceId: string;
  /** ASCII of `header.payload`, what the signature covers (RFC 7515 §5.2). */
  signingInput: Buffer;
  signature: Buffer;
  claims: Record<string, unknown>;
}

/** What device authentication uses of the app's parts. */
export type DeviceAuthDeps = Pick<AppDeps, 'db' | 'clock' | 'config' | 'deviceKeys'>;

export type DeviceTokenPolicy = Pick<
  AppConfig,
  'audience' | 'clockToleranceSeconds' | 'maxTokenLifetimeSeconds'
>;

function invalid(message: string): ServerError {
  return new ServerError('ERR_DEVICE_TOKEN_INVALID', message);
}

const NOT_A_JWT = 'device token is not a JWT (expected header.payload.signature in base64url)';

function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** base64url without padding (RFC 7515 §2) → strict UTF-8 → a JSON object, or undefined. */
function decodeJsonPart(part: string): Record<string, unknown> | undefined {
  // Buffer's decoder skips characters outside the alphabet, so check them first; a length
  // ≡ 1 (mod 4) cannot come from any byte string.
  if (!BASE64URL.test(part) || part.length % 4 === 1) return undefined;
  try {
    const value: unknown = JSON.parse(strictUtf8.decode(Buffer.from(part, 'base64url')));
    return isJsonObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Length bound first, then the compact serialization (RFC 7515 §7.1), claims and header.
 * Pure: no key, no clock, no database; a token failing here never costs a database read.
 */
export function parseDeviceToken(token: string): ParsedDeviceToken {
  if (token.length > MAX_JWT_LENGTH) {
    throw invalid(`device token is ${token.length} characters, the limit is ${MAX_JWT_LENGTH}`);
  }
  const parts = token.split('.');
  if (parts.length !== 3) throw invalid(NOT_A_JWT);
  const [headerPart = '', payloadPart = '', signaturePart = ''] = parts;
  const claims = decodeJsonPart(payloadPart);
  if (claims === undefined) throw invalid(NOT_A_JWT);
  const deviceId = claims['sub'];
  if (typeof deviceId !== 'string' || !UUID.test(deviceId)) {
    throw invalid('device token "sub" must be the device id (a UUID) returned by /v1/device/register');
  }
  const header = decodeJsonPart(headerPart);
  if (header === undefined) throw invalid('device token header is not a base64url-encoded JSON object');
  if (!ALGORITHMS.has(header['alg'])) throw invalid('device token must be signed with EdDSA (Ed25519)');
  if (Object.hasOwn(header, 'crit')) {
    // No JWS extension is understood here, so none may be declared critical (RFC 7515 §4.1.11).
    throw invalid('device token header "crit" is not supported: no JWS extensions are accepted');
  }
  if (
    signaturePart.length !== SIGNATURE_CHARS ||
    !BASE64URL.test(signaturePart) ||
    !SIGNATURE_LAST_CHARS.includes(signaturePart.charAt(SIGNATURE_CHARS - 1))
  ) {
    throw invalid(
      `device token signature must be 64 bytes (Ed25519: ${SIGNATURE_CHARS} base64url characters), found ${signaturePart.length} characters`,
    );
  }
  return {
    deviceId,
    signingInput: Buffer.from(`${headerPart}.${payloadPart}`, 'latin1'),
    signature: Buffer.from(signaturePart, 'base64url'),
    claims,
  };
}

function claimRefused(
  claim: string,
  reason: 'missing' | 'invalid' | 'check_failed',
  policy: DeviceTokenPolicy,
) {
  return invalid(
    `device token claim "${claim}" is not acceptable (${reason}); expected aud "${policy.audience}", iss = sub = device id`,
  );
}

/**
 * RFC 7519 claim checks after the signature verified; `now` is whole seconds (NumericDate).
 * Same rules and order as jose's jwtVerify with requiredClaims iat/exp/jti, issuer = subject =
 * the device id, the audience, the clock tolerance and maxTokenAge = lifetime + tolerance,
 * then the lifetime bound and the jti.
 */
export function checkDeviceClaims(
  claims: Record<string, unknown>,
  deviceId: string,
  now: Date,
  policy: DeviceTokenPolicy,
): VerifiedDeviceToken {
  const tolerance = policy.clockToleranceSeconds;
  const nowSeconds = Math.floor(now.getTime() / 1000);
  for (const claim of ['iss', 'sub', 'aud', 'iat', 'jti', 'exp']) {
    if (!Object.hasOwn(claims, claim)) throw claimRefused(claim, 'missing', policy);
  }
  if (claims['iss'] !== deviceId) throw claimRefused('iss', 'check_failed', policy);
  if (claims['sub'] !== deviceId) throw claimRefused('sub', 'check_failed', policy);
  const aud = claims['aud'];
  if (!(aud === policy.audience || (Array.isArray(aud) && aud.includes(policy.audience)))) {
    throw claimRefused('aud', 'check_failed', policy);
  }
  const { iat, exp, nbf } = claims;
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw claimRefused('iat', 'invalid', policy);
  if (nbf !== undefined) {
    if (typeof nbf !== 'number' || !Number.isFinite(nbf)) throw claimRefused('nbf', 'invalid', policy);
    if (nbf > nowSeconds + tolerance) throw claimRefused('nbf', 'check_failed', policy);
  }
  if (typeof exp !== 'number' || !Number.isFinite(exp)) throw claimRefused('exp', 'invalid', policy);
  const age = nowSeconds - iat;
  if (exp <= nowSeconds - tolerance || age - tolerance > policy.maxTokenLifetimeSeconds + tolerance) {
    throw invalid('device token has expired; sign a fresh one per request');
  }
  if (age < -tolerance) {
    throw invalid(`device token "iat" is in the future (more than the ${tolerance} s clock tolerance)`);
  }
  if (exp - iat > policy.maxTokenLifetimeSeconds) {
    throw invalid(
      `device token lifetime exp - iat = ${exp - iat} s exceeds ${policy.maxTokenLifetimeSeconds} s`,
    );
  }
  const jti = claims['jti'];
  if (typeof jti !== 'string' || jti.length < JTI_MIN_CHARS || jti.length > JTI_MAX_CHARS) {
    throw invalid(
      `device token "jti" must be a string of ${JTI_MIN_CHARS}..${JTI_MAX_CHARS} characters of randomness`,
    );
  }
  return {
    deviceId,
    jtiKey: `${deviceId}:${jti}`,
    jtiExpiresAt: new Date((exp + tolerance) * 1000),
  };
}

/**
 * Ed25519 verification (RFC 8032 §5.1.7) through node:crypto's callback form: the curve
 * arithmetic (≈ 60–150 µs here) runs on a libuv pool thread, leaving the event loop — what
 * saturates first under load — ≈ 25 µs of work per token, against ≈ 55 µs through jose and
 * WebCrypto and the whole verification when done synchronously (README "Tests and benchmark").
 */
function verifySignature(parsed: ParsedDeviceToken, key: KeyObject): Promise<boolean> {
  return new Promise((resolve) => {
    try {
      verify(null, parsed.signingInput, key, parsed.signature, (error, valid) =>
        resolve(error === null && valid),
      );
    } catch {
      resolve(false);
    }
  });
}

/** Signature, then claims (checked at `now`, read once the signature verified). */
export async function verifyParsedDeviceToken(
  parsed: ParsedDeviceToken,
  key: KeyObject,
  clock: Clock,
  policy: DeviceTokenPolicy,
): Promise<VerifiedDeviceToken> {
  if (!(await verifySignature(parsed, key))) {
    throw invalid(
      `device token signature does not verify with the key registered for device ${parsed.deviceId}`,
    );
  }
  return checkDeviceClaims(parsed.claims, parsed.deviceId, clock.now(), policy);
}

/** The public key of a registered device, from its stored JWK `x` (RFC 8037 §2). */
export function devicePublicKey(x: string): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
}

function cacheKey(deps: DeviceAuthDeps, deviceId: string, x: string): KeyObject {
  const key = devicePublicKey(x);
  // Bounded: drop the oldest entry (Map keeps insertion order) rather than grow without limit.
  if (deps.deviceKeys.size >= MAX_CACHED_KEYS) {
    const oldest = deps.deviceKeys.keys().next().value;
    if (oldest !== undefined) deps.deviceKeys.delete(oldest);
  }
  deps.deviceKeys.set(deviceId, key);
  return key;
}

async function loadDevice(deps: DeviceAuthDeps, deviceId: string) {
  const [row] = await deps.db
    .select({
      id: devices.id,
      product: devices.product,
      hardware: devices.hardware,
      tags: devices.tags,
      currentVersion: devices.currentVersion,
      publicKeyJwk: devices.publicKeyJwk,
      decommissionedAt: devices.decommissionedAt,
    })
    .from(devices)
    .where(eq(devices.id, deviceId))
    .limit(1);
  if (row === undefined) throw new ServerError('ERR_DEVICE_UNKNOWN', `no device ${deviceId} is registered`);
  if (row.decommissionedAt !== null) {
    throw new ServerError(
      'ERR_DEVICE_DECOMMISSIONED',
      `device ${deviceId} was decommissioned; register it again`,
    );
  }
  return row;
}

export function replayed(): ServerError {
  return new ServerError('ERR_DEVICE_TOKEN_REPLAYED', 'device token was already used (replayed jti)');
}

/**
 * Signature and claims only. The key comes from the cache when present — safe without
 * cross-replica invalidation because a device id is a random UUID bound to one key for life;
 * whether the device still exists and is not decommissioned is checked by the caller in the
 * database, in the same statement that consumes the jti.
 */
export async function verifyDeviceToken(deps: DeviceAuthDeps, token: string): Promise<VerifiedDeviceToken> {
  const parsed = parseDeviceToken(token);
  const key =
    deps.deviceKeys.get(parsed.deviceId) ??
    cacheKey(deps, parsed.deviceId, (await loadDevice(deps, parsed.deviceId)).publicKeyJwk.x);
  return verifyParsedDeviceToken(parsed, key, deps.clock, deps.config);
}

/** Verifies a device JWT, checks the device, consumes the jti; returns the device. */
export async function authenticateDevice(deps: DeviceAuthDeps, token: string): Promise<AuthedDevice> {
  const parsed = parseDeviceToken(token);
  const { deviceId } = parsed;
  const row = await loadDevice(deps, deviceId);
  const key = deps.deviceKeys.get(deviceId) ?? cacheKey(deps, deviceId, row.publicKeyJwk.x);
  const verified = await verifyParsedDeviceToken(parsed, key, deps.clock, deps.config);
  const inserted = await deps.db
    .insert(usedJwtIds)
    .values({ jti: verified.jtiKey, deviceId, expiresAt: verified.jtiExpiresAt })
    .onConflictDoNothing()
    .returning({ jti: usedJwtIds.jti });
  if (inserted.length === 0) throw replayed();
  return {
    id: row.id,
    product: row.product,
    hardware: row.hardware,
    tags: row.tags,
    currentVersion: row.currentVersion,
  };
}
