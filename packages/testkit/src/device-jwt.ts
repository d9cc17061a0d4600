// The device JWT contract (docs/CONTRACTS.md "Update server HTTP API") as shared test vectors:
// one fixed device key, clock and policy, and tokens each with the verdict every party must give.
// The claim rules are written once, here: header { alg: EdDSA }, iss = sub = the device id
// (a UUID), aud, numeric iat and exp, optional nbf, exp - iat ≤ the lifetime limit, a jti of
// 8..128 characters, the clock tolerance applied to exp, nbf and iat. The server's node:crypto
// verifier (services/update-server auth/device-jwt.ts), jose's jwtVerify with the options of
// JOSE_OPTIONS, and the agent's signer (packages/client http/device-auth.ts) are each tested
// against these vectors.
import { createPrivateKey, sign } from 'node:crypto';

/** RFC 8037 Appendix A.1: a published Ed25519 key, so every vector is a fixed string. */
export const DEVICE_KEY_JWK = {
  kty: 'OKP',
  crv: 'Ed25519',
  d: 'nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A',
  x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo',
} as const;

export const DEVICE_ID = '5f0c6a2e-8d1b-4c7a-9e3f-2b6d4a8c1e07';
/** Whole seconds (NumericDate); the vectors are checked at NOW, half a second later. */
export const NOW_SECONDS = 1_800_000_000;
export const NOW = new Date(NOW_SECONDS * 1000 + 500);
export const POLICY = { audience: 'abota', clockToleranceSeconds: 30, maxTokenLifetimeSeconds: 300 } as const;

/** jose's jwtVerify options that state the same rules (maxTokenAge bounds iat like our lifetime check). */
export const JOSE_OPTIONS = {
  algorithms: ['EdDSA'],
  issuer: DEVICE_ID,
  subject: DEVICE_ID,
  audience: POLICY.audience,
  clockTolerance: POLICY.clockToleranceSeconds,
  maxTokenAge: POLICY.maxTokenLifetimeSeconds + POLICY.clockToleranceSeconds,
  requiredClaims: ['iat', 'exp', 'jti'],
};

const privateKey = createPrivateKey({ key: { ...DEVICE_KEY_JWK }, format: 'jwk' });
const b64url = (value: string | Buffer) => Buffer.from(value).toString('base64url');

/** The claims of a good token at NOW, with `overrides` (undefined removes a claim). */
export function deviceClaims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const claims: Record<string, unknown> = {
    iss: DEVICE_ID,
    sub: DEVICE_ID,
    aud: POLICY.audience,
    iat: NOW_SECONDS,
    exp: NOW_SECONDS + 120,
    jti: 'b1946ac9-2492-4d0c-8b57-37b0f3a1d6e2',
    ...overrides,
  };
  for (const [name, value] of Object.entries(claims)) if (value === undefined) delete claims[name];
  return claims;
}

/** A compact JWS of `claims` under `header`, signed with DEVICE_KEY_JWK. */
export function signDeviceToken(
  claims: Record<string, unknown>,
  header: Record<string, unknown> = { alg: 'EdDSA' },
): string {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${sign(null, Buffer.from(input), privateKey).toString('base64url')}`;
}

export interface DeviceJwtVector {
  name: string;
  token: string;
  /** 'accepted', or the rule that refuses it (what the refusal message names). */
  verdict: 'accepted' | RegExp;
  /** jose reaches the same verdict (false: a rule of ours that jose does not have). */
  joseAgrees: boolean;
}

const good = signDeviceToken(deviceClaims());
const [goodHeader = '', goodPayload = ''] = good.split('.');
const otherSignature = signDeviceToken(deviceClaims({ jti: 'another-jti-value' })).split('.')[2] ?? '';

export const DEVICE_JWT_VECTORS: readonly DeviceJwtVector[] = [
  { name: 'a good token', token: good, verdict: 'accepted', joseAgrees: true },
  {
    name: 'typ JWT in the header (what the agent sends)',
    token: signDeviceToken(deviceClaims(), { alg: 'EdDSA', typ: 'JWT' }),
    verdict: 'accepted',
    joseAgrees: true,
  },
  {
    name: 'aud as an array holding the audience',
    token: signDeviceToken(deviceClaims({ aud: ['other', POLICY.audience] })),
    verdict: 'accepted',
    joseAgrees: true,
  },
  {
    name: 'expired beyond the tolerance',
    token: signDeviceToken(deviceClaims({ iat: NOW_SECONDS - 200, exp: NOW_SECONDS - 31 })),
    verdict: /expired/,
    joseAgrees: true,
  },
  {
    name: 'expired within the tolerance',
    token: signDeviceToken(deviceClaims({ iat: NOW_SECONDS - 200, exp: NOW_SECONDS - 29 })),
    verdict: 'accepted',
    joseAgrees: true,
  },
  {
    name: 'nbf in the future beyond the tolerance',
    token: signDeviceToken(deviceClaims({ nbf: NOW_SECONDS + 31 })),
    verdict: /"nbf"/,
    joseAgrees: true,
  },
  {
    name: 'issued too long ago (iat older than lifetime + 2 × tolerance)',
    token: signDeviceToken(deviceClaims({ iat: NOW_SECONDS - 361, exp: NOW_SECONDS + 10 })),
    verdict: /expired/,
    joseAgrees: true,
  },
  {
    name: 'lifetime exp - iat over the limit',
    token: signDeviceToken(deviceClaims({ exp: NOW_SECONDS + 301 })),
    verdict: /lifetime/,
    joseAgrees: false,
  },
  {
    name: 'wrong audience',
    token: signDeviceToken(deviceClaims({ aud: 'other' })),
    verdict: /"aud"/,
    joseAgrees: true,
  },
  {
    name: 'iss is not the device',
    token: signDeviceToken(deviceClaims({ iss: 'someone-else' })),
    verdict: /"iss"/,
    joseAgrees: true,
  },
  {
    name: 'no jti',
    token: signDeviceToken(deviceClaims({ jti: undefined })),
    verdict: /"jti"/,
    joseAgrees: true,
  },
  {
    name: 'jti too short',
    token: signDeviceToken(deviceClaims({ jti: 'short' })),
    verdict: /"jti"/,
    joseAgrees: false,
  },
  {
    name: 'no exp',
    token: signDeviceToken(deviceClaims({ exp: undefined })),
    verdict: /"exp"/,
    joseAgrees: true,
  },
  {
    name: 'alg none',
    token: `${b64url(JSON.stringify({ alg: 'none' }))}.${goodPayload}.`,
    verdict: /EdDSA|signature/,
    joseAgrees: true,
  },
  {
    name: 'crit header',
    token: signDeviceToken(deviceClaims(), { alg: 'EdDSA', crit: ['exp'], exp: 1 }),
    verdict: /crit/,
    joseAgrees: true,
  },
  {
    name: 'signature of another token',
    token: `${goodHeader}.${goodPayload}.${otherSignature}`,
    verdict: /does not verify/,
    joseAgrees: true,
  },
];
