// Where a rollout stands, from the devices it selects and the ones it has offered: per-stage
// cohorts by device state. A device belongs to the first stage whose percent covers its bucket
// (bucket.ts) once widened to its minimum in devices (stage-limits.ts), so a stage's cohort is
// the same on whichever replica it is counted.
import { rolloutBucket } from './bucket.js';
import {
  DEVICE_STATES,
  type DeviceState,
  FAILURE_STATES,
  OUTCOME_STATES,
  resolveStage,
  type StageSpec,
  type StateCounts,
} from './model.js';
import { type OfferCandidate, releaseApplies } from './offer.js';
import { type SelectableDevice, selectorPicks } from './selector.js';
import { stageBucketLimits } from './stage-limits.js';

export interface StageProgress {
  stage: number;
  percent: number;
  /** Exclusive bucket limit the stage reaches: its percent widened to its minDevices (stage-limits.ts). */
  bucketLimit: number;
  /** Devices this stage is for: offered ones, plus selected ones that still need the release. */
  targeted: number;
  /** Offered devices by state (rollout_devices). */
  counts: StateCounts;
  committed: number;
  /**
   * Committed devices past the stage's health bake window, healthy all along (health.ts); absent
   * or equal to `committed` when the stage has no bake window.
   */
  baked?: number;
  failures: number;
  outcomes: number;
  /** Offered but no outcome yet. */
  inFlight: number;
  /**
   * Failed or rolled back without ever downloading the release's blobs (in `counts`, but neither
   * failures nor outcomes: a device that never downloaded cannot fail the release; issue #16).
   */
  unfetchedFailures: number;
  /** Targeted but never offered (not polled yet, outside the window, or capped). */
  notOffered: number;
}

/** Index of the first stage whose limit covers `bucket`; the last stage for buckets beyond every stage. */
export function stageOfBucket(limits: readonly number[], bucket: number): number {
  for (const [i, limit] of limits.entries()) if (bucket < limit) return i;
  return Math.max(0, limits.length - 1);
}

const isDeviceState = (s: string): s is DeviceState => (DEVICE_STATES as readonly string[]).includes(s);

export type ProgressRollout = Pick<
  OfferCandidate,
  'rolloutId' | 'product' | 'selector' | 'stages' | 'releaseVersion' | 'releaseCompatible' | 'allowDowngrade'
>;

/**
 * `awaiting`: devices that may still move to a version the rollout applies to without polling
 * first — for a rollback, those whose trial of the rolled-back release is armed (installed or
 * rebooting there): they commit it at their next boot, so the rollback targets them even while
 * they still run the version it returns to.
 */
export function measureProgress(
  rollout: ProgressRollout,
  devices: Iterable<SelectableDevice>,
  members: ReadonlyMap<string, string>,
  awaiting: ReadonlySet<string> = new Set(),
  /** Members that downloaded the release's blobs; undefined: count every failure. */
  fetched?: ReadonlySet<string>,
): StageProgress[] {
  const rows: BucketCount[] = [];
  for (const [deviceId, state] of members)
    rows.push({
      bucket: rolloutBucket(rollout.rolloutId, deviceId),
      state,
      fetched: fetched === undefined || fetched.has(deviceId),
      n: 1,
    });
  // Selected devices not offered yet: the rollout picks them and they still need the release.
  for (const d of devices) {
    if (members.has(d.id)) continue;
    if (!selectorPicks(rollout.selector, rollout.product, d)) continue;
    if (!releaseApplies(rollout, d) && !awaiting.has(d.id)) continue;
    rows.push({ bucket: rolloutBucket(rollout.rolloutId, d.id), state: undefined, fetched: true, n: 1 });
  }
  return progressFromBuckets(rollout.stages, rows);
}

/**
 * Devices of one rollout grouped by bucket: members by state (and whether they downloaded the
 * release's blobs), and not-offered candidates (`state` undefined). The in-memory measure above
 * and the SQL count (progress-sql.ts) both end here, so they cannot disagree on the rules.
 */
export interface BucketCount {
  bucket: number;
  state: string | undefined;
  /** Downloaded the release's blobs (a failure without it is an unfetched failure); true for candidates. */
  fetched: boolean;
  /** For committed members: past the health bake window (absent: no window, baked). */
  baked?: boolean | undefined;
  n: number;
}

/** The largest minDevices of the stages: how many of the lowest buckets stageBucketLimits reads. */
export function lowestBucketsNeeded(stages: readonly StageSpec[]): number {
  return Math.max(0, ...stages.map((s) => resolveStage(s).minDevices));
}

