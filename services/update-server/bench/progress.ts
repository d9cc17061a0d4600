// Rollout progress at fleet scale (issue #17): one stage evaluation of a running rollout — the
// progress count plus the stage decision, what every replica does every 5 s per active rollout —
// on the real PostgreSQL with 10,000 and then 1,000,000 devices of one product: from the
// counters (src/rollout/counters.ts, what the engine runs) and by a full recount from the fleet
// (progress-sql.ts, what it ran before). Also timed: the first count after the fleet changed
// (the counters catching up with every device: the one-time fill), and one report's write with
// the counter triggers. Devices and members are seeded with generate_series in a scratch
// database that is dropped afterwards.
//   npx tsx --conditions=@abota/source bench/progress.ts      (in services/update-server; also run by `npm run bench`)
//   env: BENCH_FLEETS (10000,1000000), BENCH_RUNS (9), BENCH_OLD_RUNS (3), ABOTA_TEST_DATABASE_URL
import { loadavg } from 'node:os';
import { openDatabase } from '../src/index.js';
import type { ProgressRollout } from '../src/rollout/progress.js';
import { evaluateStage } from '../src/rollout/stages.js';
import { loadProgressCounted } from '../src/rollout/counters.js';
import { loadProgressSql } from '../src/rollout/progress-sql.js';
import { benchScratch, PRODUCT } from './common.js';

const FLEETS = (process.env['BENCH_FLEETS'] ?? '10000,1000000').split(',').map(Number);
const RUNS = Number(process.env['BENCH_RUNS'] ?? 9);
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
  // Seeding a million devices runs past the server's 30 s query deadline.
  const database = await openDatabase({
    kind: 'postgres',
    url: scratch.dbUrl,
    poolSize: 4,
    queryTimeoutMs: 600_000,
  });
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
    const evaluate = async (load: typeof loadProgressCounted) => {
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
    const evaluations: number[] = [];
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
      const catchUp = await timed(1, () => loadProgressCounted(database.db, candidate));
      // What autovacuum does after such a bulk change (the catch-up deleted a row per device from
      // rollout_dirty); without it the next counts wade through the dead rows for a while.
      await q('VACUUM ANALYZE rollout_dirty, rollout_candidates, rollout_counts, rollout_stage_counts');
      const [counted, recount] = [
        await loadProgressCounted(database.db, candidate),
        await loadProgressSql(database.db, candidate),
      ];
      if (JSON.stringify(counted) !== JSON.stringify(recount))
        throw new Error(`the counters differ from the recount at ${fleet} devices`);
      const decision = await evaluate(loadProgressCounted);
      const after = await timed(RUNS, () => evaluate(loadProgressCounted));
      const before = await timed(OLD_RUNS, () => evaluate(loadProgressSql));
      // One report's write (a member's state change) with the counter triggers, as a device sends it.
      const member = (
        (await q('SELECT device_id FROM rollout_devices WHERE rollout_id = $1 LIMIT 1', [rolloutId])) as {
          rows: { device_id: string }[];
        }
      ).rows[0]?.device_id;
      const report = await timed(RUNS, async () => {
        for (const state of ['downloading', 'installing'])
          await q('UPDATE rollout_devices SET state = $3 WHERE rollout_id = $1 AND device_id = $2', [
            rolloutId,
            member,
            state,
          ]);
      });
      evaluations.push(after.ms);
      const line = `devices ${fleet.toLocaleString('en-US')} (members ${members?.toLocaleString('en-US')}, seeded in ${seedMs} ms): evaluation from counters ${after.ms} ms [${after.all.join(', ')}], full recount ${before.ms} ms [${before.all.join(', ')}]; first count after seeding (counters catch up) ${catchUp.ms} ms; report write ${(report.ms / 2).toFixed(2)} ms; decision ${decision.action} (${decision.numbers.stageTargeted} targeted in stage 2); load ${loadavg()[0]?.toFixed(1)}`;
      lines.push(line);
      console.log(line);
    }
    const [first, last] = [evaluations[0], evaluations.at(-1)];
    if (first !== undefined && last !== undefined && evaluations.length > 1)
      console.log(
        `evaluation at ${FLEETS.at(-1)?.toLocaleString('en-US')} / at ${FLEETS[0]?.toLocaleString('en-US')} devices: ${(last / first).toFixed(2)}x`,
      );
  } finally {
    await database.close();
    await scratch.drop();
  }
}

await main();
