// A rollout's progress recounted from the fleet: the selector, the bucket (rollout_bucket, the
// SQL spelling of bucket.ts) and the "still needs the release" rule evaluated in one statement
// over every device of the product — linear in the fleet. The engine counts from the counters
// instead (counters.ts, O(stages)); this recount is what they are tested against, and its
// candidate rule (CANDIDATE_SQL) is the one counters.ts keeps rollout_candidates by. The
// per-stage cohorts are built by the same code as the in-memory measure (progress.ts).
//
// Version rules (semver order, constraints, downgrades) stay in TypeScript: the product's
// distinct running versions are read with a skip scan of devices_product_version_idx (a handful
// of index probes per distinct version), judged here, and passed to SQL as lists.
import { rawClient } from '../db/poll-statement.js';
import type { Db } from '../db/database.js';
import { OUTCOME_STATES, TRIAL_ARMED_STATES } from './model.js';
import { releaseApplies } from './offer.js';
import {
  type BucketCount,
  type ProgressRollout,
  progressFromBuckets,
  type StageProgress,
} from './progress.js';
import { GROUP_TAG_PREFIX, parseVersionConstraint, versionSatisfies } from './selector.js';

// Recursive CTE = loose index scan: one index probe per distinct version, not one row per device.
const VERSIONS_SQL = `
WITH RECURSIVE v(version) AS (
  (SELECT current_version FROM devices WHERE product = $1 AND current_version IS NOT NULL
   ORDER BY current_version LIMIT 1)
  UNION ALL
  SELECT (SELECT d.current_version FROM devices d
          WHERE d.product = $1 AND d.current_version > v.version
          ORDER BY d.current_version LIMIT 1)
  FROM v WHERE v.version IS NOT NULL
)
SELECT version FROM v WHERE version IS NOT NULL`;

// The candidate rule in SQL (also what counters.ts keeps rollout_candidates by): a live device of
// the product the selector picks, not offered yet, that still needs the release. $1 product, $2
// rollout id (text), $3 whether the selector can pick anyone, $4 hardware (null: any), $5 required
// tags (null: none), $6 group tags (null: any), $7 device ids (null: any), $8 running versions the
// constraint allows (null: no constraint), $9 fromRollout (null: none), $10 hardware the release
// is for, $11 running versions the release applies to, $12 trial-armed states (rollbacks wait for
// those devices), $13 whether the population is frozen at start (lateJoiners: false): then
// devices recorded outside it are no candidates (late-joiners.ts).
export const CANDIDATE_SQL = `
  d.product = $1 AND $3::boolean AND d.decommissioned_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM rollout_devices rd WHERE rd.rollout_id = $2::uuid AND rd.device_id = d.id)
  AND ($4::text[] IS NULL OR d.hardware = ANY($4::text[]))
  AND ($5::text[] IS NULL OR d.tags @> $5::text[])
  AND ($6::text[] IS NULL OR d.tags && $6::text[])
  AND ($7::text[] IS NULL OR d.id::text = ANY($7::text[]))
  AND ($8::text[] IS NULL OR d.current_version = ANY($8::text[]))
  AND ($9::uuid IS NULL OR EXISTS (SELECT 1 FROM rollout_devices f
                                   WHERE f.rollout_id = $9::uuid AND f.device_id = d.id))
  AND ((d.hardware = ANY($10::text[]) AND (d.current_version IS NULL OR d.current_version = ANY($11::text[])))
       OR ($9::uuid IS NOT NULL AND EXISTS (SELECT 1 FROM rollout_devices f
                                            WHERE f.rollout_id = $9::uuid AND f.device_id = d.id
                                              AND f.state = ANY($12::text[]))))
  AND (NOT $13::boolean OR NOT EXISTS (SELECT 1 FROM rollout_frozen_membership m
                                       WHERE m.rollout_id = $2::uuid AND m.device_id = d.id
                                         AND NOT m.in_population))`;

