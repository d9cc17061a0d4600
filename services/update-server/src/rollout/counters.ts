// A running rollout's progress from counters instead of the fleet (issue #17 "progress at fleet
// scale"). rollout_counts holds devices per (bucket, state): members are counted by triggers on
// rollout_devices in the statement that changes them (an offer, a report, a download), candidates
// by triggers on rollout_candidates (drizzle/0009_rollout_counters.sql). rollout_candidates is
// filled once per rollout from the fleet (the first count after it starts), then kept in step
// from rollout_dirty: the devices whose candidacy may have changed since (registered, retagged,
// new version, decommissioned, offered, or moved in the rollout a rollback selects from). A
// trigger sums the bucket counts by stage into rollout_stage_counts, under the stage limits stored
// with the rollout, regrouped here when a count finds them changed (minDevices follows the lowest
// buckets, stage-limits.ts). So a count reads the lowest minDevices buckets and one row per
// (stage, state) — the same work for 10,000 and 1,000,000 devices — plus what changed since the
// last count. The rules are the recount's (progress-sql.ts CANDIDATE_SQL, progress.ts), and
// test/rollout-counters.test.ts holds the two equal after random reports.
import { sql } from 'drizzle-orm';
import { rawClient } from '../db/poll-statement.js';
import type { Db } from '../db/database.js';
import { OUTCOME_STATES } from './model.js';
import { type BakeOptions, CANDIDATE_SQL, candidateParams, productVersions } from './progress-sql.js';
import {
  lowestBucketsNeeded,
  type ProgressRollout,
  progressFromStageCounts,
  type StageCount,
  type StageProgress,
} from './progress.js';
import { stageBucketLimits } from './stage-limits.js';

export type CountedRollout = ProgressRollout & { lateJoiners?: boolean };

// Seeding and syncing go through the devices in chunks of CHUNK (by device id), each its own
// statement, so that no statement runs long (a query past the server's deadline fails) and the
// locks each takes are few.
const CHUNK = 20_000;
const MAX_UUID = 'ffffffff-ffff-ffff-ffff-ffffffffffff';

// The first count of a running rollout fills rollout_candidates from the fleet: the product's
// devices after $14 (by id), CHUNK ($15) of them, become exactly the candidate rule's. Two replicas
// seeding at once do the same work twice, with the same result. The chunk's devices listed in
// rollout_dirty before this statement are judged here and unlisted ($16: the running versions
// judged; a device on another version stays listed); one changed meanwhile stays listed.
const SEED_SQL = `
WITH span AS (
  SELECT d.id FROM devices d WHERE d.product = $1 AND d.id > $14::uuid ORDER BY d.id LIMIT $15
), chosen AS (
  SELECT d.id FROM devices d JOIN span ON span.id = d.id WHERE ${CANDIDATE_SQL}
), gone AS (
  DELETE FROM rollout_candidates c
  WHERE c.rollout_id = $2::uuid AND c.device_id > $14::uuid
    AND c.device_id <= CASE WHEN (SELECT count(*) FROM span) < $15 THEN '${MAX_UUID}'::uuid
                            ELSE (SELECT id FROM span ORDER BY id DESC LIMIT 1) END
    AND NOT EXISTS (SELECT 1 FROM chosen WHERE chosen.id = c.device_id)
  RETURNING 1
), added AS (
  INSERT INTO rollout_candidates (rollout_id, device_id) SELECT $2::uuid, id FROM chosen
  ON CONFLICT DO NOTHING RETURNING 1
), cleared AS (
  DELETE FROM rollout_dirty x USING span
  WHERE x.rollout_id = $2::uuid AND x.device_id = span.id AND NOT EXISTS (
    SELECT 1 FROM devices d WHERE d.id = x.device_id
      AND d.current_version IS NOT NULL AND NOT (d.current_version = ANY($16::text[])))
  RETURNING 1
)
SELECT (SELECT id::text FROM span ORDER BY id DESC LIMIT 1) AS last, (SELECT count(*) FROM span)::int AS n`;

const SEEDED_SQL = `
UPDATE rollouts SET candidates_seeded_at = now()
WHERE id = $1::uuid AND candidates_seeded_at IS NULL AND state IN ('active', 'paused')`;

