// Ed25519 JWK keys: kid = RFC 7638 thumbprint, key files checked on import.
import { sha256 } from '@noble/hashes/sha2.js';
import { base64url } from 'jose';
import { describe, expect, it } from 'vitest';
import { exportPrivateJwk, generateSigningKey, importSigningKey, jwkThumbprint } from './keys.js';

// RFC 8037 Appendix A.1-A.3: the Ed25519 example key and its RFC 7638 thumbprint.
const RFC8037_KEY = {
  kty: 'OKP',
  crv: 'Ed25519',
  d: 'nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A',
  x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo',
} as const;
const RFC8037_THUMBPRINT = 'kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k';

describe('keys', () => {
  it('computes the RFC 8037 A.3 thumbprint as the kid of the RFC 8037 example key', async () => {
    const key = await importSigningKey(RFC8037_KEY);
    expect(key.kid).toBe(RFC8037_THUMBPRINT);
    expect(await jwkThumbprint(key.publicJwk)).toBe(RFC8037_THUMBPRINT);
  });

  it('generates keys whose kid is the SHA-256 of the RFC 7638 member string', async () => {
    const key = await generateSigningKey();
    const members = `{"crv":"Ed25519","kty":"OKP","x":"${key.publicJwk.x}"}`;
    expect(key.kid).toBe(base64url.encode(sha256(new TextEncoder().encode(members))));
    expect(key.publicJwk).not.toHaveProperty('d');
  });

  it('round-trips a key file (kid, alg, use included) through importSigningKey', async () => {
    const key = await generateSigningKey();
    const file = JSON.parse(JSON.stringify(exportPrivateJwk(key)));
    expect(file).toMatchObject({ kid: key.kid, alg: 'EdDSA', use: 'sig' });
    expect(await importSigningKey(file)).toEqual(key);
  });

  it('refuses a key file whose kid is not its thumbprint', async () => {
    await expect(importSigningKey({ ...RFC8037_KEY, kid: 'A'.repeat(43) })).rejects.toMatchObject({
      code: 'ERR_KEY_INVALID',
      message: expect.stringContaining(RFC8037_THUMBPRINT),
    });
  });

  it('refuses a key file whose private half does not belong to its public half', async () => {
    const other = await generateSigningKey();
    await expect(importSigningKey({ ...RFC8037_KEY, x: other.publicJwk.x })).rejects.toMatchObject({
      code: 'ERR_KEY_INVALID',
      message: expect.stringContaining('d does not match x'),
    });
  });

  it.each([
    ['a public key only', { kty: 'OKP', crv: 'Ed25519', x: RFC8037_KEY.x }, 'd'],
    ['an X25519 key', { ...RFC8037_KEY, crv: 'X25519' }, 'crv'],
    ['an RSA key', { kty: 'RSA', n: 'AQAB', e: 'AQAB' }, 'kty'],
    ['a truncated d', { ...RFC8037_KEY, d: RFC8037_KEY.d.slice(0, 40) }, 'd'],
  ])('refuses %s, naming the member', async (_name, jwk, member) => {
    await expect(importSigningKey(jwk)).rejects.toMatchObject({
      code: 'ERR_KEY_INVALID',
      message: expect.stringContaining(member),
    });
  });
});