// Members by state (a decommissioned device's unfinished offer is not counted: it will never
// report) plus candidates, grouped by bucket (rollout_bucket, drizzle/0009). $14 outcome states,
// $15 the health bake window in seconds (0: none) and $16 now: a committed device is baked when it
// committed at least the window ago and reported staying healthy that long (health.ts).
const PROGRESS_SQL = `
WITH counted AS (
  SELECT rd.device_id AS id, rd.state, rd.blobs_fetched_at IS NOT NULL AS fetched,
         rd.state = 'committed' AND ($15::int = 0 OR (
           rd.committed_at <= $16::timestamptz - make_interval(secs => $15::int)
           AND coalesce(rd.healthy_seconds, 0) >= $15::int)) AS baked
  FROM rollout_devices rd
  WHERE rd.rollout_id = $2::uuid
    AND (rd.state = ANY($14::text[])
         OR EXISTS (SELECT 1 FROM devices d
                    WHERE d.id = rd.device_id AND d.product = $1 AND d.decommissioned_at IS NULL))
), candidates AS (
  SELECT d.id FROM devices d WHERE ${CANDIDATE_SQL}
), rows AS (
  SELECT rollout_bucket($2::uuid::text, c.id::text) AS bucket, c.state, c.fetched, c.baked FROM counted c
  UNION ALL
  SELECT rollout_bucket($2::uuid::text, c.id::text) AS bucket, NULL, true, false FROM candidates c
)
SELECT bucket, state, fetched, baked, count(*)::int AS n FROM rows GROUP BY bucket, state, fetched, baked`;

interface VersionRow extends Record<string, unknown> {
  version: string;
}
interface BucketRow extends Record<string, unknown> {
  bucket: number;
  state: string | null;
  fetched: boolean;
  baked: boolean;
  n: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const listed = (values: readonly string[] | undefined): values is readonly string[] =>
  values !== undefined && values.length > 0;

export interface BakeOptions {
  /** The health bake window of the stage being judged (0: none, every committed device is baked). */
  bakeSeconds: number;
  now: Date;
}

/**
 * The candidate rule's parameters ($1–$13 of CANDIDATE_SQL) for a rollout, with the version
 * rules judged here for `versions`: the running versions the devices in question may have.
 */
export function candidateParams(
  rollout: ProgressRollout & { lateJoiners?: boolean },
  versions: readonly string[],
): unknown[] {
  const { selector } = rollout;
  const from = selector.fromRollout;
  // A fromRollout that is no rollout id is offered to nobody (rollout ids are UUIDs).
  const fromOk = from === undefined || UUID.test(from);
  let picks = fromOk && (selector.product === undefined || selector.product === rollout.product);
  let allowed: string[] | null = null;
  if (selector.currentVersion !== undefined) {
    const clauses = parseVersionConstraint(selector.currentVersion);
    // An unparsable stored constraint selects nobody (fail closed), as selectorPicks does.
    if (typeof clauses === 'string') picks = false;
    else allowed = versions.filter((v) => versionSatisfies(v, clauses));
  }
  const hardware = rollout.releaseCompatible[0] ?? '';
  const applies = versions.filter((v) => releaseApplies(rollout, { hardware, currentVersion: v }));
  return [
    rollout.product,
    rollout.rolloutId,
    picks,
    listed(selector.hardware) ? [...selector.hardware] : null,
    selector.tags === undefined ? null : [...selector.tags],
    listed(selector.groups) ? selector.groups.map((g) => `${GROUP_TAG_PREFIX}${g}`) : null,
    listed(selector.deviceIds) ? [...selector.deviceIds] : null,
    allowed,
    fromOk ? (from ?? null) : null,
    [...rollout.releaseCompatible],
    applies,
    [...TRIAL_ARMED_STATES],
    rollout.lateJoiners === false,
  ];
}

/** The distinct running versions of a product's devices (a skip scan, not a read of the fleet). */
export async function productVersions(db: Db, product: string): Promise<string[]> {
  const { rows } = await rawClient(db).query(VERSIONS_SQL, [product]);
  return rows.map((r) => (r as unknown as VersionRow).version);
}

/** The rollout's bucket counts recounted from the fleet and its members (see the file comment). */
export async function loadBucketCounts(
  db: Db,
  rollout: ProgressRollout & { lateJoiners?: boolean },
  bake: BakeOptions = { bakeSeconds: 0, now: new Date(0) },
): Promise<BucketCount[]> {
  const versions = await productVersions(db, rollout.product);
  const values = [
    ...candidateParams(rollout, versions),
    [...OUTCOME_STATES],
    bake.bakeSeconds,
    bake.now.toISOString(),
  ];
  const { rows } = await rawClient(db).query(PROGRESS_SQL, values);
  return rows.map((row) => {
    const r = row as unknown as BucketRow;
    return {
      bucket: Number(r.bucket),
      state: r.state ?? undefined,
      fetched: r.fetched,
      baked: r.baked,
      n: Number(r.n),
    };
  });
}

/** Per-stage cohorts of one rollout recounted from the fleet: the same numbers as measureProgress. */
export async function loadProgressSql(
  db: Db,
  rollout: ProgressRollout & { lateJoiners?: boolean },
  bake?: BakeOptions,
): Promise<StageProgress[]> {
  return progressFromBuckets(rollout.stages, await loadBucketCounts(db, rollout, bake));
}