// Later counts re-judge the devices rollout_dirty lists, CHUNK ($15) after $16 at a time
// (deleting a row claims it: a replica syncing at the same time waits and then finds it gone).
// $14: the running versions judged here; a device whose version is not among them (it changed in
// between) stays listed for the next count.
const SYNC_SQL = `
WITH pick AS (
  SELECT y.device_id FROM rollout_dirty y WHERE y.rollout_id = $2::uuid AND y.device_id > $16::uuid
  ORDER BY y.device_id LIMIT $15
), dirty AS (
  DELETE FROM rollout_dirty x WHERE x.rollout_id = $2::uuid AND x.device_id IN (SELECT device_id FROM pick)
    AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = x.device_id
                    AND d.current_version IS NOT NULL AND NOT (d.current_version = ANY($14::text[])))
  RETURNING x.device_id
), chosen AS (
  SELECT d.id FROM devices d JOIN dirty ON dirty.device_id = d.id WHERE ${CANDIDATE_SQL}
), gone AS (
  DELETE FROM rollout_candidates c USING dirty
  WHERE c.rollout_id = $2::uuid AND c.device_id = dirty.device_id
    AND NOT EXISTS (SELECT 1 FROM chosen WHERE chosen.id = c.device_id)
  RETURNING 1
), added AS (
  INSERT INTO rollout_candidates (rollout_id, device_id) SELECT $2::uuid, id FROM chosen
  ON CONFLICT DO NOTHING RETURNING 1
)
SELECT (SELECT device_id::text FROM pick ORDER BY device_id DESC LIMIT 1) AS last, (SELECT count(*) FROM pick)::int AS n`;

// Whether the rollout's candidates were filled, whether any device is listed, and their versions.
const STATE_SQL = `
SELECT (SELECT candidates_seeded_at IS NOT NULL FROM rollouts WHERE id = $1::uuid) AS seeded,
       EXISTS (SELECT 1 FROM rollout_dirty x WHERE x.rollout_id = $1::uuid) AS dirty,
       ARRAY(SELECT DISTINCT d.current_version FROM rollout_dirty x JOIN devices d ON d.id = x.device_id
             WHERE x.rollout_id = $1::uuid AND d.current_version IS NOT NULL) AS versions`;

// What a count counts: candidates (''), members of live devices, and every outcome.
const COUNTED = `c.n <> 0 AND (c.state = '' OR c.live OR c.state = ANY($2::text[]))`;

// The lowest buckets (for the stages' minDevices, stage-limits.ts): an ordered walk of the
// primary key that stops after $3 buckets.
const LOWEST_SQL = `
SELECT c.bucket, sum(c.n)::int AS n FROM rollout_counts c WHERE c.rollout_id = $1::uuid AND ${COUNTED}
GROUP BY c.bucket HAVING sum(c.n) > 0 ORDER BY c.bucket LIMIT $3`;

// Devices per (stage, state, fetched), with the limits they are grouped by (one snapshot).
const STAGES_SQL = `
SELECT r.stage_limits AS limits, c.stage, c.state, c.fetched, sum(c.n)::int AS n
FROM rollouts r LEFT JOIN rollout_stage_counts c ON c.rollout_id = r.id AND ${COUNTED}
WHERE r.id = $1::uuid
GROUP BY 1, 2, 3, 4`;

// Committed devices past the current stage's bake window, by stage: the bake depends on the
// clock, so it is counted at evaluation (only for a stage with a window; health.ts).
const BAKED_SQL = `
SELECT width_bucket(rollout_bucket($1::uuid::text, rd.device_id::text), $2::int[]) AS stage, count(*)::int AS n
FROM rollout_devices rd
WHERE rd.rollout_id = $1::uuid AND rd.state = 'committed'
  AND rd.committed_at <= $4::timestamptz - make_interval(secs => $3::int)
  AND coalesce(rd.healthy_seconds, 0) >= $3::int
GROUP BY 1`;

interface Row extends Record<string, unknown> {
  last: string | null;
  seeded: boolean | null;
  dirty: boolean;
  versions: string[];
  limits: number[] | null;
  stage: number | null;
  bucket: number;
  state: string;
  fetched: boolean;
  n: number;
  version: string;
}

const rowsOf = async (db: Db, text: string, values: unknown[]) =>
  (await rawClient(db).query(text, values)).rows as unknown as Row[];

