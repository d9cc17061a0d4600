// Device JWT verification with node:crypto: the compact JWS checks (length, base64url, header,
// alg, crit, signature size and encoding), the RFC 7519 claim rules (same as the jose-based
// verifier they replace), and the database side (key cache, unknown and decommissioned
// devices, replay) on a real in-memory PGlite.
import { createHmac, generateKeyPairSync, type KeyObject, randomUUID, sign as cryptoSign } from 'node:crypto';
import {
  DEVICE_JWT_VECTORS,
  DEVICE_KEY_JWK,
  NOW as VECTORS_NOW,
  POLICY as VECTORS_POLICY,
} from '@abota/testkit/device-jwt';
import { eq } from 'drizzle-orm';
import { exportJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_APP_CONFIG } from '../config.js';
import type { Clock } from '../context.js';
import { type Database, openDatabase } from '../db/database.js';
import { devices, products } from '../db/schema.js';
import { ServerError } from '../errors.js';
import {
  authenticateDevice,
  checkDeviceClaims,
  type DeviceAuthDeps,
  devicePublicKey,
  MAX_JWT_LENGTH,
  parseDeviceToken,
  verifyDeviceToken,
  verifyParsedDeviceToken,
} from './device-jwt.js';

const NOW_SECONDS = 1_800_000_000;
const NOW = new Date(NOW_SECONDS * 1000 + 500); // mid-second: NumericDate comparisons floor it
const policy = { audience: 'abota', clockToleranceSeconds: 30, maxTokenLifetimeSeconds: 300 };
const b64url = (value: string | Buffer) => Buffer.from(value).toString('base64url');

interface DeviceKeys {
  id: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  x: string;
}

function deviceKeys(): DeviceKeys {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const x = (publicKey.export({ format: 'jwk' }) as { x: string }).x;
  return { id: randomUUID(), privateKey, publicKey, x };
}

function claimsFor(id: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const claims: Record<string, unknown> = {
    iss: id,
    sub: id,
    aud: 'abota',
    iat: NOW_SECONDS,
    exp: NOW_SECONDS + 120,
    jti: randomUUID(),
    ...overrides,
  };
  for (const [name, value] of Object.entries(claims)) if (value === undefined) delete claims[name];
  return claims;
}

