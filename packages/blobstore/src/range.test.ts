import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlobStoreError } from './errors.js';
import { rangeFromContentRange, rangeHeader, resolveRange } from './range.js';

const KEY = `sha256/${'0'.repeat(64)}`;

describe('resolveRange', () => {
  it('returns the whole blob without a range, including an empty one (end = start - 1)', () => {
    expect(resolveRange(KEY, undefined, 10)).toEqual({ start: 0, end: 9 });
    expect(resolveRange(KEY, undefined, 0)).toEqual({ start: 0, end: -1 });
  });

  it('keeps every satisfiable range inside the blob, with end clamped to the last byte', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 40 }),
        fc.nat({ max: 2 ** 40 }),
        fc.option(fc.nat({ max: 2 ** 41 }), { nil: undefined }),
        (total, startSeed, endOffset) => {
          const start = startSeed % total;
          const range = endOffset === undefined ? { start } : { start, end: start + endOffset };
          const r = resolveRange(KEY, range, total);
          expect(r.start).toBe(start);
          expect(r.end).toBeGreaterThanOrEqual(r.start);
          expect(r.end).toBeLessThan(total);
          expect(r.end).toBe(Math.min(range.end ?? total - 1, total - 1));
        },
      ),
    );
  });

  it('refuses a start at or past the end with ERR_BLOB_RANGE_NOT_SATISFIABLE carrying the size', () => {
    fc.assert(
      fc.property(fc.nat({ max: 2 ** 40 }), fc.nat({ max: 1000 }), (total, beyond) => {
        let caught: unknown;
        try {
          resolveRange(KEY, { start: total + beyond }, total);
        } catch (error) {
          caught = error;
        }
        expect(caught).toBeInstanceOf(BlobStoreError);
        expect((caught as BlobStoreError).code).toBe('ERR_BLOB_RANGE_NOT_SATISFIABLE');
        expect((caught as BlobStoreError).totalSizeBytes).toBe(total);
      }),
    );
  });

  it('refuses negative, fractional, reversed and unsafe ranges with ERR_BLOB_ARGUMENT_INVALID', () => {
    for (const range of [
      { start: -1 },
      { start: 0.5 },
      { start: 4, end: 3 },
      { start: 0, end: 1.5 },
      { start: 2 ** 53 },
      { start: Number.NaN },
    ]) {
      expect(() => resolveRange(KEY, range, 100), JSON.stringify(range)).toThrow(
        expect.objectContaining({ code: 'ERR_BLOB_ARGUMENT_INVALID' }),
      );
    }
  });

  it('writes HTTP Range headers with an inclusive end, or open-ended', () => {
    expect(rangeHeader({ start: 0, end: 0 })).toBe('bytes=0-0');
    expect(rangeHeader({ start: 5 })).toBe('bytes=5-');
  });
});

describe('rangeFromContentRange', () => {
  it('accepts an exact answer', () => {
    expect(rangeFromContentRange(KEY, { start: 10, end: 19 }, 'bytes 10-19/100')).toEqual({
      start: 10,
      end: 19,
      total: 100,
    });
    expect(rangeFromContentRange(KEY, { start: 10 }, 'bytes 10-99/100')).toEqual({
      start: 10,
      end: 99,
      total: 100,
    });
    expect(rangeFromContentRange(KEY, { start: 90, end: 500 }, 'bytes 90-99/100')).toEqual({
      start: 90,
      end: 99,
      total: 100,
    });
  });

  it('cuts an answer longer than asked back to the requested end (s3rver answers bytes=0-0 with everything)', () => {
    expect(rangeFromContentRange(KEY, { start: 0, end: 0 }, 'bytes 0-99/100')).toEqual({
      start: 0,
      end: 0,
      total: 100,
    });
  });

  it('treats a 206 on an empty object as unsatisfiable with size 0', () => {
    expect(() => rangeFromContentRange(KEY, { start: 0 }, 'bytes 0-0/0')).toThrow(
      expect.objectContaining({ code: 'ERR_BLOB_RANGE_NOT_SATISFIABLE', totalSizeBytes: 0 }),
    );
  });

  it('refuses answers that start elsewhere, stop short, overrun the size or are missing', () => {
    for (const header of [
      'bytes 11-19/100',
      'bytes 10-18/100',
      'bytes 10-100/100',
      undefined,
      'bytes */100',
      'items 10-19/100',
    ]) {
      expect(() => rangeFromContentRange(KEY, { start: 10, end: 19 }, header), String(header)).toThrow(
        /Content-Range/,
      );
    }
  });
});
