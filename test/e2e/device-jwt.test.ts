import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEVICE_ID,
  DEVICE_KEY_JWK,
  deviceClaims,
  JOSE_OPTIONS,
  NOW as VECTORS_NOW,
  POLICY as VECTORS_POLICY,
  signDeviceToken,
} from '@abota/testkit/device-jwt';
import { decodeProtectedHeader, importJWK, jwtVerify } from 'jose';
import type { KeyObject } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceKey } from '@abota/client';

// The update server's own verifier, read from its source: the device JWT is a contract between
// the agent (@abota/client) and the server, so the client's hand-built token is checked by the
// code that will receive it. Here in test/, where composition belongs: a package never imports a
// service. (A computed specifier keeps the server's sources out of this workspace's typecheck.)
const SERVER_VERIFIER = new URL('../../services/update-server/src/auth/device-jwt.ts', import.meta.url);
const { devicePublicKey, parseDeviceToken, verifyParsedDeviceToken } = (await import(
  SERVER_VERIFIER.href
)) as {
  devicePublicKey(x: string): KeyObject;
  parseDeviceToken(token: string): unknown;
  verifyParsedDeviceToken(
    parsed: unknown,
    key: KeyObject,
    clock: { now(): Date },
    policy: { audience: string; clockToleranceSeconds: number; maxTokenLifetimeSeconds: number },
  ): Promise<{ deviceId: string; jtiExpiresAt: Date }>;
};

const policy = { audience: 'abota', clockToleranceSeconds: 30, maxTokenLifetimeSeconds: 300 };

describe('DeviceKey.signJwt', () => {
  let dir: string;
  let key: DeviceKey;
  const deviceId = randomUUID();
  const now = new Date('2026-11-26T01:00:00Z');
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'abota-device-auth-'));
    key = await DeviceKey.generate(join(dir, 'device-key.json'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('produces a token the update server accepts with the registered key', async () => {
    const token = await key.signJwt({ deviceId, audience: 'abota', lifetimeSeconds: 300, now });
    const verified = await verifyParsedDeviceToken(
      parseDeviceToken(token),
      devicePublicKey(key.publicJwk.x),
      { now: () => now },
      policy,
    );
    expect(verified.deviceId).toBe(deviceId);
    expect(verified.jtiExpiresAt.getTime()).toBe(now.getTime() + (300 + 30) * 1000);
  });

  it('carries the contract claims (iss = sub = device id, aud, iat, exp, a fresh jti), verified by jose', async () => {
    const a = await key.signJwt({ deviceId, audience: 'abota', lifetimeSeconds: 120, now });
    const b = await key.signJwt({ deviceId, audience: 'abota', lifetimeSeconds: 120, now });
    expect(decodeProtectedHeader(a)).toEqual({ alg: 'EdDSA', typ: 'JWT' });
    const { payload } = await jwtVerify(a, await importJWK({ ...key.publicJwk }, 'EdDSA'), {
      algorithms: ['EdDSA'],
      issuer: deviceId,
      subject: deviceId,
      audience: 'abota',
      currentDate: now,
      requiredClaims: ['iat', 'exp', 'jti'],
    });
    const iat = now.getTime() / 1000;
    expect(payload).toMatchObject({ iat, exp: iat + 120 });
    const { payload: other } = await jwtVerify(b, await importJWK({ ...key.publicJwk }, 'EdDSA'), {
      currentDate: now,
    });
    expect(other.jti).not.toBe(payload.jti);
  });

  it('is refused by the server when signed by another key or altered', async () => {
    const token = await key.signJwt({ deviceId, audience: 'abota', lifetimeSeconds: 300, now });
    const otherKey = await DeviceKey.generate(join(dir, 'other-key.json'));
    await expect(
      verifyParsedDeviceToken(
        parseDeviceToken(token),
        devicePublicKey(otherKey.publicJwk.x),
        { now: () => now },
        policy,
      ),
    ).rejects.toMatchObject({ code: 'ERR_DEVICE_TOKEN_INVALID' });
    const [h, p, s] = token.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString('utf8'));
    const altered = Buffer.from(JSON.stringify({ ...claims, exp: claims.exp + 1 })).toString('base64url');
    await expect(
      verifyParsedDeviceToken(
        parseDeviceToken(`${h}.${altered}.${s}`),
        devicePublicKey(key.publicJwk.x),
        { now: () => now },
        policy,
      ),
    ).rejects.toMatchObject({ code: 'ERR_DEVICE_TOKEN_INVALID' });
  });

  it('signs what the shared device JWT vectors call a good token (@abota/testkit/device-jwt)', async () => {
    const path = join(dir, 'vector-key.json');
    await writeFile(path, JSON.stringify(DEVICE_KEY_JWK), { mode: 0o600 });
    const vectorKey = await DeviceKey.load(path);
    const token = await vectorKey.signJwt({
      deviceId: DEVICE_ID,
      audience: VECTORS_POLICY.audience,
      lifetimeSeconds: 120,
      now: VECTORS_NOW,
    });
    const { payload, protectedHeader } = await jwtVerify(
      token,
      await importJWK({ ...vectorKey.publicJwk }, 'EdDSA'),
      { ...JOSE_OPTIONS, currentDate: VECTORS_NOW },
    );
    expect(protectedHeader).toEqual({ alg: 'EdDSA', typ: 'JWT' });
    // The same claims as the vectors' good token, but its own random jti: the signature differs.
    expect({ ...payload, jti: 'x' }).toEqual({ ...deviceClaims(), jti: 'x' });
    expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/);
    const sameJti = signDeviceToken({ ...payload }, { alg: 'EdDSA', typ: 'JWT' });
    expect(token).toBe(sameJti);
  });
});
