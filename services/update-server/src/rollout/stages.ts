// The automatic stage decision for a running rollout: pause when too many devices failed,
// advance when the current stage has baked and is healthy, complete when the last stage is
// done — or wait, saying for what. Pure: the clock and the measured progress are inputs, and
// every decision carries the numbers it was taken on (they go to the audit log verbatim).
import { resolveStage, type StageSpec } from './model.js';
import { failurePercent, type StageProgress, totalProgress } from './progress.js';

export interface DecisionNumbers {
  stage: number;
  percent: number;
  /** Whole rollout (all stages so far): the failure rate is judged over every outcome. */
  committed: number;
  failures: number;
  outcomes: number;
  failurePercent: number;
  maxFailurePercent: number;
  minSample: number;
  /** The current stage's cohort. */
  stageTargeted: number;
  stageCommitted: number;
  stageInFlight: number;
  requiredCommitted: number;
  bakedSeconds: number;
  minBakeSeconds: number;
  /** With a health bake window (bakeMinutes > 0): the window and the stage's baked devices. */
  bakeMinutes?: number;
  stageBaked?: number;
}

export type StageDecision =
  | { action: 'pause'; reason: string; numbers: DecisionNumbers }
  | { action: 'advance'; toStage: number; reason: string; numbers: DecisionNumbers }
  | { action: 'complete'; reason: string; numbers: DecisionNumbers }
  | { action: 'wait'; reason: string; numbers: DecisionNumbers /** when baking ends */; notBefore?: Date };

export interface StageEvaluationInput {
  stages: readonly StageSpec[];
  currentStage: number;
  stageStartedAt: Date;
  progress: readonly StageProgress[];
  now: Date;
}

const pct = (n: number) => `${Number.isInteger(n) ? n : n.toFixed(2).replace(/0+$/, '')}%`;

