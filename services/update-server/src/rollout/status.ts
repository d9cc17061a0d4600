// The operator's view of a rollout: per-stage and overall counts by device state, failure
// rate, time in the current stage and the next automatic action (what the engine would do if
// it ran now, and why). Pure, so the CLI's --watch view and the API show the same numbers.
import { resolveStage, type RolloutLifecycle, type StageSpec, type StateCounts } from './model.js';
import { failurePercent, type StageProgress, totalProgress } from './progress.js';
import { evaluateStage } from './stages.js';

export interface StageStatus {
  stage: number;
  percent: number;
  minBakeSeconds: number;
  minCommitted: number;
  maxFailurePercent: number;
  minSample: number;
  maxConcurrent: number | null;
  /** done: an earlier stage; current: the one running (or paused); pending: not reached yet. */
  phase: 'done' | 'current' | 'pending';
  targeted: number;
  counts: StateCounts;
  committed: number;
  failures: number;
  inFlight: number;
  notOffered: number;
  failurePercent: number;
}

export interface NextAction {
  action: 'advance' | 'pause' | 'complete' | 'wait' | 'none';
  reason: string;
  /** Earliest time the action can happen (end of the bake time), when known. */
  notBefore: string | null;
}

export interface RolloutStatusView {
  state: RolloutLifecycle;
  stateReason: string | null;
  currentStage: number;
  stageCount: number;
  timeInStageSeconds: number | null;
  overall: {
    targeted: number;
    counts: StateCounts;
    committed: number;
    failures: number;
    inFlight: number;
    notOffered: number;
    failurePercent: number;
  };
  stages: StageStatus[];
  next: NextAction;
}

export interface StatusInput {
  state: RolloutLifecycle;
  stateReason: string | null;
  stages: readonly StageSpec[];
  currentStage: number;
  stageStartedAt: Date;
  progress: readonly StageProgress[];
  now: Date;
}

export function rolloutStatus(input: StatusInput): RolloutStatusView {
  const { state, stages, currentStage, progress, now } = input;
  const total = totalProgress(progress);
  const running = state === 'active' || state === 'paused';
  const stageViews = stages.map((spec, i): StageStatus => {
    const s = resolveStage(spec);
    const p = progress[i];
    return {
      stage: i,
      percent: s.percent,
      minBakeSeconds: s.minBakeSeconds,
      minCommitted: s.minCommitted,
      maxFailurePercent: s.maxFailurePercent,
      minSample: s.minSample,
      maxConcurrent: s.maxConcurrent ?? null,
      phase:
        state === 'completed' || i < currentStage
          ? 'done'
          : i === currentStage && running
            ? 'current'
            : 'pending',
      targeted: p?.targeted ?? 0,
      counts: p?.counts ?? {},
      committed: p?.committed ?? 0,
      failures: p?.failures ?? 0,
      inFlight: p?.inFlight ?? 0,
      notOffered: p?.notOffered ?? 0,
      failurePercent: failurePercent(p?.failures ?? 0, p?.outcomes ?? 0),
    };
  });
  let next: NextAction;
  if (state === 'active') {
    const d = evaluateStage({ stages, currentStage, stageStartedAt: input.stageStartedAt, progress, now });
    next = {
      action: d.action,
      reason: d.reason,
      notBefore: d.action === 'wait' && d.notBefore !== undefined ? d.notBefore.toISOString() : null,
    };
  } else {
    const reason: Record<RolloutLifecycle, string> = {
      draft: 'draft: nothing is offered until it is started',
      active: '',
      paused: `paused${input.stateReason === null ? '' : ` (${input.stateReason})`}: resume it, abort it or roll it back`,
      completed: 'completed: every targeted device finished',
      aborted: `aborted${input.stateReason === null ? '' : ` (${input.stateReason})`}`,
    };
    next = { action: 'none', reason: reason[state], notBefore: null };
  }
  return {
    state,
    stateReason: input.stateReason,
    currentStage,
    stageCount: stages.length,
    timeInStageSeconds: running
      ? Math.max(0, Math.floor((now.getTime() - input.stageStartedAt.getTime()) / 1000))
      : null,
    overall: {
      targeted: total.targeted,
      counts: total.counts,
      committed: total.committed,
      failures: total.failures,
      inFlight: total.inFlight,
      notOffered: total.notOffered,
      failurePercent: failurePercent(total.failures, total.outcomes),
    },
    stages: stageViews,
    next,
  };
}
