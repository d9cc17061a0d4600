// Device-token verification on the poll path: our node:crypto verifier (auth/device-jwt.ts:
// parse, callback Ed25519 verify with a cached KeyObject, claim checks) against jose's jwtVerify
// with a cached key and the same claim options. Reported: verifications per second with 64 in
// flight (what a busy server does) and one at a time, and event-loop CPU µs per verification.
// Run: npx tsx --conditions=@abota/source bench/token-verify.ts [seconds per case, default 3]
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { importJWK, jwtVerify } from 'jose';
import { devicePublicKey, parseDeviceToken, verifyParsedDeviceToken } from '../src/auth/device-jwt.js';

const seconds = Number(process.argv[2] ?? 3);
const policy = { audience: 'abota-update-server', clockToleranceSeconds: 60, maxTokenLifetimeSeconds: 300 };
const clock = { now: () => new Date() };
const { publicKey, privateKey } = generateKeyPairSync('ed25519');
const x = (publicKey.export({ format: 'jwk' }) as { x: string }).x;
const deviceId = randomUUID();

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
function token(): string {
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64({ alg: 'EdDSA' })}.${b64({ iss: deviceId, sub: deviceId, aud: policy.audience, iat: now, exp: now + 60, jti: randomUUID() })}`;
  return `${input}.${sign(null, Buffer.from(input), privateKey).toString('base64url')}`;
}
const tokens = Array.from({ length: 2000 }, token);

const ours = devicePublicKey(x);
const joseKey = await importJWK({ kty: 'OKP', crv: 'Ed25519', x }, 'EdDSA');
const cases: Record<string, (t: string) => Promise<unknown>> = {
  'node:crypto (ours)': (t) => verifyParsedDeviceToken(parseDeviceToken(t), ours, clock, policy),
  'jose jwtVerify': (t) =>
    jwtVerify(t, joseKey, {
      algorithms: ['EdDSA'],
      audience: policy.audience,
      issuer: deviceId,
      subject: deviceId,
      clockTolerance: policy.clockToleranceSeconds,
      maxTokenAge: policy.maxTokenLifetimeSeconds + policy.clockToleranceSeconds,
      requiredClaims: ['iat', 'exp', 'jti'],
    }),
};

async function measure(verify: (t: string) => Promise<unknown>, inFlight: number) {
  let done = 0;
  const end = performance.now() + seconds * 1000;
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  const worker = async () => {
    while (performance.now() < end) {
      await verify(tokens[done % tokens.length]!);
      done++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const elu = performance.eventLoopUtilization(elu0);
  const cpu = process.cpuUsage(cpu0);
  return {
    perSecond: done / seconds,
    eventLoopUs: (elu.active * 1000) / done,
    processCpuUs: (cpu.user + cpu.system) / done,
  };
}

for (const verify of Object.values(cases)) await measure(verify, 64); // warm up
for (const inFlight of [64, 1]) {
  for (const [name, verify] of Object.entries(cases)) {
    const r = await measure(verify, inFlight);
    console.log(
      `${name.padEnd(20)} ${String(inFlight).padStart(2)} in flight: ${r.perSecond.toFixed(0).padStart(6)} verifications/s, event loop ${r.eventLoopUs.toFixed(1)} µs, process CPU ${r.processCpuUs.toFixed(1)} µs per verification`,
    );
  }
}
