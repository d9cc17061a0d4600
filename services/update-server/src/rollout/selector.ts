// Does a rollout's selector pick a device: product, hardware, tags (all), groups (any, as
// `group:<name>` tags), explicit device ids, a running-version constraint, and membership of an
// earlier rollout (rollbacks). Pure: the caller passes the device's facts.
import { compareVersions } from './version.js';
import type { Selector } from './model.js';

export interface SelectableDevice {
  id: string;
  product: string;
  hardware: string;
  tags: readonly string[];
  currentVersion: string | null;
  /** Rollouts this device was ever offered (only needed for `fromRollout` selectors). */
  memberOf?: ReadonlySet<string> | undefined;
}

export const GROUP_TAG_PREFIX = 'group:';

type Comparator = '>=' | '<=' | '>' | '<' | '=' | '!=';
export interface VersionClause {
  op: Comparator;
  version: string;
}

const CLAUSE = /^(>=|<=|>|<|=|!=)?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)$/;

/** Parses ">=1.0.0 <1.2.0"; returns an error message naming the bad clause instead of throwing. */
export function parseVersionConstraint(text: string): VersionClause[] | string {
  const parts = text
    .trim()
    .split(/\s+/)
    .filter((p) => p !== '');
  if (parts.length === 0) return 'currentVersion constraint is empty';
  if (parts.length > 8) return `currentVersion constraint has ${parts.length} clauses, at most 8`;
  const clauses: VersionClause[] = [];
  for (const part of parts) {
    const m = CLAUSE.exec(part);
    if (m === null || m[2] === undefined)
      return `currentVersion clause "${part}" is not <op><semver> with op one of >= <= > < = != (e.g. ">=1.0.0")`;
    clauses.push({ op: (m[1] ?? '=') as Comparator, version: m[2] });
  }
  return clauses;
}

export function versionSatisfies(version: string, clauses: readonly VersionClause[]): boolean {
  return clauses.every(({ op, version: bound }) => {
    const order = compareVersions(version, bound);
    if (order === undefined) return op === '!=' ? version !== bound : false;
    switch (op) {
      case '>=':
        return order >= 0;
      case '<=':
        return order <= 0;
      case '>':
        return order > 0;
      case '<':
        return order < 0;
      case '=':
        return order === 0;
      case '!=':
        return order !== 0;
    }
    return false;
  });
}

const listed = (values: readonly string[] | undefined): values is readonly string[] =>
  values !== undefined && values.length > 0;

export function selectorPicks(selector: Selector, rolloutProduct: string, device: SelectableDevice): boolean {
  if (device.product !== rolloutProduct) return false;
  if (selector.product !== undefined && selector.product !== device.product) return false;
  if (listed(selector.hardware) && !selector.hardware.includes(device.hardware)) return false;
  if (selector.tags !== undefined && !selector.tags.every((t) => device.tags.includes(t))) return false;
  if (
    listed(selector.groups) &&
    !selector.groups.some((g) => device.tags.includes(`${GROUP_TAG_PREFIX}${g}`))
  )
    return false;
  if (listed(selector.deviceIds) && !selector.deviceIds.includes(device.id)) return false;
  if (selector.currentVersion !== undefined) {
    const clauses = parseVersionConstraint(selector.currentVersion);
    // A stored constraint was validated on the way in; an unparsable one selects nobody (fail closed).
    if (typeof clauses === 'string' || device.currentVersion === null) return false;
    if (!versionSatisfies(device.currentVersion, clauses)) return false;
  }
  if (selector.fromRollout !== undefined && device.memberOf?.has(selector.fromRollout) !== true) return false;
  return true;
}

/**
 * How specific a selector is, for precedence between rollouts that both pick a device:
 * explicit device ids (3) beat groups (2), which beat tags (1), which beat everything else (0).
 */
export function selectorSpecificity(selector: Selector): number {
  if (listed(selector.deviceIds)) return 3;
  if (listed(selector.groups)) return 2;
  if (listed(selector.tags)) return 1;
  return 0;
}
