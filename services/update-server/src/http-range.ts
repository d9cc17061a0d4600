// HTTP Range requests for blob downloads (RFC 9110 §14): one byte range per request, which is
// what resuming downloaders send. Multi-range requests are answered with the whole blob (§14.2
// lets a server ignore Range); a range starting past the end is unsatisfiable (416).

export type RangeDecision =
  | { kind: 'full' }
  | { kind: 'partial'; start: number; end: number /* inclusive */ }
  | { kind: 'unsatisfiable' };

export function decideRange(header: string | undefined, totalSizeBytes: number): RangeDecision {
  if (header === undefined) return { kind: 'full' };
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (match === null) return { kind: 'full' }; // unknown unit or several ranges: ignore Range
  const [, first = '', last = ''] = match;
  if (first === '' && last === '') return { kind: 'full' };
  if (first === '') {
    // Suffix range: the last N bytes.
    const n = Number(last);
    if (n === 0) return { kind: 'unsatisfiable' };
    return totalSizeBytes === 0
      ? { kind: 'unsatisfiable' }
      : { kind: 'partial', start: Math.max(0, totalSizeBytes - n), end: totalSizeBytes - 1 };
  }
  const start = Number(first);
  if (!Number.isSafeInteger(start) || start >= totalSizeBytes) return { kind: 'unsatisfiable' };
  const end = last === '' ? totalSizeBytes - 1 : Math.min(Number(last), totalSizeBytes - 1);
  if (!Number.isSafeInteger(end) || end < start) return { kind: 'full' }; // invalid: ignore (RFC 9110 §14.1.1)
  return { kind: 'partial', start, end };
}