/** Per-stage cohorts from bucket counts (any order; rows with n = 0 are ignored). */
export function progressFromBuckets(
  stages: readonly StageSpec[],
  rows: readonly BucketCount[],
): StageProgress[] {
  const sorted = [...rows].sort((a, b) => a.bucket - b.bucket);
  // stageBucketLimits only reads the lowest minDevices buckets (and how many there are, capped there).
  const lowest: number[] = [];
  const need = lowestBucketsNeeded(stages);
  for (const r of sorted) {
    for (let i = 0; i < r.n && lowest.length < need; i++) lowest.push(r.bucket);
    if (lowest.length >= need) break;
  }
  const limits = stageBucketLimits(stages, lowest);
  return progressFromStageCounts(
    stages,
    limits,
    sorted.map(({ bucket, ...rest }) => ({ ...rest, stage: stageIndex(limits, bucket) })),
  );
}

/** How many of `limits` are ≤ `bucket`: the stage the bucket is in, limits.length beyond the last. */
export function stageIndex(limits: readonly number[], bucket: number): number {
  let i = 0;
  while (i < limits.length && (limits[i] ?? 0) <= bucket) i++;
  return i;
}

/**
 * Devices of one rollout grouped by stage (`stage`: stageIndex of their bucket, limits.length for
 * buckets beyond the last stage) instead of by bucket: what the counters (counters.ts) return.
 */
export interface StageCount extends Omit<BucketCount, 'bucket'> {
  stage: number;
}

/**
 * Per-stage cohorts from counts grouped by stage (any order; rows with n = 0 are ignored).
 * Members beyond the last stage's limit count in the last stage; candidates there are not targeted.
 */
export function progressFromStageCounts(
  stages: readonly StageSpec[],
  limits: readonly number[],
  rows: readonly StageCount[],
): StageProgress[] {
  // By state: the counts' key order is the same whatever order the rows came in.
  const byState = (a: StageCount, b: StageCount) => {
    const x = a.state ?? '~';
    const y = b.state ?? '~';
    return x < y ? -1 : x > y ? 1 : 0;
  };
  const progress: StageProgress[] = stages.map((s, stage) => ({
    stage,
    percent: s.percent,
    bucketLimit: limits[stage] ?? 0,
    targeted: 0,
    counts: {},
    committed: 0,
    baked: 0,
    failures: 0,
    outcomes: 0,
    inFlight: 0,
    unfetchedFailures: 0,
    notOffered: 0,
  }));
  for (const { stage, state, fetched, baked, n } of [...rows].sort(byState)) {
    if (n <= 0) continue;
    if (state === undefined && stage >= stages.length) continue;
    const s = progress[Math.min(stage, stages.length - 1)];
    if (s === undefined) continue;
    s.targeted += n;
    if (state === undefined) {
      s.notOffered += n;
      continue;
    }
    if (isDeviceState(state)) s.counts[state] = (s.counts[state] ?? 0) + n;
    if (state === 'committed') {
      s.committed += n;
      if (baked !== false) s.baked = (s.baked ?? 0) + n;
    }
    if (FAILURE_STATES.has(state) && !fetched) {
      s.unfetchedFailures += n;
      continue;
    }
    if (FAILURE_STATES.has(state)) s.failures += n;
    if (OUTCOME_STATES.has(state)) s.outcomes += n;
    else s.inFlight += n;
  }
  return progress;
}

/** Sums of the per-stage cohorts, over all stages or up to and including `throughStage`. */
export function totalProgress(stages: readonly StageProgress[], throughStage = Number.POSITIVE_INFINITY) {
  const counts: StateCounts = {};
  let targeted = 0;
  let committed = 0;
  let failures = 0;
  let outcomes = 0;
  let inFlight = 0;
  let unfetchedFailures = 0;
  let notOffered = 0;
  for (const s of stages) {
    if (s.stage > throughStage) break;
    targeted += s.targeted;
    committed += s.committed;
    failures += s.failures;
    outcomes += s.outcomes;
    inFlight += s.inFlight;
    unfetchedFailures += s.unfetchedFailures;
    notOffered += s.notOffered;
    for (const [k, v] of Object.entries(s.counts) as [DeviceState, number][])
      counts[k] = (counts[k] ?? 0) + v;
  }
  return { targeted, counts, committed, failures, outcomes, inFlight, unfetchedFailures, notOffered };
}

/** Failure rate in percent with one decimal, 0 when nothing has finished. */
export function failurePercent(failures: number, outcomes: number): number {
  return outcomes === 0 ? 0 : Math.round((failures / outcomes) * 1000) / 10;
}
