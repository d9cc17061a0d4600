import { describe, expect, it } from 'vitest';
import { decideRange } from './http-range.js';

describe('decideRange (RFC 9110 §14)', () => {
  it('serves closed, open and suffix ranges, clamping the end to the blob', () => {
    expect(decideRange('bytes=0-99', 1000)).toEqual({ kind: 'partial', start: 0, end: 99 });
    expect(decideRange('bytes=900-', 1000)).toEqual({ kind: 'partial', start: 900, end: 999 });
    expect(decideRange('bytes=900-5000', 1000)).toEqual({ kind: 'partial', start: 900, end: 999 });
    expect(decideRange('bytes=-100', 1000)).toEqual({ kind: 'partial', start: 900, end: 999 });
    expect(decideRange('bytes=-5000', 1000)).toEqual({ kind: 'partial', start: 0, end: 999 });
  });
  it('is unsatisfiable past the end, and ignores unknown units, multiple or inverted ranges', () => {
    expect(decideRange('bytes=1000-', 1000)).toEqual({ kind: 'unsatisfiable' });
    expect(decideRange('bytes=-0', 1000)).toEqual({ kind: 'unsatisfiable' });
    expect(decideRange('bytes=0-', 0)).toEqual({ kind: 'unsatisfiable' });
    expect(decideRange(undefined, 1000)).toEqual({ kind: 'full' });
    expect(decideRange('items=0-1', 1000)).toEqual({ kind: 'full' });
    expect(decideRange('bytes=0-1,5-6', 1000)).toEqual({ kind: 'full' });
    expect(decideRange('bytes=50-10', 1000)).toEqual({ kind: 'full' });
  });
});
