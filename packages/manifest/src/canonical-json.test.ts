// Canonical JSON: the signed bytes must depend on the value only, never on key order.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, canonicalJsonBytes } from './canonical-json.js';
import { ManifestError } from './errors.js';

/** The same value with every object's keys in a different (seeded) order. */
function reorder(value: unknown, seed: number): unknown {
  if (Array.isArray(value)) return value.map((v, i) => reorder(v, seed + i));
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value);
    // Deterministic shuffle from the seed (Fisher-Yates with an LCG).
    let s = seed >>> 0;
    for (let i = entries.length - 1; i > 0; i--) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const j = s % (i + 1);
      [entries[i], entries[j]] = [entries[j]!, entries[i]!];
    }
    return Object.fromEntries(entries.map(([k, v], i) => [k, reorder(v, seed + i + 1)]));
  }
  return value;
}

describe('canonicalJson', () => {
  it('sorts keys, drops whitespace and serialises like RFC 8785', () => {
    expect(canonicalJson({ b: [1, 'x', null, true], a: { d: 2.5, c: -0 } })).toBe(
      '{"a":{"c":0,"d":2.5},"b":[1,"x",null,true]}',
    );
    // RFC 8785 §3.2.2.3 number forms and §3.2.3 UTF-16 code unit key order.
    expect(canonicalJson([1e21, 1e-7, 333333333.3333333, 4.5e-7])).toBe(
      '[1e+21,1e-7,333333333.3333333,4.5e-7]',
    );
    expect(canonicalJson({ '\u20ac': 1, '\r': 2, '\ud83d\ude00': 3, ö: 4, a: 5 })).toBe(
      '{"\\r":2,"a":5,"ö":4,"€":1,"😀":3}',
    );
  });

  it('refuses values JSON cannot represent, naming where', () => {
    expect(() => canonicalJson({ a: [1, Number.NaN] })).toThrow(/non-finite number at \$\.a\[1\]/);
    expect(() => canonicalJson({ when: new Date(0) })).toThrow(ManifestError);
    expect(() => canonicalJson([undefined])).toThrow(ManifestError);
    expect(() => canonicalJson(10n)).toThrow(ManifestError);
  });

  it('is stable under key reordering at every depth (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.integer(), (value, seed) => {
        expect(canonicalJson(reorder(value, seed))).toBe(canonicalJson(value));
      }),
      { numRuns: 500 },
    );
  });

  it('round-trips: parsing canonical JSON and re-canonicalising gives the same bytes (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = canonicalJson(value);
        expect(canonicalJson(JSON.parse(text))).toBe(text);
        expect(new TextDecoder().decode(canonicalJsonBytes(value))).toBe(text);
      }),
      { numRuns: 500 },
    );
  });
});
