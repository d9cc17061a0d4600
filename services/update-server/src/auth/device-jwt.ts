// Device authentication: every /v1/device/* call after registration carries a short JWT signed
// by the device's own Ed25519 key (docs/CONTRACTS.md "Update server HTTP API"). Checks, in order:
// well-formed, known and not decommissioned device, signature with the stored key, aud / iss /
// sub, lifetime ≤ maxTokenLifetimeSeconds, then the jti is recorded in the database so a replay
// is refused on every replica.
//
// Two entry points: authenticateDevice (load row, verify, consume jti: three steps, used by
// every device route but poll) and verifyDeviceToken (signature and claims only, with the key
// from the per-process cache when present) for the poll hot path, which consumes the jti and
// re-checks the device in the same single statement as its offer query (routes/device.ts).
import type { webcrypto } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { decodeJwt, importJWK, errors as joseErrors, jwtVerify } from 'jose';
import type { AppDeps, AuthedDevice } from '../context.js';
import { devices, usedJwtIds } from '../db/schema.js';
import { ServerError } from '../errors.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MAX_JWT_LENGTH = 4096;
const MAX_CACHED_KEYS = 200_000;

/** A token whose signature and claims verified; its jti is not consumed yet. */
export interface VerifiedDeviceToken {
  deviceId: string;
  /** Primary key in used_jwt_ids: "<deviceId>:<jti>" (jti values are only unique per device). */
  jtiKey: string;
  /** Until when the jti must be remembered: exp + clock tolerance. */
  jtiExpiresAt: Date;
}

function invalid(message: string): ServerError {
  return new ServerError('ERR_DEVICE_TOKEN_INVALID', message);
}

async function cacheKey(deps: AppDeps, deviceId: string, x: string): Promise<webcrypto.CryptoKey> {
  // A WebCrypto key: jose 6 verifies with WebCrypto and would convert a KeyObject on every call.
  const key = (await importJWK({ kty: 'OKP', crv: 'Ed25519', x }, 'EdDSA')) as webcrypto.CryptoKey;
  // Bounded: drop the oldest entry (Map keeps insertion order) rather than grow without limit.
  if (deps.deviceKeys.size >= MAX_CACHED_KEYS) {
    const oldest = deps.deviceKeys.keys().next().value;
    if (oldest !== undefined) deps.deviceKeys.delete(oldest);
  }
  deps.deviceKeys.set(deviceId, key);
  return key;
}

/** The device id a token claims (`sub`), read before verification only to find its key. */
function claimedDeviceId(token: string): string {
  if (token.length > MAX_JWT_LENGTH) {
    throw invalid(`device token is ${token.length} characters, the limit is ${MAX_JWT_LENGTH}`);
  }
  let claims: ReturnType<typeof decodeJwt>;
  try {
    claims = decodeJwt(token);
  } catch {
    throw invalid('device token is not a JWT (expected header.payload.signature in base64url)');
  }
  const deviceId = claims.sub;
  if (typeof deviceId !== 'string' || !UUID.test(deviceId)) {
    throw invalid('device token "sub" must be the device id (a UUID) returned by /v1/device/register');
  }
  return deviceId;
}

async function verifyWithKey(
  deps: AppDeps,
  token: string,
  deviceId: string,
  key: webcrypto.CryptoKey,
): Promise<VerifiedDeviceToken> {
  const now = deps.clock.now();
  const { config } = deps;
  let payload: Awaited<ReturnType<typeof jwtVerify>>['payload'];
  try {
    ({ payload } = await jwtVerify(token, key, {
      algorithms: ['EdDSA', 'Ed25519'],
      audience: config.audience,
      issuer: deviceId,
      subject: deviceId,
      requiredClaims: ['iat', 'exp', 'jti'],
      currentDate: now,
      clockTolerance: config.clockToleranceSeconds,
      maxTokenAge: config.maxTokenLifetimeSeconds + config.clockToleranceSeconds,
    }));
  } catch (error) {
    if (error instanceof joseErrors.JWTExpired)
      throw invalid('device token has expired; sign a fresh one per request');
    if (error instanceof joseErrors.JWSSignatureVerificationFailed) {
      throw invalid(`device token signature does not verify with the key registered for device ${deviceId}`);
    }
    if (error instanceof joseErrors.JWTClaimValidationFailed) {
      throw invalid(
        `device token claim "${error.claim}" is not acceptable (${error.reason}); expected aud "${config.audience}", iss = sub = device id`,
      );
    }
    if (error instanceof joseErrors.JOSEAlgNotAllowed)
      throw invalid('device token must be signed with EdDSA (Ed25519)');
    throw invalid('device token is malformed');
  }
  const iat = payload.iat ?? 0;
  const exp = payload.exp ?? 0;
  if (exp - iat > config.maxTokenLifetimeSeconds) {
    throw invalid(
      `device token lifetime exp - iat = ${exp - iat} s exceeds ${config.maxTokenLifetimeSeconds} s`,
    );
  }
  if (iat > now.getTime() / 1000 + config.clockToleranceSeconds)
    throw invalid('device token "iat" is in the future');
  const jti = payload.jti ?? '';
  if (jti.length < 8 || jti.length > 128)
    throw invalid('device token "jti" must be 8..128 characters of randomness');
  return {
    deviceId,
    jtiKey: `${deviceId}:${jti}`,
    jtiExpiresAt: new Date((exp + config.clockToleranceSeconds) * 1000),
  };
}

async function loadDevice(deps: AppDeps, deviceId: string) {
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
export async function verifyDeviceToken(deps: AppDeps, token: string): Promise<VerifiedDeviceToken> {
  const deviceId = claimedDeviceId(token);
  let key = deps.deviceKeys.get(deviceId);
  if (key === undefined)
    key = await cacheKey(deps, deviceId, (await loadDevice(deps, deviceId)).publicKeyJwk.x);
  return verifyWithKey(deps, token, deviceId, key);
}

/** Verifies a device JWT, checks the device, consumes the jti; returns the device. */
export async function authenticateDevice(deps: AppDeps, token: string): Promise<AuthedDevice> {
  const deviceId = claimedDeviceId(token);
  const row = await loadDevice(deps, deviceId);
  const key = deps.deviceKeys.get(deviceId) ?? (await cacheKey(deps, deviceId, row.publicKeyJwk.x));
  const verified = await verifyWithKey(deps, token, deviceId, key);
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
