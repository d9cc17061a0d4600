// Where a rollout stands, from the devices it selects and the ones it has offered: per-stage
// cohorts by device state. A device belongs to the first stage whose percent covers its bucket
// (bucket.ts) once widened to its minimum in devices (stage-limits.ts), so a stage's cohort is
// the same on whichever replica it is counted.
import { BUCKET_COUNT, rolloutBucket } from './bucket.js';
import {
  DEVICE_STATES,
  type DeviceState,
  FAILURE_STATES,
  OUTCOME_STATES,
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
  // Selected devices not offered yet: the rollout picks them and they still need the release.
  const candidates: string[] = [];
  for (const d of devices) {
    if (members.has(d.id)) continue;
    if (!selectorPicks(rollout.selector, rollout.product, d)) continue;
    if (!releaseApplies(rollout, d) && !awaiting.has(d.id)) continue;
    candidates.push(d.id);
  }
  const bucketOf = new Map<string, number>();
  for (const id of [...members.keys(), ...candidates]) bucketOf.set(id, rolloutBucket(rollout.rolloutId, id));
  const limits = stageBucketLimits(rollout.stages, [...bucketOf.values()]);
  const stages: StageProgress[] = rollout.stages.map((s, stage) => ({
    stage,
    percent: s.percent,
    bucketLimit: limits[stage] ?? 0,
    targeted: 0,
    counts: {},
    committed: 0,
    failures: 0,
    outcomes: 0,
    inFlight: 0,
    unfetchedFailures: 0,
    notOffered: 0,
  }));
  const lastLimit = limits.at(-1) ?? 0;
  const count = (deviceId: string, state: string | undefined): void => {
    const s = stages[stageOfBucket(limits, bucketOf.get(deviceId) ?? 0)];
    if (s === undefined) return;
    s.targeted++;
    if (state === undefined) {
      s.notOffered++;
      return;
    }
    if (isDeviceState(state)) s.counts[state] = (s.counts[state] ?? 0) + 1;
    if (state === 'committed') s.committed++;
    if (FAILURE_STATES.has(state) && fetched !== undefined && !fetched.has(deviceId)) {
      s.unfetchedFailures++;
      return;
    }
    if (FAILURE_STATES.has(state)) s.failures++;
    if (OUTCOME_STATES.has(state)) s.outcomes++;
    else s.inFlight++;
  };
  for (const [deviceId, state] of members) count(deviceId, state);
  for (const id of candidates) {
    if (lastLimit < BUCKET_COUNT && (bucketOf.get(id) ?? 0) >= lastLimit) continue;
    count(id, undefined);
  }
  return stages;
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
