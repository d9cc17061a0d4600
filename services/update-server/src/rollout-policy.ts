// Pure rollout decisions (no I/O): does a rollout's selector match a device, and which of the
// active rollouts, if any, should a polling device be offered. Tested without a database.
import type { RolloutSelector } from './db/schema.js';

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

/** States after which a device is not offered the same rollout again (an operator starts a new one). */
const TERMINAL_DEVICE_STATES = new Set(['committed', 'failed', 'rolled-back']);

export function selectorMatches(
  selector: RolloutSelector,
  rolloutProduct: string,
  device: DeviceFacts,
): boolean {
  if (device.product !== rolloutProduct) return false;
  if (selector.product !== undefined && selector.product !== device.product) return false;
  if (
    selector.hardware !== undefined &&
    selector.hardware.length > 0 &&
    !selector.hardware.includes(device.hardware)
  )
    return false;
  if (selector.tags !== undefined && !selector.tags.every((t) => device.tags.includes(t))) return false;
  if (
    selector.deviceIds !== undefined &&
    selector.deviceIds.length > 0 &&
    !selector.deviceIds.includes(device.id)
  )
    return false;
  return true;
}

const SEMVER = /^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;

/** Semantic-version order (semver.org §11); undefined when either side is not a semver. */
export function compareVersions(a: string, b: string): number | undefined {
  const ma = SEMVER.exec(a);
  const mb = SEMVER.exec(b);
  if (ma === null || mb === null) return undefined;
  for (let i = 1; i <= 3; i++) {
    const d = Number(ma[i]) - Number(mb[i]);
    if (d !== 0) return Math.sign(d);
  }
  const pa = ma[4];
  const pb = mb[4];
  if (pa === undefined || pb === undefined) return pa === pb ? 0 : pa === undefined ? 1 : -1;
  const xa = pa.split('.');
  const xb = pb.split('.');
  for (let i = 0; i < Math.max(xa.length, xb.length); i++) {
    const x = xa[i];
    const y = xb[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const nx = /^\d+$/.test(x) ? Number(x) : undefined;
    const ny = /^\d+$/.test(y) ? Number(y) : undefined;
    if (nx !== undefined && ny !== undefined) {
      if (nx !== ny) return Math.sign(nx - ny);
    } else if (nx !== undefined) return -1;
    else if (ny !== undefined) return 1;
    else if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/**
 * The rollout to offer: the first candidate (callers pass newest first) whose selector matches,
 * whose release supports the device's hardware, that the device has not finished, and whose
 * version differs from the running one — lower versions only when the rollout allows downgrade.
 */
export function chooseRollout<T extends CandidateRollout>(
  device: DeviceFacts,
  candidates: readonly T[],
): T | undefined {
  return candidates.find((r) => {
    if (!selectorMatches(r.selector, r.product, device)) return false;
    if (!r.releaseCompatible.includes(device.hardware)) return false;
    if (r.deviceState !== null && TERMINAL_DEVICE_STATES.has(r.deviceState)) return false;
    if (device.currentVersion !== null) {
      if (r.releaseVersion === device.currentVersion) return false;
      const order = compareVersions(r.releaseVersion, device.currentVersion);
      if (order === 0) return false;
      if (order !== undefined && order < 0 && !r.allowDowngrade) return false;
    }
    return true;
  });
}

/** Next poll interval with ±jitter so a fleet does not synchronise (DESIGN.md "Network"). */
export function jitteredPollSeconds(
  baseSeconds: number,
  jitterFraction: number,
  random: () => number = Math.random,
): number {
  return Math.max(1, Math.round(baseSeconds * (1 + (random() * 2 - 1) * jitterFraction)));
}
