// Strict Semantic Versioning 2.0.0 (https://semver.org): parse and order release versions.
// No ranges, no loose forms ("v1.2", "1.2"), no leading zeros: a release version is compared
// against the device's running version to refuse replays and unannounced downgrades.
import { ManifestError } from './errors.js';

export interface SemVer {
  major: number;
  minor: number;
  patch: number;
  /** Dot-separated pre-release identifiers ("rc", 1 for "-rc.1"); empty for a release. */
  prerelease: readonly (string | number)[];
  /** Build metadata identifiers; ignored for precedence (semver §10). */
  build: readonly string[];
}

/** Longest version string accepted (semver itself sets none; ours keeps parsing bounded). */
export const MAX_VERSION_LENGTH = 128;

// semver.org's recommended regular expression (§"Is there a suggested regular expression").
const SEMVER_RE =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

/** True when `text` is a strict semver 2.0.0 version with safe-integer numeric parts. */
export function isSemver(text: string): boolean {
  return tryParse(text) !== undefined;
}

/** Parse a strict semver 2.0.0 version; throws ERR_VERSION_INVALID saying what is wrong. */
export function parseSemver(text: string): SemVer {
  const parsed = tryParse(text);
  if (parsed === undefined) {
    throw new ManifestError(
      'ERR_VERSION_INVALID',
      `version ${JSON.stringify(text.slice(0, MAX_VERSION_LENGTH))} is not strict semver 2.0.0 (expected MAJOR.MINOR.PATCH[-pre][+build], no leading zeros, at most ${MAX_VERSION_LENGTH} characters)`,
    );
  }
  return parsed;
}

/** Order two versions by semver precedence (§11): negative if a < b, 0 if equal, positive if a > b. */
export function compareSemver(a: string | SemVer, b: string | SemVer): number {
  const x = typeof a === 'string' ? parseSemver(a) : a;
  const y = typeof b === 'string' ? parseSemver(b) : b;
  return (
    Math.sign(x.major - y.major) ||
    Math.sign(x.minor - y.minor) ||
    Math.sign(x.patch - y.patch) ||
    comparePrerelease(x.prerelease, y.prerelease)
  );
}

function tryParse(text: string): SemVer | undefined {
  if (typeof text !== 'string' || text.length > MAX_VERSION_LENGTH) return undefined;
  const m = SEMVER_RE.exec(text);
  if (m === null) return undefined;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  const patch = Number(m[3]);
  if (![major, minor, patch].every(Number.isSafeInteger)) return undefined;
  const prerelease: (string | number)[] = [];
  for (const id of m[4]?.split('.') ?? []) {
    if (/^\d+$/.test(id)) {
      const n = Number(id);
      if (!Number.isSafeInteger(n)) return undefined;
      prerelease.push(n);
    } else {
      prerelease.push(id);
    }
  }
  return { major, minor, patch, prerelease, build: m[5]?.split('.') ?? [] };
}

// semver §11.3-11.4: a version without pre-release ranks above one with; identifiers compare
// numerically when both numeric, numeric below alphanumeric, ASCII order otherwise; a longer
// list wins when all shared identifiers are equal.
function comparePrerelease(a: readonly (string | number)[], b: readonly (string | number)[]): number {
  if (a.length === 0 || b.length === 0) return Math.sign(b.length - a.length);
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number') return Math.sign(x - y);
    if (typeof x === 'number') return -1;
    if (typeof y === 'number') return 1;
    return x < y ? -1 : 1;
  }
  return Math.sign(a.length - b.length);
}