export function evaluateStage(input: StageEvaluationInput): StageDecision {
  const { stages, currentStage: k, now } = input;
  const spec = stages[k];
  if (spec === undefined) throw new RangeError(`stage ${k} does not exist (rollout has ${stages.length})`);
  const stage = resolveStage(spec);
  const total = totalProgress(input.progress);
  const cohort: Omit<StageProgress, 'stage' | 'percent' | 'bucketLimit' | 'counts' | 'notOffered'> = input
    .progress[k] ?? {
    targeted: 0,
    committed: 0,
    failures: 0,
    inFlight: 0,
    outcomes: 0,
    unfetchedFailures: 0,
  };
  const bakedSeconds = Math.max(0, Math.floor((now.getTime() - input.stageStartedAt.getTime()) / 1000));
  // A stage that targets fewer devices than minCommitted cannot wait for more than it has; its
  // failed devices cannot commit either.
  const requiredCommitted = Math.min(
    stage.minCommitted,
    Math.max(0, cohort.targeted - cohort.failures - cohort.unfetchedFailures),
  );
  const numbers: DecisionNumbers = {
    stage: k,
    percent: stage.percent,
    committed: total.committed,
    failures: total.failures,
    outcomes: total.outcomes,
    failurePercent: failurePercent(total.failures, total.outcomes),
    maxFailurePercent: stage.maxFailurePercent,
    minSample: stage.minSample,
    stageTargeted: cohort.targeted,
    stageCommitted: cohort.committed,
    stageInFlight: cohort.inFlight,
    requiredCommitted,
    bakedSeconds,
    minBakeSeconds: stage.minBakeSeconds,
    ...(stage.bakeMinutes > 0
      ? { bakeMinutes: stage.bakeMinutes, stageBaked: cohort.baked ?? cohort.committed }
      : {}),
  };
  const where = `stage ${k + 1}/${stages.length} (${pct(stage.percent)})`;
  // Exact comparison (failures/outcomes > max/100) so 10.0 % does not trip a 10 % threshold.
  if (total.outcomes >= stage.minSample && total.failures * 100 > stage.maxFailurePercent * total.outcomes) {
    return {
      action: 'pause',
      reason: `failure rate ${pct(numbers.failurePercent)} (${total.failures} of ${total.outcomes} devices failed or rolled back) exceeds ${pct(stage.maxFailurePercent)} at ${where}`,
      numbers,
    };
  }
  // Reports from devices that never downloaded do not count in the failure rate (a device that
  // did not fetch the release cannot fail it), but a stage none of whose devices committed, all
  // of them done and some refusing the release before download (a bad signature, a securityVersion
  // below the floor), has not done its job: it stops for an operator instead of advancing or
  // reading "completed". A stage with one committed device goes on whatever the others claim.
  const cohortNotOffered = input.progress[k]?.notOffered ?? 0;
  if (
    cohort.committed === 0 &&
    cohort.unfetchedFailures > 0 &&
    cohort.inFlight === 0 &&
    cohortNotOffered === 0
  ) {
    return {
      action: 'pause',
      reason: `${where}: no device committed: ${cohort.unfetchedFailures} of ${cohort.targeted} failed before downloading the release (refused it; not counted in the failure rate): see the devices' events, then fix the release or abort`,
      numbers,
    };
  }
  if (bakedSeconds < stage.minBakeSeconds) {
    return {
      action: 'wait',
      reason: `baking ${where}: ${bakedSeconds}s of ${stage.minBakeSeconds}s`,
      numbers,
      notBefore: new Date(input.stageStartedAt.getTime() + stage.minBakeSeconds * 1000),
    };
  }
  if (cohort.committed < requiredCommitted) {
    return {
      action: 'wait',
      reason: `${where} needs ${requiredCommitted - cohort.committed} more committed device(s) (${cohort.committed} of ${requiredCommitted})`,
      numbers,
    };
  }
  // Health after commit: committed devices count only once they stayed healthy for the window.
  const baked = cohort.baked ?? cohort.committed;
  if (stage.bakeMinutes > 0 && baked < requiredCommitted) {
    return {
      action: 'wait',
      reason: `${where} waits for ${requiredCommitted - baked} committed device(s) to stay healthy for ${stage.bakeMinutes} min after commit (${baked} of ${requiredCommitted} baked)`,
      numbers,
    };
  }
  const requiredSample = Math.min(stage.minSample, total.targeted - total.unfetchedFailures);
  if (total.outcomes < requiredSample) {
    return {
      action: 'wait',
      reason: `${where} needs ${requiredSample - total.outcomes} more device outcome(s) to judge the failure rate`,
      numbers,
    };
  }
  if (k + 1 < stages.length) {
    const next = stages[k + 1];
    return {
      action: 'advance',
      toStage: k + 1,
      reason: `${where} healthy (failure rate ${pct(numbers.failurePercent)} ≤ ${pct(stage.maxFailurePercent)}, ${cohort.committed} committed, baked ${bakedSeconds}s): advancing to ${pct(next?.percent ?? 100)}`,
      numbers,
    };
  }
  // Failure reports from devices that never downloaded are finished too, just not outcomes.
  const outstanding = total.targeted - total.outcomes - total.unfetchedFailures;
  if (outstanding > 0) {
    return {
      action: 'wait',
      reason: `last ${where} waits for ${outstanding} device(s) to finish (${total.inFlight} installing, ${total.notOffered} not yet offered)`,
      numbers,
    };
  }
  if (stage.bakeMinutes > 0 && baked < cohort.committed) {
    return {
      action: 'wait',
      reason: `last ${where} waits for ${cohort.committed - baked} committed device(s) to finish their ${stage.bakeMinutes} min health bake`,
      numbers,
    };
  }
  // A rollout whose devices failed did not do its job (a rollback that left a device on the
  // release it was meant to leave, say): it stops for an operator instead of reading "completed".
  if (total.failures > 0) {
    return {
      action: 'pause',
      reason: `every targeted device finished but ${total.failures} of ${total.outcomes} failed or rolled back (${pct(numbers.failurePercent)}): see the devices' events, then abort or roll back`,
      numbers,
    };
  }
  return {
    action: 'complete',
    reason: `every targeted device finished: ${total.committed} committed${total.unfetchedFailures > 0 ? `, ${total.unfetchedFailures} reported a failure without downloading the release (not counted as failures)` : ''}`,
    numbers,
  };
}
