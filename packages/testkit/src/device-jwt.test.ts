// The device JWT vectors against jose, an independent JWT implementation: it accepts and refuses
// them as the vectors say, except where a rule is ours alone (joseAgrees: false).
import { importJWK, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { DEVICE_JWT_VECTORS, DEVICE_KEY_JWK, JOSE_OPTIONS, NOW } from './device-jwt.js';

describe('device JWT vectors', () => {
  it('are judged by jose as they say', async () => {
    const key = await importJWK({ kty: 'OKP', crv: 'Ed25519', x: DEVICE_KEY_JWK.x }, 'EdDSA');
    for (const vector of DEVICE_JWT_VECTORS) {
      const accepted = await jwtVerify(vector.token, key, { ...JOSE_OPTIONS, currentDate: NOW }).then(
        () => true,
        () => false,
      );
      const expected = vector.verdict === 'accepted';
      expect({ name: vector.name, accepted }).toEqual({
        name: vector.name,
        accepted: vector.joseAgrees ? expected : !expected,
      });
    }
  });
});
