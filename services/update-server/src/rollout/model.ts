// The canary rollout model as plain values: stages with their health rules, the selector, the
// maintenance window and the device states a rollout counts. Everything in src/rollout/ that is
// pure (bucketing, selection, precedence, stage decisions, status) works on these types only.

import type { DeviceState } from '@abota/api';

export {
  DEVICE_STATES,
  type DeviceState,
  ROLLOUT_KINDS,
  ROLLOUT_LIFECYCLE,
  type RolloutKind,
  type RolloutLifecycle,
} from '@abota/api';

/** One step of a rollout, as stored (optional fields take STAGE_DEFAULTS). */
export interface StageSpec {
  /** Share of the selected devices offered the release from this stage on (0 < percent ≤ 100). */
  percent: number;
  /** Minimum time the stage must run before it may advance. */
  minBakeSeconds?: number | undefined;
  /**
   * Health bake window after commit (0: off): a committed device counts towards minCommitted only
   * once it reported healthy for this long (health.ts); `unhealthy` counts as a failure.
   */
  bakeMinutes?: number | undefined;
  /** Committed devices needed (capped at the devices the stage targets) before advancing. */
  minCommitted?: number | undefined;
  /** Pause when (failed + rolled-back) / outcomes exceeds this, once outcomes ≥ minSample. */
  maxFailurePercent?: number | undefined;
  /** Device outcomes (committed + failed + rolled-back) needed before the failure rate is judged. */
  minSample?: number | undefined;
  /** At most this many devices between offer and outcome at once; unset = unlimited. */
  maxConcurrent?: number | undefined;
  /**
   * The stage reaches at least this many of the selected devices, whatever its percent gives
   * (a 1 % canary of 3 devices is 1 device, not none); stage-limits.ts.
   */
  minDevices?: number | undefined;
}

export interface Stage {
  percent: number;
  minBakeSeconds: number;
  bakeMinutes: number;
  minCommitted: number;
  maxFailurePercent: number;
  minSample: number;
  maxConcurrent: number | undefined;
  minDevices: number;
}

export const STAGE_DEFAULTS = {
  minBakeSeconds: 0,
  bakeMinutes: 0,
  minCommitted: 1,
  maxFailurePercent: 100,
  minSample: 1,
  minDevices: 1,
} as const;

export function resolveStage(spec: StageSpec): Stage {
  return {
    percent: spec.percent,
    minBakeSeconds: spec.minBakeSeconds ?? STAGE_DEFAULTS.minBakeSeconds,
    bakeMinutes: spec.bakeMinutes ?? STAGE_DEFAULTS.bakeMinutes,
    minCommitted: spec.minCommitted ?? STAGE_DEFAULTS.minCommitted,
    maxFailurePercent: spec.maxFailurePercent ?? STAGE_DEFAULTS.maxFailurePercent,
    minSample: spec.minSample ?? STAGE_DEFAULTS.minSample,
    maxConcurrent: spec.maxConcurrent,
    minDevices: spec.minDevices ?? STAGE_DEFAULTS.minDevices,
  };
}

/**
 * Which devices a rollout is for. All given fields must match (AND); within `hardware`,
 * `groups` and `deviceIds` any listed value matches (OR); within `tags` every tag is required.
 */
export interface Selector {
  product?: string | undefined;
  hardware?: string[] | undefined;
  /** The device carries every listed tag. */
  tags?: string[] | undefined;
  /** The device is in at least one group; a device is in group G when it carries the tag `group:G`. */
  groups?: string[] | undefined;
  deviceIds?: string[] | undefined;
  /** Running-version constraint, e.g. ">=1.0.0 <1.2.0" or "=1.1.0" (space = AND, semver order). */
  currentVersion?: string | undefined;
  /** Only devices that were offered this other rollout (how a rollback targets the affected ones). */
  fromRollout?: string | undefined;
}

/** When new offers may start; devices already installing are never interrupted. */
export interface MaintenanceWindow {
  /** `utc`, or `device-local` (the device's `timezone` attribute, an IANA name; UTC when absent). */
  timezone: 'utc' | 'device-local';
  /** "HH:MM" 24-hour; a window whose end is before its start crosses midnight. */
  start: string;
  end: string;
  /** Days of the week the window opens on (0 = Sunday), in the window's time zone; all when unset. */
  days?: number[] | undefined;
}

/**
 * The device could not install because of a fault of its own (configuration, boot-control
 * state, slot devices), not of the release. Not an outcome and not a failure: it does not count
 * against a stage, and the device is offered the rollout again on its next poll, so it carries
 * on once fixed.
 */
export const DEVICE_ERROR_STATE = 'device-error';

/** Outcomes: a device in one of these is done with the rollout and is never offered it again. */
export const OUTCOME_STATES: ReadonlySet<string> = new Set([
  'committed',
  'failed',
  'rolled-back',
  'unhealthy',
]);
/** `unhealthy`: committed, then failed its health checks (or crash-looped) in the bake window. */
export const FAILURE_STATES: ReadonlySet<string> = new Set(['failed', 'rolled-back', 'unhealthy']);
/** Started but not finished: these devices keep their offer while a rollout is paused. */
export const INSTALLING_STATES: ReadonlySet<string> = new Set([
  'downloading',
  'installing',
  'installed',
  'rebooting',
]);

/** Installed with the trial boot armed: the device boots the release next, server or not. */
export const TRIAL_ARMED_STATES: ReadonlySet<string> = new Set(['installed', 'rebooting']);

export type StateCounts = Partial<Record<DeviceState, number>>;

/** Stage list checks shared by the API and the CLI: clear messages naming the stage. */
export function validateStages(stages: readonly StageSpec[]): string | undefined {
  if (stages.length === 0) return 'a rollout needs at least one stage';
  if (stages.length > 20) return `a rollout has at most 20 stages, found ${stages.length}`;
  let previous = 0;
  for (const [i, s] of stages.entries()) {
    if (!(s.percent > 0 && s.percent <= 100))
      return `stages[${i}].percent must be in (0, 100], found ${s.percent}`;
    if (s.percent <= previous)
      return `stages[${i}].percent must be above the previous stage's ${previous}, found ${s.percent}`;
    previous = s.percent;
  }
  return undefined;
}
