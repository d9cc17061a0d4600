// Resident memory of the two JwsEngines in the device's agent: each variant runs in a fresh Node
// process that loads the agent's library (@abota/client, built) and then verifies a signed
// manifest 50 times with one engine. Reported: RSS after a full GC and peak RSS (maxRSS).
// Run after `npm run build`: npx tsx bench/engine-rss.ts [rounds, default 5]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTrustRoot, generateSigningKey, signManifest } from '../src/index.js';
import { exampleManifest } from '../test/fixtures.js';

const rounds = Number(process.argv[2] ?? 5);
const key = await generateSigningKey();
const root = await createTrustRoot({
  version: 1,
  expires: '2027-06-01T00:00:00Z',
  rootKeys: [key],
  rootThreshold: 1,
  releaseKeys: [key],
  releaseThreshold: 1,
});
const dir = mkdtempSync(join(tmpdir(), 'abota-engine-rss-'));
const input = join(dir, 'input.json');
writeFileSync(input, JSON.stringify({ root, jws: await signManifest(exampleManifest(), [key]) }));

const child = (engine: 'none' | 'webcrypto' | 'jose') => `
import { readFileSync } from 'node:fs';
await import('@abota/client');
const manifest = await import('@abota/manifest');
const { root, jws } = JSON.parse(readFileSync(${JSON.stringify(input)}, 'utf8'));
const options = ${engine === 'jose' ? "{ engine: (await import('@abota/manifest/jose')).joseEngine }" : '{}'};
if (${JSON.stringify(engine)} !== 'none')
  for (let i = 0; i < 50; i++) await manifest.verifyManifest(jws, root, new Date('2026-12-01T00:00:00Z'), options);
globalThis.gc();
process.stdout.write(JSON.stringify({ rss: process.memoryUsage().rss, maxRss: process.resourceUsage().maxRSS * 1024 }));
`;

const mib = (n: number) => (n / 1024 / 1024).toFixed(2);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const results: Record<string, { rss: number[]; maxRss: number[] }> = {};
for (let r = 0; r < rounds; r++) {
  for (const engine of ['none', 'webcrypto', 'jose'] as const) {
    const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', child(engine)], {
      cwd: new URL('..', import.meta.url),
      encoding: 'utf8',
    });
    const { rss, maxRss } = JSON.parse(out) as { rss: number; maxRss: number };
    results[engine] ??= { rss: [], maxRss: [] };
    results[engine].rss.push(rss);
    results[engine].maxRss.push(maxRss);
  }
}
rmSync(dir, { recursive: true, force: true });
const base = results['none']!;
for (const [engine, r] of Object.entries(results)) {
  console.log(
    `${engine.padEnd(10)} RSS after GC ${mib(median(r.rss))} MiB (+${mib(median(r.rss) - median(base.rss))}), peak ${mib(median(r.maxRss))} MiB (+${mib(median(r.maxRss) - median(base.maxRss))})  median of ${rounds}`,
  );
}
