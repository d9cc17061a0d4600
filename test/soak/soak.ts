// Shared parts of the soak tests (`npm run test:soak`): one seed for the whole run, taken from
// ABOTA_SOAK_SEED or the clock and printed with every failure, so a failing schedule (kill
// points, flipped bits) replays exactly; sizes from environment variables with the defaults
// that keep the run under ten minutes on a 2-core machine; and the closing summary lines.
import { seeded } from '@abota/testkit';

/** The run's seed: ABOTA_SOAK_SEED, or the clock (printed, so the run can be replayed). */
export const SOAK_SEED = Number(process.env['ABOTA_SOAK_SEED'] ?? Date.now() % 1_000_000);

/** A positive integer from the environment variable `name`, or `fallback`. */
export function soakCount(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new Error(`${name} must be a positive integer, found "${text}"`);
  return n;
}

/** mulberry32 (@abota/testkit's seeded): `salt` gives each soak part its own stream. */
export function soakRandom(salt: number): () => number {
  return seeded(SOAK_SEED ^ Math.imul(salt, 0x9e3779b1));
}

/** An integer in [0, n). */
export const pick = (random: () => number, n: number) => Math.floor(random() * n);

/** `n` tallied under `key`. */
export function tally(counts: Map<string, number>, key: string, n = 1): void {
  counts.set(key, (counts.get(key) ?? 0) + n);
}

/** "a: 3, b: 1", largest first. */
export function formatTally(counts: Map<string, number>): string {
  return [...counts.entries()]
    .sort((x, y) => y[1] - x[1] || x[0].localeCompare(y[0]))
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ');
}

/** One summary block on stdout (vitest shows it with the test's output). */
export function printSummary(part: string, startedMs: number, lines: string[]): void {
  const seconds = ((performance.now() - startedMs) / 1000).toFixed(1);
  console.log(`\n[soak] ${part} — seed ${SOAK_SEED}, ${seconds} s\n${lines.map((l) => `  ${l}`).join('\n')}`);
}

/** The message every soak assertion carries: the seed to replay it, and what happened so far. */
export const replay = (log: readonly string[] = []) =>
  `ABOTA_SOAK_SEED=${SOAK_SEED} replays this run\n${log.slice(-30).join('\n')}`;
