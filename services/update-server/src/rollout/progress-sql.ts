// A rollout's progress counted inside the database: the selector, the bucket (the same SHA-256
// as bucket.ts, computed by PostgreSQL's sha256()) and the "still needs the release" rule are
// evaluated in one statement that returns at most one row per (bucket, state, fetched) — at
// most 10,000 buckets × a dozen states, whatever the fleet size — instead of every device of
// the product. The per-stage cohorts are then built by the same code as the in-memory measure
// (progress.ts progressFromBuckets), so both give identical numbers.
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

// bucket.ts in SQL: uint32 big-endian of the first 4 bytes of
// SHA-256(utf8(rolloutId) || 0x00 || utf8(deviceId)), mod 10,000; $16 is the bytes up to the
// device id, a device id (a uuid) is ASCII. bit(32)::bigint reads the 4 bytes unsigned.
const bucketOf = (id: string) =>
  `(('x' || encode(substring(sha256($16::bytea || ${id}::text::bytea) from 1 for 4), 'hex'))::bit(32)::bigint % 10000)::int`;

// $1 product, $2 rollout id (text), $3 outcome states, $4 whether the selector can pick anyone,
// $5 hardware (null: any), $6 required tags (null: none), $7 group tags (null: any), $8 device
// ids (null: any), $9 running versions the constraint allows (null: no constraint), $10
// fromRollout (null: none), $11 hardware the release is for, $12 running versions the release
// applies to, $13 trial-armed states (rollbacks wait for those devices), $14 the health bake
// window in seconds (0: none) and $15 now: a committed device is baked when it committed at least
// the window ago and reported staying healthy that long (health.ts); $17 whether the population is
// frozen at start (lateJoiners: false): then devices recorded outside it are no candidates
// (late-joiners.ts).
const PROGRESS_SQL = `
WITH counted AS (
  SELECT rd.device_id AS id, rd.state, rd.blobs_fetched_at IS NOT NULL AS fetched,
         rd.state = 'committed' AND ($14::int = 0 OR (
           rd.committed_at <= $15::timestamptz - make_interval(secs => $14::int)
           AND coalesce(rd.healthy_seconds, 0) >= $14::int)) AS baked
  FROM rollout_devices rd
  WHERE rd.rollout_id = $2::uuid
    AND (rd.state = ANY($3::text[])
         OR EXISTS (SELECT 1 FROM devices d
                    WHERE d.id = rd.device_id AND d.product = $1 AND d.decommissioned_at IS NULL))
), candidates AS (
  SELECT d.id FROM devices d
  WHERE $4::boolean AND d.product = $1 AND d.decommissioned_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM rollout_devices rd WHERE rd.rollout_id = $2::uuid AND rd.device_id = d.id)
    AND ($5::text[] IS NULL OR d.hardware = ANY($5::text[]))
    AND ($6::text[] IS NULL OR d.tags @> $6::text[])
    AND ($7::text[] IS NULL OR d.tags && $7::text[])
    AND ($8::text[] IS NULL OR d.id::text = ANY($8::text[]))
    AND ($9::text[] IS NULL OR d.current_version = ANY($9::text[]))
    AND ($10::uuid IS NULL OR EXISTS (SELECT 1 FROM rollout_devices f
                                      WHERE f.rollout_id = $10::uuid AND f.device_id = d.id))
    AND ((d.hardware = ANY($11::text[]) AND (d.current_version IS NULL OR d.current_version = ANY($12::text[])))
         OR ($10::uuid IS NOT NULL AND EXISTS (SELECT 1 FROM rollout_devices f
                                               WHERE f.rollout_id = $10::uuid AND f.device_id = d.id
                                                 AND f.state = ANY($13::text[]))))
    AND (NOT $17::boolean OR NOT EXISTS (SELECT 1 FROM rollout_frozen_membership m
                                         WHERE m.rollout_id = $2::uuid AND m.device_id = d.id
                                           AND NOT m.in_population))
), rows AS (
  SELECT ${bucketOf('c.id')} AS bucket, c.state, c.fetched, c.baked FROM counted c
  UNION ALL
  SELECT ${bucketOf('c.id')} AS bucket, NULL, true, false FROM candidates c
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

/** The rollout's bucket counts, straight from the database (see the file comment). */
export interface BakeOptions {
  /** The health bake window of the stage being judged (0: none, every committed device is baked). */
  bakeSeconds: number;
  now: Date;
}

export async function loadBucketCounts(
  db: Db,
  rollout: ProgressRollout & { lateJoiners?: boolean },
  bake: BakeOptions = { bakeSeconds: 0, now: new Date(0) },
): Promise<BucketCount[]> {
  const client = rawClient(db);
  const { selector } = rollout;
  const versions = (await client.query(VERSIONS_SQL, [rollout.product])).rows.map(
    (r) => (r as unknown as VersionRow).version,
  );
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
  const values = [
    rollout.product,
    rollout.rolloutId,
    [...OUTCOME_STATES],
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
    bake.bakeSeconds,
    bake.now.toISOString(),
    Buffer.concat([Buffer.from(rollout.rolloutId, 'utf8'), Buffer.of(0)]),
    rollout.lateJoiners === false,
  ];
  const { rows } = await client.query(PROGRESS_SQL, values);
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

/** Per-stage cohorts of one rollout, counted in the database: the same numbers as measureProgress. */
export async function loadProgressSql(
  db: Db,
  rollout: ProgressRollout & { lateJoiners?: boolean },
  bake?: BakeOptions,
): Promise<StageProgress[]> {
  return progressFromBuckets(rollout.stages, await loadBucketCounts(db, rollout, bake));
}
