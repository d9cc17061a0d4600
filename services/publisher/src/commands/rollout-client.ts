// The shapes of the admin API's rollout documents that `abota rollout` reads
// (services/update-server src/rollout/schemas.ts); the calls go through AdminClient.requestJson.
export interface StageView {
  percent: number;
  minBakeSeconds?: number;
  minCommitted?: number;
  maxFailurePercent?: number;
  minSample?: number;
  maxConcurrent?: number;
  minDevices?: number;
}

export interface RolloutView {
  id: string;
  releaseId: string;
  releaseVersion: string;
  product: string;
  name: string;
  kind: 'normal' | 'rollback';
  selector: Record<string, unknown>;
  state: 'draft' | 'active' | 'paused' | 'completed' | 'aborted';
  stateReason: string | null;
  allowDowngrade: boolean;
  stages: StageView[];
  currentStage: number;
  maintenanceWindow: { timezone: string; start: string; end: string; days?: number[] } | null;
  startedAt: string | null;
  stageStartedAt: string;
  createdAt: string;
  updatedAt: string;
}

export type Counts = Partial<Record<string, number>>;

export interface StageStatusView {
  stage: number;
  percent: number;
  minBakeSeconds: number;
  phase: 'done' | 'current' | 'pending';
  targeted: number;
  counts: Counts;
  committed: number;
  failures: number;
  inFlight: number;
  notOffered: number;
  failurePercent: number;
  maxFailurePercent: number;
}

export interface RolloutStatusDocument {
  rollout: RolloutView;
  status: {
    state: RolloutView['state'];
    stateReason: string | null;
    currentStage: number;
    stageCount: number;
    timeInStageSeconds: number | null;
    overall: {
      targeted: number;
      counts: Counts;
      committed: number;
      failures: number;
      inFlight: number;
      notOffered: number;
      failurePercent: number;
    };
    stages: StageStatusView[];
    next: { action: string; reason: string; notBefore: string | null };
  };
  at: string;
}

export interface ReleaseView {
  id: string;
  product: string;
  version: string;
}
