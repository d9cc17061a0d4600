// Rollout decisions for a polling device, in the shape the device API started with: does a
// selector match a device, and which rollout to offer. The staged-rollout model behind them
// (buckets, stages, precedence, windows) lives in ./rollout/ (README "Rollouts"); these are the
// single-stage views of it, kept for callers that have no stage or progress data.
import type { RolloutSelector } from './db/schema.js';
import { chooseOffer, type OfferCandidate } from './rollout/offer.js';
import { selectorPicks } from './rollout/selector.js';

export { compareVersions } from './rollout/version.js';

export interface DeviceFacts {
  id: string;
  product: string;
  hardware: string;
  tags: readonly string[];
  currentVersion: string | null;
}

export interface CandidateRollout {
  rolloutId: string;
  product: string;
  selector: RolloutSelector;
  allowDowngrade: boolean;
  releaseVersion: string;
  releaseCompatible: readonly string[];
  /** This device's state in the rollout, if it was offered it before. */
  deviceState: string | null;
}

export function selectorMatches(
  selector: RolloutSelector,
  rolloutProduct: string,
  device: DeviceFacts,
): boolean {
  return selectorPicks(selector, rolloutProduct, device);
}

/**
 * The rollout to offer among single-stage (100 %) running rollouts listed newest first: the
 * staged decision (rollout/offer.ts) with list position standing in for the start time, so the
 * first matching candidate wins unless a more specific selector or a started install says
 * otherwise. Devices that finished a rollout (committed, failed, rolled back) are not offered it
 * again; lower versions only when the rollout allows downgrade.
 */
export function chooseRollout<T extends CandidateRollout>(
  device: DeviceFacts,
  candidates: readonly T[],
): T | undefined {
  const staged = candidates.map((c, i): OfferCandidate & { original: T } => ({
    rolloutId: c.rolloutId,
    kind: 'normal',
    state: 'active',
    product: c.product,
    selector: c.selector,
    allowDowngrade: c.allowDowngrade,
    releaseVersion: c.releaseVersion,
    releaseCompatible: c.releaseCompatible,
    stages: [{ percent: 100 }],
    currentStage: 0,
    startedAt: new Date(candidates.length - i),
    maintenanceWindow: null,
    original: c,
  }));
  const progress = new Map<string, string>();
  for (const c of candidates) if (c.deviceState !== null) progress.set(c.rolloutId, c.deviceState);
  return chooseOffer(device, staged, progress, new Date())?.candidate.original;
}

/** Next poll interval with ±jitter so a fleet does not synchronise (DESIGN.md "Network"). */
export function jitteredPollSeconds(
  baseSeconds: number,
  jitterFraction: number,
  random: () => number = Math.random,
): number {
  return Math.max(1, Math.round(baseSeconds * (1 + (random() * 2 - 1) * jitterFraction)));
}
