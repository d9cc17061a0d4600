// Small rollout rules outside the staged model: does a selector match a device (blob access
// checks), the poll interval with jitter, and version order. Which rollout a device is offered
// is decided by offer.ts (README "Rollouts").
import type { RolloutSelector } from '../db/schema.js';
import { selectorPicks } from './selector.js';

export { compareVersions } from './version.js';

export interface DeviceFacts {
  id: string;
  product: string;
  hardware: string;
  tags: readonly string[];
  currentVersion: string | null;
}

export function selectorMatches(
  selector: RolloutSelector,
  rolloutProduct: string,
  device: DeviceFacts,
): boolean {
  return selectorPicks(selector, rolloutProduct, device);
}

/**
 * Next poll interval with ±jitter so a fleet does not synchronise (docs/architecture.md
 * "The device side").
 */
export function jitteredPollSeconds(
  baseSeconds: number,
  jitterFraction: number,
  random: () => number = Math.random,
): number {
  return Math.max(1, Math.round(baseSeconds * (1 + (random() * 2 - 1) * jitterFraction)));
}
