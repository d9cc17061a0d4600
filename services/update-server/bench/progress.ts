// Rollout progress at fleet scale (issue #17): one stage evaluation of a running rollout — the
// progress count plus the stage decision, what every replica does every 5 s per active rollout —
// on the real PostgreSQL with 10,000 and then 1,000,000 devices of one product, counted in SQL
// (src/rollout/progress-sql.ts, what the engine runs) and the old way (every device of the
// product and every member read into the process: loadProgressInMemory). Devices and members are
// seeded with generate_series in a scratch database that is dropped afterwards.
//   npx tsx --conditions=@abota/source bench/progress.ts      (in services/update-server; also run by `npm run bench`)
//   env: BENCH_FLEETS (10000,1000000), BENCH_RUNS (5), BENCH_OLD_RUNS (3), ABOTA_TEST_DATABASE_URL
import { loadavg } from 'node:os';
import { openDatabase } from '../src/index.js';
import type { ProgressRollout } from '../src/rollout/progress.js';
import { evaluateStage } from '../src/rollout/stages.js';
import { loadProgress, loadProgressInMemory } from '../src/rollout/store.js';
import { benchScratch, PRODUCT } from './common.js';

const FLEETS = (process.env['BENCH_FLEETS'] ?? '10000,1000000').split(',').map(Number);
const RUNS = Number(process.env['BENCH_RUNS'] ?? 5);
const OLD_RUNS = Number(process.env['BENCH_OLD_RUNS'] ?? 3);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};

async function timed(runs: number, fn: () => Promise<unknown>): Promise<{ ms: number; all: number[] }> {
  const all: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    all.push(Math.round((performance.now() - t) * 10) / 10);
  }
  return { ms: median(all), all };
}

async function main(): Promise<void> {
  const scratch = await benchScratch();
  const database = await openDatabase({ kind: 'postgres', url: scratch.dbUrl, poolSize: 4 });
  try {
    const q = (text: string, values: unknown[] = []) =>
      (
        database.db as unknown as { $client: { query: (t: string, v: unknown[]) => Promise<unknown> } }
      ).$client.query(text, values);
    await q(`INSERT INTO products (id, trust_root, trust_root_version) VALUES ($1, '{}', 1)`, [PRODUCT]);
    const release = (await q(
      `INSERT INTO releases (product, version, security_version, compatible, expires, manifest_jws, manifest)
       VALUES ($1, '2.0.0', 1, '["hyperv-x64"]', now() + interval '1 year', '{}', '{}') RETURNING id`,
      [PRODUCT],
    )) as { rows: { id: string }[] };
    const stages = [
      { percent: 1, minCommitted: 5, maxFailurePercent: 10, minSample: 5 },
      { percent: 10, minCommitted: 50, maxFailurePercent: 10, minSample: 20 },
      { percent: 100 },
    ];
    const selector = { groups: ['north', 'south'], currentVersion: '>=1.0.0 <2.0.0' };
    const rollout = (await q(
      `INSERT INTO rollouts (release_id, product, selector, stages, current_stage) VALUES ($1, $2, $3, $4, 1) RETURNING id, stage_started_at`,
      [release.rows[0]?.id, PRODUCT, JSON.stringify(selector), JSON.stringify(stages)],
    )) as { rows: { id: string; stage_started_at: Date }[] };
    const rolloutId = rollout.rows[0]?.id as string;
    const candidate: ProgressRollout = {
      rolloutId,
      product: PRODUCT,
      selector,
      stages,
      releaseVersion: '2.0.0',
      releaseCompatible: ['hyperv-x64'],
      allowDowngrade: false,
    };
    const evaluate = async (load: typeof loadProgress) => {
      const progress = await load(database.db, candidate);
      return evaluateStage({
        stages,
        currentStage: 1,
        stageStartedAt: rollout.rows[0]?.stage_started_at ?? new Date(),
        progress,
        now: new Date(),
      });
    };
    let seeded = 0;
    const lines: string[] = [];
    for (const fleet of FLEETS) {
      const t = performance.now();
      // 90 % hyperv-x64, a third in group north, a third in south, 2 % already on 2.0.0; ~8 % of
      // the fleet offered the rollout (states spread over installing, committed and failed).
      await q(
        `INSERT INTO devices (id, product, hardware, public_key_jwk, tags, current_version)
         SELECT gen_random_uuid(), $1, CASE WHEN i % 10 = 0 THEN 'kvm-x64' ELSE 'hyperv-x64' END,
                '{"kty":"OKP","crv":"Ed25519","x":"x"}',
                CASE i % 3 WHEN 0 THEN '{group:north,edge}'::text[] WHEN 1 THEN '{group:south}'::text[] ELSE '{}'::text[] END,
                CASE WHEN i % 50 = 0 THEN '2.0.0' WHEN i % 7 = 0 THEN '1.1.0' ELSE '1.0.0' END
         FROM generate_series($2::int + 1, $3::int) AS i`,
        [PRODUCT, seeded, fleet],
      );
      await q(
        `INSERT INTO rollout_devices (rollout_id, device_id, state, blobs_fetched_at)
         SELECT $1, d.id, (ARRAY['installing','committed','committed','committed','failed'])[1 + floor(random() * 5)::int], now()
         FROM devices d WHERE random() < 0.08
         ON CONFLICT DO NOTHING`,
        [rolloutId],
      );
      await q('ANALYZE devices');
      await q('ANALYZE rollout_devices');
      seeded = fleet;
      const seedMs = Math.round(performance.now() - t);
      const members = (
        (await q('SELECT count(*)::int AS n FROM rollout_devices')) as { rows: { n: number }[] }
      ).rows[0]?.n;
      const [sqlCount, inMemory] = [
        await loadProgress(database.db, candidate),
        await loadProgressInMemory(database.db, candidate),
      ];
      if (JSON.stringify(sqlCount) !== JSON.stringify(inMemory))
        throw new Error(`the SQL count differs from the in-memory one at ${fleet} devices`);
      const decision = await evaluate(loadProgress);
      const after = await timed(RUNS, () => evaluate(loadProgress));
      const before = await timed(OLD_RUNS, () => evaluate(loadProgressInMemory));
      const line = `devices ${fleet.toLocaleString('en-US')} (members ${members?.toLocaleString('en-US')}, seeded in ${seedMs} ms): SQL count ${after.ms} ms [${after.all.join(', ')}], in-memory ${before.ms} ms [${before.all.join(', ')}], ${(before.ms / after.ms).toFixed(1)}x; decision ${decision.action} (${decision.numbers.stageTargeted} targeted in stage 2); load ${loadavg()[0]?.toFixed(1)}`;
      lines.push(line);
      console.log(line);
    }
  } finally {
    await database.close();
    await scratch.drop();
  }
}

await main();