/** A compact JWS with any header and claims, Ed25519-signed by `key` (or given a raw signature part). */
function compact(
  header: Record<string, unknown>,
  claims: Record<string, unknown>,
  key: KeyObject,
  signaturePart?: string,
): string {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${signaturePart ?? cryptoSign(null, Buffer.from(input), key).toString('base64url')}`;
}

async function refusedWith(promise: Promise<unknown>): Promise<ServerError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ServerError) return error;
    throw error;
  }
  throw new Error('expected the token to be refused');
}

function refusal(run: () => unknown): ServerError {
  try {
    run();
  } catch (error) {
    if (error instanceof ServerError) return error;
    throw error;
  }
  throw new Error('expected the token to be refused');
}

const clockAtNow: Clock = { now: () => NOW };

/** Parse + signature + claims against the device's own key at NOW. */
const verifyWith = async (d: DeviceKeys, token: string) =>
  verifyParsedDeviceToken(parseDeviceToken(token), d.publicKey, clockAtNow, policy);

async function expectInvalid(d: DeviceKeys, token: string, message: RegExp): Promise<void> {
  const error = await refusedWith(verifyWith(d, token));
  expect(error.code).toBe('ERR_DEVICE_TOKEN_INVALID');
  expect(error.status).toBe(401);
  expect(error.message).toMatch(message);
}

describe('parseDeviceToken + verifyParsedDeviceToken (compact JWS, node:crypto)', async () => {
  const d = deviceKeys();

  it('accepts what jose signs (EdDSA) and what node:crypto signs, with alg EdDSA or Ed25519', async () => {
    const claims = claimsFor(d.id);
    const joseToken = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA' }).sign(d.privateKey);
    const verified = await verifyWith(d, joseToken);
    expect(verified).toEqual({
      deviceId: d.id,
      jtiKey: `${d.id}:${claims['jti']}`,
      jtiExpiresAt: new Date((NOW_SECONDS + 120 + 30) * 1000),
    });
    expect(
      (await verifyWith(d, compact({ alg: 'EdDSA', typ: 'JWT' }, claimsFor(d.id), d.privateKey))).deviceId,
    ).toBe(d.id);
    expect((await verifyWith(d, compact({ alg: 'Ed25519' }, claimsFor(d.id), d.privateKey))).deviceId).toBe(
      d.id,
    );
    // The cached key is built from the stored JWK x exactly as registration stored it.
    const fromJwk = devicePublicKey((await exportJWK(d.publicKey)).x ?? '');
    expect(
      (await verifyParsedDeviceToken(parseDeviceToken(joseToken), fromJwk, clockAtNow, policy)).deviceId,
    ).toBe(d.id);
  });

  it('refuses alg none, HS256 (the public key as HMAC secret) and RS256', async () => {
    const claims = claimsFor(d.id);
    const noneInput = `${b64url('{"alg":"none"}')}.${b64url(JSON.stringify(claims))}`;
    await expectInvalid(d, `${noneInput}.`, /must be signed with EdDSA/);
    await expectInvalid(d, compact({ alg: 'none' }, claims, d.privateKey), /must be signed with EdDSA/);
    await expectInvalid(d, compact({}, claims, d.privateKey), /must be signed with EdDSA/);
    await expectInvalid(d, compact({ alg: 'eddsa' }, claims, d.privateKey), /must be signed with EdDSA/);

    // Key confusion: an HMAC over the input keyed with the (public) x of the device.
    const hsInput = `${b64url('{"alg":"HS256"}')}.${b64url(JSON.stringify(claims))}`;
    const hsToken = `${hsInput}.${createHmac('sha256', d.x).update(hsInput).digest('base64url')}`;
    await expectInvalid(d, hsToken, /must be signed with EdDSA/);
    // Even a 64-byte "signature" under another alg is not tried as Ed25519.
    const sig = cryptoSign(null, Buffer.from(hsInput), d.privateKey).toString('base64url');
    await expectInvalid(d, `${hsInput}.${sig}`, /must be signed with EdDSA/);

    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const rsToken = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256' }).sign(rsa.privateKey);
    await expectInvalid(d, rsToken, /must be signed with EdDSA/);
  });

  it('refuses a header with crit, even an extension jose would have accepted', async () => {
    const claims = claimsFor(d.id);
    await expectInvalid(
      d,
      compact({ alg: 'EdDSA', crit: ['b64'], b64: true }, claims, d.privateKey),
      /"crit"/,
    );
    await expectInvalid(d, compact({ alg: 'EdDSA', crit: ['exp'], exp: 1 }, claims, d.privateKey), /"crit"/);
    await expectInvalid(d, compact({ alg: 'EdDSA', crit: [] }, claims, d.privateKey), /"crit"/);
  });

  it('never takes the key from the header (jwk, jku, x5u, kid): the registered key decides', async () => {
    const attacker = deviceKeys();
    const header = {
      alg: 'EdDSA',
      jwk: { kty: 'OKP', crv: 'Ed25519', x: attacker.x },
      jku: 'http://127.0.0.1:1/keys',
      x5u: 'http://127.0.0.1:1/cert',
      kid: 'attacker',
    };
    await expectInvalid(
      d,
      compact(header, claimsFor(d.id), attacker.privateKey),
      /signature does not verify/,
    );
    // The same header on a token the device really signed changes nothing.
    expect((await verifyWith(d, compact(header, claimsFor(d.id), d.privateKey))).deviceId).toBe(d.id);
  });

  it('refuses malformed compact serializations and base64url', async () => {
    const good = compact({ alg: 'EdDSA' }, claimsFor(d.id), d.privateKey);
    const [h = '', p = '', s = ''] = good.split('.');
    const notJwt = /not a JWT/;
    await expectInvalid(d, 'not.a.jwt', notJwt);
    await expectInvalid(d, '', notJwt);
    await expectInvalid(d, `${h}.${p}`, notJwt);
    await expectInvalid(d, `${h}.${p}.${s}.`, notJwt);
    await expectInvalid(d, `${h}.${p}.${s}.${s}.${s}`, notJwt); // JWE shape
    await expectInvalid(d, `${h}..${s}`, notJwt);
    // Standard base64 alphabet, padding, whitespace and stray characters in the claims part.
    const standard = Buffer.from(JSON.stringify(claimsFor(d.id, { jti: '>>>>????>>>>' }))).toString('base64');
    expect(standard).toMatch(/[+/]/);
    await expectInvalid(d, `${h}.${standard}.${s}`, notJwt);
    await expectInvalid(d, `${h}.${p}==.${s}`, notJwt);
    await expectInvalid(d, `${h}.${p.slice(0, 8)} ${p.slice(8)}.${s}`, notJwt);
    await expectInvalid(d, `${h}.${p}!.${s}`, notJwt);
    // A length ≡ 1 (mod 4) is no byte string, even where Buffer would drop the extra character
    // and decode the same claims (claims whose JSON length is a multiple of 3).
    let aligned = claimsFor(d.id);
    for (let pad = ''; JSON.stringify(aligned).length % 3 !== 0; pad += 'p')
      aligned = claimsFor(d.id, { pad });
    const alignedToken = compact({ alg: 'EdDSA' }, aligned, d.privateKey);
    const [ah = '', ap = '', as = ''] = alignedToken.split('.');
    expect(Buffer.from(`${ap}A`, 'base64url')).toEqual(Buffer.from(ap, 'base64url'));
    await expectInvalid(d, `${ah}.${ap}A.${as}`, notJwt);
    // Claims that are not a UTF-8 JSON object.
    await expectInvalid(d, `${h}.${b64url('[1,2]')}.${s}`, notJwt);
    await expectInvalid(d, `${h}.${b64url('"text"')}.${s}`, notJwt);
    await expectInvalid(d, `${h}.${b64url('{"sub":')}.${s}`, notJwt);
    await expectInvalid(d, `${h}.${b64url(Buffer.from([0x7b, 0xff, 0x7d]))}.${s}`, notJwt);
    // A header that is not a JSON object.
    await expectInvalid(d, `${b64url('[]')}.${p}.${s}`, /header is not/);
    await expectInvalid(d, `${h.slice(0, -1)}*.${p}.${s}`, /header is not/);
    // sub must be a device id.
    await expectInvalid(
      d,
      compact({ alg: 'EdDSA' }, claimsFor(d.id, { sub: 'device-1' }), d.privateKey),
      /"sub"/,
    );
    await expectInvalid(
      d,
      compact({ alg: 'EdDSA' }, claimsFor(d.id, { sub: undefined }), d.privateKey),
      /"sub"/,
    );
  });

  it('refuses signatures that are not exactly 64 bytes in canonical base64url, or do not verify', async () => {
    const good = compact({ alg: 'EdDSA' }, claimsFor(d.id), d.privateKey);
    const [h = '', p = '', s = ''] = good.split('.');
    await expectInvalid(d, `${h}.${p}.${s.slice(0, -2)}`, /64 bytes.*found 84/);
    await expectInvalid(d, `${h}.${p}.${s}AA`, /64 bytes.*found 88/);
    await expectInvalid(d, `${h}.${p}.${b64url(Buffer.alloc(65))}`, /64 bytes/);
    await expectInvalid(d, `${h}.${p}.${s.slice(0, 40)}+${s.slice(41)}`, /64 bytes/);
    // Non-canonical: same 64 bytes once decoded, other trailing bits in the last character.
    const last = s.charAt(85);
    const sibling = String.fromCharCode(last.charCodeAt(0) + 1);
    expect(Buffer.from(`${s.slice(0, 85)}${sibling}`, 'base64url')).toEqual(Buffer.from(s, 'base64url'));
    await expectInvalid(d, `${h}.${p}.${s.slice(0, 85)}${sibling}`, /64 bytes/);
    // Well-formed but wrong: one flipped bit, all zeros, another device's key.
    const flipped = Buffer.from(s, 'base64url');
    flipped[10] = (flipped[10] ?? 0) ^ 1;
    await expectInvalid(d, `${h}.${p}.${flipped.toString('base64url')}`, /signature does not verify/);
    await expectInvalid(d, `${h}.${p}.${b64url(Buffer.alloc(64))}`, /signature does not verify/);
    expectInvalid(
      d,
      compact({ alg: 'EdDSA' }, claimsFor(d.id), deviceKeys().privateKey),
      /signature does not verify/,
    );
    // Claims changed after signing.
    const tampered = b64url(
      JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), exp: NOW_SECONDS + 200 }),
    );
    await expectInvalid(d, `${h}.${tampered}.${s}`, /signature does not verify/);
  });

  it('bounds the token length before any parsing', async () => {
    const oversized = `${'A'.repeat(MAX_JWT_LENGTH - 1)}.x.`;
    expect(oversized.length).toBe(MAX_JWT_LENGTH + 2);
    expectInvalid(
      d,
      oversized,
      new RegExp(`${MAX_JWT_LENGTH + 2} characters, the limit is ${MAX_JWT_LENGTH}`),
    );
    // A validly signed token made too long by its claims is refused the same way.
    const padded = compact({ alg: 'EdDSA' }, claimsFor(d.id, { pad: 'p'.repeat(3200) }), d.privateKey);
    expect(padded.length).toBeGreaterThan(MAX_JWT_LENGTH);
    await expectInvalid(d, padded, /the limit is 4096/);
    // Just under the limit is parsed and verified.
    const fits = compact({ alg: 'EdDSA' }, claimsFor(d.id, { pad: 'p'.repeat(2600) }), d.privateKey);
    expect(fits.length).toBeLessThanOrEqual(MAX_JWT_LENGTH);
    expect((await verifyWith(d, fits)).deviceId).toBe(d.id);
  });
});

describe('the shared device JWT vectors (@abota/testkit/device-jwt)', () => {
  it('are accepted and refused as they say, for the rule they name', async () => {
    const key = devicePublicKey(DEVICE_KEY_JWK.x);
    const clock: Clock = { now: () => VECTORS_NOW };
    for (const vector of DEVICE_JWT_VECTORS) {
      const outcome = await Promise.resolve()
        .then(() => verifyParsedDeviceToken(parseDeviceToken(vector.token), key, clock, VECTORS_POLICY))
        .then(
          () => 'accepted',
          (error: unknown) => {
            if (!(error instanceof ServerError)) throw error;
            expect(error.code, vector.name).toBe('ERR_DEVICE_TOKEN_INVALID');
            return error.message;
          },
        );
      if (vector.verdict === 'accepted') expect(outcome, vector.name).toBe('accepted');
      else expect(outcome, vector.name).toMatch(vector.verdict);
    }
  });
});

describe('checkDeviceClaims (RFC 7519 rules of the jose-based verifier)', () => {
  const id = randomUUID();
  const check = (overrides: Record<string, unknown>) =>
    checkDeviceClaims(claimsFor(id, overrides), id, NOW, policy);
  const expectRefused = (overrides: Record<string, unknown>, message: RegExp) => {
    const error = refusal(() => check(overrides));
    expect(error.code).toBe('ERR_DEVICE_TOKEN_INVALID');
    expect(error.message).toMatch(message);
  };

  it('requires iss, aud, iat, jti and exp, naming the missing claim', () => {
    for (const claim of ['iss', 'aud', 'iat', 'jti', 'exp']) {
      expectRefused({ [claim]: undefined }, new RegExp(`claim "${claim}" is not acceptable \\(missing\\)`));
    }
  });

  it('checks iss = sub = the device id and the audience (a string or an array holding it)', () => {
    expectRefused({ iss: randomUUID() }, /claim "iss" is not acceptable \(check_failed\)/);
    expect(() => checkDeviceClaims(claimsFor(id), randomUUID(), NOW, policy)).toThrow(/claim "iss"/);
    expectRefused({ aud: 'someone-else' }, /claim "aud".*expected aud "abota"/);
    expectRefused({ aud: ['x', 'y'] }, /claim "aud"/);
    expectRefused({ aud: 42 }, /claim "aud"/);
    expect(check({ aud: ['x', 'abota'] }).deviceId).toBe(id);
  });

  it('requires numeric iat, exp and nbf, and refuses nbf in the future', () => {
    expectRefused({ iat: String(NOW_SECONDS) }, /claim "iat" is not acceptable \(invalid\)/);
    expectRefused({ exp: String(NOW_SECONDS + 60) }, /claim "exp" is not acceptable \(invalid\)/);
    expectRefused({ nbf: 'soon' }, /claim "nbf" is not acceptable \(invalid\)/);
    expectRefused({ nbf: NOW_SECONDS + 31 }, /claim "nbf" is not acceptable \(check_failed\)/);
    expect(check({ nbf: NOW_SECONDS + 30 }).deviceId).toBe(id);
  });

  it('applies the 30 s clock tolerance to exp, iat age and iat in the future', () => {
    // exp: accepted while exp > now - tolerance.
    expect(check({ iat: NOW_SECONDS - 150, exp: NOW_SECONDS - 29 }).deviceId).toBe(id);
    expectRefused({ iat: NOW_SECONDS - 150, exp: NOW_SECONDS - 30 }, /expired/);
    expectRefused({ iat: NOW_SECONDS - 400, exp: NOW_SECONDS - 100 }, /expired/);
    // iat older than lifetime + 2 × tolerance (jose's maxTokenAge = lifetime + tolerance) is
    // reported as expired, before the lifetime check.
    expectRefused({ iat: NOW_SECONDS - 360, exp: NOW_SECONDS - 29 }, /lifetime exp - iat = 331 s/);
    expectRefused({ iat: NOW_SECONDS - 361, exp: NOW_SECONDS }, /expired/);
    // iat in the future within the tolerance only.
    expect(check({ iat: NOW_SECONDS + 30, exp: NOW_SECONDS + 60 }).deviceId).toBe(id);
    expectRefused({ iat: NOW_SECONDS + 31, exp: NOW_SECONDS + 60 }, /"iat" is in the future/);
  });

  it('bounds the lifetime exp - iat by maxTokenLifetimeSeconds', () => {
    expect(check({ exp: NOW_SECONDS + 300 }).deviceId).toBe(id);
    expectRefused({ exp: NOW_SECONDS + 301 }, /lifetime exp - iat = 301 s exceeds 300 s/);
    expectRefused({ exp: NOW_SECONDS + 3600 }, /lifetime/);
  });

  it('requires jti to be a string of 8..128 characters', () => {
    expect(check({ jti: 'a'.repeat(8) }).jtiKey).toBe(`${id}:${'a'.repeat(8)}`);
    expect(check({ jti: 'a'.repeat(128) }).deviceId).toBe(id);
    expectRefused({ jti: 'a'.repeat(7) }, /"jti" must be a string of 8\.\.128/);
    expectRefused({ jti: 'a'.repeat(129) }, /"jti"/);
    expectRefused({ jti: 123456789 }, /"jti"/);
    expectRefused({ jti: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'] }, /"jti"/);
  });
});

describe('verifyDeviceToken / authenticateDevice on PGlite', () => {
  let database: Database;
  let deps: DeviceAuthDeps;
  const clock: Clock = { now: () => NOW };
  const registered = deviceKeys();
  const token = (d: DeviceKeys, overrides: Record<string, unknown> = {}) =>
    compact({ alg: 'EdDSA' }, claimsFor(d.id, overrides), d.privateKey);
  beforeAll(async () => {
    database = await openDatabase({ kind: 'pglite' });
    deps = { db: database.db, clock, config: DEFAULT_APP_CONFIG, deviceKeys: new Map() };
    await database.db.insert(products).values({ id: 'p', trustRoot: {}, trustRootVersion: 1 });
    await database.db.insert(devices).values({
      id: registered.id,
      product: 'p',
      hardware: 'hw',
      publicKeyJwk: { kty: 'OKP', crv: 'Ed25519', x: registered.x },
    });
  });
  afterAll(async () => {
    await database?.close();
  });

  it('caches the device key as a KeyObject on first contact and verifies from the cache after', async () => {
    const verified = await verifyDeviceToken(deps, token(registered));
    expect(verified.deviceId).toBe(registered.id);
    const cached = deps.deviceKeys.get(registered.id);
    expect(cached?.asymmetricKeyType).toBe('ed25519');
    expect(cached?.type).toBe('public');
    // Served from the cache: the row is not read again (a device id is bound to its key for life).
    const replacedKey = deviceKeys().x;
    await database.db.update(devices).set({ publicKeyJwk: { kty: 'OKP', crv: 'Ed25519', x: replacedKey } });
    expect((await verifyDeviceToken(deps, token(registered))).deviceId).toBe(registered.id);
    expect(deps.deviceKeys.get(registered.id)).toBe(cached);
    await database.db.update(devices).set({ publicKeyJwk: { kty: 'OKP', crv: 'Ed25519', x: registered.x } });
  });

  it('refuses unknown devices after the structural checks, and bad tokens before any lookup', async () => {
    const stranger = deviceKeys();
    expect((await refusedWith(verifyDeviceToken(deps, token(stranger)))).code).toBe('ERR_DEVICE_UNKNOWN');
    // A malformed token naming an unknown device is refused as malformed: no database read.
    const none = compact({ alg: 'none' }, claimsFor(stranger.id), stranger.privateKey);
    expect((await refusedWith(verifyDeviceToken(deps, none))).code).toBe('ERR_DEVICE_TOKEN_INVALID');
    expect(deps.deviceKeys.has(stranger.id)).toBe(false);
  });

  it('authenticates, consumes the jti once, and refuses decommissioned devices', async () => {
    const once = token(registered);
    expect((await authenticateDevice(deps, once)).id).toBe(registered.id);
    expect((await refusedWith(authenticateDevice(deps, once))).code).toBe('ERR_DEVICE_TOKEN_REPLAYED');
    // The same jti in a new token is still a replay: used ids are per (device, jti).
    const jti = randomUUID();
    expect((await authenticateDevice(deps, token(registered, { jti }))).id).toBe(registered.id);
    expect(
      (await refusedWith(authenticateDevice(deps, token(registered, { jti, exp: NOW_SECONDS + 100 })))).code,
    ).toBe('ERR_DEVICE_TOKEN_REPLAYED');
    const wrongKey = compact({ alg: 'EdDSA' }, claimsFor(registered.id), deviceKeys().privateKey);
    expect((await refusedWith(authenticateDevice(deps, wrongKey))).message).toMatch(
      /signature does not verify/,
    );
    await database.db.update(devices).set({ decommissionedAt: NOW }).where(eq(devices.id, registered.id));
    expect((await refusedWith(authenticateDevice(deps, token(registered)))).code).toBe(
      'ERR_DEVICE_DECOMMISSIONED',
    );
  });
});