/** Brings rollout_candidates up to date: the first time from the fleet, then from rollout_dirty. */
export async function syncCandidates(db: Db, rollout: CountedRollout, chunkSize = CHUNK): Promise<void> {
  const client = rawClient(db);
  let [state] = await rowsOf(db, STATE_SQL, [rollout.rolloutId]);
  if (state?.seeded === false) {
    const versions = await productVersions(db, rollout.product);
    const params = candidateParams(rollout, versions);
    let after = '00000000-0000-0000-0000-000000000000';
    for (;;) {
      const [chunk] = await rowsOf(db, SEED_SQL, [...params, after, chunkSize, versions]);
      if (chunk === undefined || chunk.last === null || Number(chunk.n) < chunkSize) break;
      after = chunk.last;
    }
    await client.query(SEEDED_SQL, [rollout.rolloutId]);
    [state] = await rowsOf(db, STATE_SQL, [rollout.rolloutId]);
  }
  if (state?.dirty !== true) return;
  const params = [...candidateParams(rollout, state.versions), state.versions, chunkSize];
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const [chunk] = await rowsOf(db, SYNC_SQL, [...params, after]);
    if (chunk === undefined || chunk.last === null || Number(chunk.n) < chunkSize) break;
    after = chunk.last;
  }
}

const sameLimits = (a: readonly number[] | null | undefined, b: readonly number[]) =>
  a !== null && a !== undefined && a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Stores `limits` as the rollout's stage limits and regroups rollout_stage_counts by them, under
 * the rollout row's lock (the counting triggers hold a key-share lock on it while they write).
 */
async function regroup(db: Db, rolloutId: string, limits: readonly number[]): Promise<void> {
  const array = sql.raw(`ARRAY[${limits.map((l) => String(Math.trunc(l))).join(',')}]::int[]`);
  await db.transaction(async (tx) => {
    const locked = (await tx.execute(
      sql`SELECT stage_limits FROM rollouts WHERE id = ${rolloutId}::uuid FOR UPDATE`,
    )) as unknown as { rows: { stage_limits: number[] | null }[] };
    if (sameLimits(locked.rows[0]?.stage_limits, limits)) return;
    await tx.execute(sql`UPDATE rollouts SET stage_limits = ${array} WHERE id = ${rolloutId}::uuid`);
    await tx.execute(sql`DELETE FROM rollout_stage_counts WHERE rollout_id = ${rolloutId}::uuid`);
    await tx.execute(sql`
      INSERT INTO rollout_stage_counts (rollout_id, stage, state, fetched, live, n)
      SELECT rollout_id, width_bucket(bucket, ${array}), state, fetched, live, sum(n)::int
      FROM rollout_counts WHERE rollout_id = ${rolloutId}::uuid
      GROUP BY 1, 2, 3, 4, 5 HAVING sum(n) <> 0`);
  });
}

/** Per-stage cohorts of a running rollout from its counters: the recount's numbers, O(stages). */
export async function loadProgressCounted(
  db: Db,
  rollout: CountedRollout,
  bake: BakeOptions = { bakeSeconds: 0, now: new Date(0) },
  /** Devices per seeding or syncing statement (tests make it small to cross chunk edges). */
  chunkSize = CHUNK,
): Promise<StageProgress[]> {
  await syncCandidates(db, rollout, chunkSize);
  const outcomes = [...OUTCOME_STATES];
  const lowest: number[] = [];
  const need = lowestBucketsNeeded(rollout.stages);
  if (need > 0) {
    for (const r of await rowsOf(db, LOWEST_SQL, [rollout.rolloutId, outcomes, need]))
      for (let i = 0; i < r.n && lowest.length < need; i++) lowest.push(Number(r.bucket));
  }
  const wanted = stageBucketLimits(rollout.stages, lowest);
  let counted = await rowsOf(db, STAGES_SQL, [rollout.rolloutId, outcomes]);
  if (!sameLimits(counted[0]?.limits, wanted)) {
    await regroup(db, rollout.rolloutId, wanted);
    counted = await rowsOf(db, STAGES_SQL, [rollout.rolloutId, outcomes]);
  }
  // Grouped by the limits stored with the counts (another replica may have just regrouped them).
  const limits = counted[0]?.limits ?? wanted;
  const rows: StageCount[] = counted
    .filter((r) => r.stage !== null)
    .map((r) => ({
      stage: Number(r.stage),
      state: r.state === '' ? undefined : r.state,
      fetched: r.fetched,
      n: Number(r.n),
    }));
  const progress = progressFromStageCounts(rollout.stages, limits, rows);
  if (bake.bakeSeconds > 0) {
    for (const s of progress) s.baked = 0;
    const last = progress.length - 1;
    const baked = await rowsOf(db, BAKED_SQL, [
      rollout.rolloutId,
      limits,
      bake.bakeSeconds,
      bake.now.toISOString(),
    ]);
    for (const r of baked) {
      const s = progress[Math.min(Number(r.stage), last)];
      if (s !== undefined) s.baked = (s.baked ?? 0) + Number(r.n);
    }
  }
  return progress;
}
