// Canonical JSON (RFC 8785 JCS, restricted to the values our documents use) so the bytes a
// signature covers are a pure function of the value: object keys sorted by UTF-16 code units,
// no whitespace, strings and numbers serialised as ECMAScript JSON.stringify does (RFC 8785 §3.2.2).
import { ManifestError } from './errors.js';

/** Serialise a JSON value canonically. Throws ERR_INVALID_ARGUMENT for values JSON cannot represent. */
export function canonicalJson(value: unknown): string {
  return serialise(value, '$', 0);
}

/** Canonical JSON as UTF-8 bytes: what a JWS payload carries. */
export function canonicalJsonBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(canonicalJson(value));
}

// Deep enough for any manifest or root; stops a hostile structure from exhausting the stack.
const MAX_DEPTH = 32;

function serialise(value: unknown, path: string, depth: number): string {
  if (depth > MAX_DEPTH) {
    throw new ManifestError(
      'ERR_INVALID_ARGUMENT',
      `canonical JSON: nesting deeper than ${MAX_DEPTH} at ${path}`,
    );
  }
  if (value === null || typeof value === 'boolean' || typeof value === 'string') {
    return JSON.stringify(value);
  }
  if (typeof value === 'number') {
    // RFC 8785 §3.2.2.3: NaN and Infinity are not JSON; -0 serialises as 0 (JSON.stringify does).
    if (!Number.isFinite(value)) {
      throw new ManifestError('ERR_INVALID_ARGUMENT', `canonical JSON: non-finite number at ${path}`);
    }
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return `[${value.map((item, i) => serialise(item, `${path}[${i}]`, depth + 1)).join(',')}]`;
  }
  if (typeof value === 'object') {
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) {
      throw new ManifestError('ERR_INVALID_ARGUMENT', `canonical JSON: ${path} is not a plain object`);
    }
    const record = value as Record<string, unknown>;
    // Default sort compares UTF-16 code units, which is what RFC 8785 §3.2.3 prescribes.
    const keys = Object.keys(record)
      .filter((key) => record[key] !== undefined)
      .sort();
    const members = keys.map(
      (key) => `${JSON.stringify(key)}:${serialise(record[key], `${path}.${key}`, depth + 1)}`,
    );
    return `{${members.join(',')}}`;
  }
  throw new ManifestError('ERR_INVALID_ARGUMENT', `canonical JSON: ${typeof value} at ${path} is not JSON`);
}
