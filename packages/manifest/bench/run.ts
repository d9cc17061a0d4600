// Verification cost on the device: checkRelease (JWS parse, Ed25519 verify, schema, policy) and
// the root chain walk. Run: npx tsx bench/run.ts
import {
  checkRelease,
  createTrustRoot,
  generateSigningKey,
  type SignedRoot,
  signManifest,
  signTrustRoot,
  type TrustRoot,
  verifyRootChain,
} from '../src/index.js';
import { exampleManifest } from '../test/fixtures.js';

const now = new Date('2026-12-01T00:00:00Z');
const device = {
  product: 'eflow-vm',
  hardware: 'hyperv-x64',
  currentVersion: '1.0.0',
  securityVersionFloor: 0,
};

async function timeIt(label: string, iterations: number, fn: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < 20; i++) await fn();
  const start = performance.now();
  for (let i = 0; i < iterations; i++) await fn();
  const ms = (performance.now() - start) / iterations;
  console.log(`${label.padEnd(46)} ${ms.toFixed(3)} ms/op  (${Math.round(1000 / ms)} op/s)`);
}

for (const [threshold, count] of [
  [1, 1],
  [2, 3],
  [5, 5],
] as const) {
  const rootKey = await generateSigningKey();
  const releaseKeys = await Promise.all(Array.from({ length: count }, () => generateSigningKey()));
  const root = await createTrustRoot({
    version: 1,
    expires: '2030-01-01T00:00:00Z',
    rootKeys: [rootKey],
    rootThreshold: 1,
    releaseKeys,
    releaseThreshold: threshold,
  });
  const jws = JSON.stringify(await signManifest(exampleManifest(), releaseKeys.slice(0, threshold), root));
  await timeIt(`checkRelease ${threshold}-of-${count} (${jws.length} B JWS)`, 300, () =>
    checkRelease(jws, root, device, now),
  );
}

// A chain of 20 rotations, each to a fresh 2-of-3 root role.
let keys = await Promise.all([0, 1, 2].map(() => generateSigningKey()));
const release = [await generateSigningKey()];
const mk = (version: number, rootKeys: typeof keys): Promise<TrustRoot> =>
  createTrustRoot({
    version,
    expires: '2030-01-01T00:00:00Z',
    rootKeys,
    rootThreshold: 2,
    releaseKeys: release,
    releaseThreshold: 1,
  });
let previous = await mk(1, keys);
const trusted = await signTrustRoot(previous, keys);
const chain: SignedRoot[] = [];
for (let v = 2; v <= 21; v++) {
  const next = await Promise.all([0, 1, 2].map(() => generateSigningKey()));
  const root = await mk(v, next);
  chain.push(await signTrustRoot(root, [...keys.slice(0, 2), ...next.slice(0, 2)], previous));
  previous = root;
  keys = next;
}
await timeIt('verifyRootChain v1 → v21 (2-of-3 each step)', 20, () => verifyRootChain(trusted, chain, now));
