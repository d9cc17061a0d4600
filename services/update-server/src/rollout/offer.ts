// Which rollout, if any, a polling device is offered — the pure decision behind
// POST /v1/device/poll, computed from cached rollout state plus the device's own progress.
//
// Precedence when several rollouts could offer to the same device (first rule that differs wins):
//   1. a rollback rollout beats a normal one;
//   2. a rollout the device has already started installing (downloading … rebooting) beats one
//      it has not, so an install is never switched mid-way;
//   3. the more specific selector wins: explicit device ids > groups > tags > the rest;
//   4. the most recently started rollout wins;
//   5. the lowest rollout id (only so the answer is total and identical on every replica).
import { compareVersions } from './version.js';
import { bucketLimit, rolloutBucket } from './bucket.js';
import {
  INSTALLING_STATES,
  type MaintenanceWindow,
  OUTCOME_STATES,
  type RolloutKind,
  type RolloutLifecycle,
  type Selector,
  type StageSpec,
} from './model.js';
import { type SelectableDevice, selectorPicks, selectorSpecificity } from './selector.js';
import { windowOpen } from './window.js';

export interface OfferCandidate {
  rolloutId: string;
  kind: RolloutKind;
  state: RolloutLifecycle;
  product: string;
  selector: Selector;
  allowDowngrade: boolean;
  releaseVersion: string;
  releaseCompatible: readonly string[];
  stages: readonly StageSpec[];
  currentStage: number;
  startedAt: Date | null;
  maintenanceWindow: MaintenanceWindow | null;
  /** Devices between offer and outcome now; only consulted when the stage sets maxConcurrent. */
  inFlight?: number | undefined;
  /**
   * Exclusive bucket limit of the current stage with its minDevices applied (stage-limits.ts);
   * when unknown, the stage's percent alone.
   */
  stageBucketLimit?: number | undefined;
}

export interface OfferDevice extends SelectableDevice {
  /** IANA time zone for device-local maintenance windows (the device's `timezone` attribute). */
  timeZone?: string | undefined;
}

/** rolloutId → the device's state in that rollout (rollout_devices), for the candidates only. */
export type DeviceProgress = ReadonlyMap<string, string>;

export type OfferBasis = 'continue' | 'new';
export interface Offer<T extends OfferCandidate> {
  candidate: T;
  /** `continue`: the device had started this install; `new`: a fresh offer in the current stage. */
  basis: OfferBasis;
}

/** Whether the release is one this device should move to under the rollout's downgrade rule. */
export function releaseApplies(
  c: Pick<OfferCandidate, 'releaseVersion' | 'releaseCompatible' | 'allowDowngrade'>,
  device: Pick<OfferDevice, 'hardware' | 'currentVersion'>,
): boolean {
  if (!c.releaseCompatible.includes(device.hardware)) return false;
  return versionApplies(c, device.currentVersion);
}

/** releaseApplies' version half: not the running version, and no downgrade unless allowed. */
export function versionApplies(
  c: Pick<OfferCandidate, 'releaseVersion' | 'allowDowngrade'>,
  currentVersion: string | null,
): boolean {
  if (currentVersion === null) return true;
  if (c.releaseVersion === currentVersion) return false;
  const order = compareVersions(c.releaseVersion, currentVersion);
  if (order === 0) return false;
  return !(order !== undefined && order < 0 && !c.allowDowngrade);
}

/** Why a single rollout would or would not offer to the device; undefined = it would not. */
export function offerBasis(
  c: OfferCandidate,
  device: OfferDevice,
  progress: DeviceProgress,
  now: Date,
): OfferBasis | undefined {
  if (c.state !== 'active' && c.state !== 'paused') return undefined;
  const state = progress.get(c.rolloutId);
  if (state !== undefined && OUTCOME_STATES.has(state)) return undefined;
  if (!releaseApplies(c, device)) return undefined;
  // Started installs carry on through a pause (documented in README "Rollouts"): the device
  // resumes the download it has, and its outcome still counts.
  if (state !== undefined && INSTALLING_STATES.has(state)) return 'continue';
  if (c.state !== 'active') return undefined;
  if (!selectorPicks(c.selector, c.product, device)) return undefined;
  const stage = c.stages[c.currentStage];
  if (stage === undefined) return undefined;
  const limit = c.stageBucketLimit ?? bucketLimit(stage.percent);
  if (rolloutBucket(c.rolloutId, device.id) >= limit) return undefined;
  // A device already offered (state "offered") keeps its place even if the window or cap closes.
  if (state === undefined) {
    if (!windowOpen(c.maintenanceWindow, now, device.timeZone)) return undefined;
    if (stage.maxConcurrent !== undefined && (c.inFlight ?? 0) >= stage.maxConcurrent) return undefined;
  }
  return 'new';
}

/** Total order of the precedence rules above: negative when `a` wins over `b`. */
export function comparePrecedence(
  a: { candidate: OfferCandidate; basis: OfferBasis },
  b: { candidate: OfferCandidate; basis: OfferBasis },
): number {
  const ka = a.candidate.kind === 'rollback' ? 0 : 1;
  const kb = b.candidate.kind === 'rollback' ? 0 : 1;
  if (ka !== kb) return ka - kb;
  const ca = a.basis === 'continue' ? 0 : 1;
  const cb = b.basis === 'continue' ? 0 : 1;
  if (ca !== cb) return ca - cb;
  const sa = selectorSpecificity(a.candidate.selector);
  const sb = selectorSpecificity(b.candidate.selector);
  if (sa !== sb) return sb - sa;
  const ta = a.candidate.startedAt?.getTime() ?? Number.NEGATIVE_INFINITY;
  const tb = b.candidate.startedAt?.getTime() ?? Number.NEGATIVE_INFINITY;
  if (ta !== tb) return tb > ta ? 1 : -1;
  return a.candidate.rolloutId < b.candidate.rolloutId
    ? -1
    : a.candidate.rolloutId > b.candidate.rolloutId
      ? 1
      : 0;
}

/** The offer for a polling device, or undefined for "no update". */
export function chooseOffer<T extends OfferCandidate>(
  device: OfferDevice,
  candidates: readonly T[],
  progress: DeviceProgress,
  now: Date,
): Offer<T> | undefined {
  let best: Offer<T> | undefined;
  for (const candidate of candidates) {
    const basis = offerBasis(candidate, device, progress, now);
    if (basis === undefined) continue;
    const offer = { candidate, basis };
    if (best === undefined || comparePrecedence(offer, best) < 0) best = offer;
  }
  return best;
}
