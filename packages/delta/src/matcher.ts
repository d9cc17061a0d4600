// Finding target bytes in the source image (FORMAT.md "How abota diff chooses ops"): a sampled
// rolling-hash index over the whole source (xdelta/rsync style), "same diagonal" continuation
// after a short mismatch (the bsdiff observation that relinked code differs in a few bytes
// between long equal runs), and a near search a few bytes off that diagonal for short runs
// (what xdelta3's small-string matcher finds in recompressed data). Pure over a page-cached
// source, so it is unit-testable.
import { closeSync, openSync, readSync } from 'node:fs';
import { PatchBuilder } from './patch.js';

/** Window hashed for the index; matches of ≥ WINDOW + STRIDE − 1 bytes are always found. */
export const WINDOW = 32;
/** Source positions indexed: every STRIDE bytes. */
export const STRIDE = 16;
/** Shortest exact match worth a COPY command after a mismatch on the same diagonal. */
const MIN_DIAGONAL_MATCH = 12;
/** Shortest hash-found match worth a COPY command. */
const MIN_HASH_MATCH = 24;
/** Near search: source bytes either side of the last copy's diagonal that are tried at a literal. */
const NEAR_RADIUS = 128;
/** Shortest match found by the near search (its COPY costs ~3 bytes: length, a small offset, the ADD split). */
const MIN_NEAR_MATCH = 5;
/** Literal bytes after the last copy within which the near search is tried (bounds its cost on new data). */
const NEAR_REACH = 4096;
/** Bytes compared in the near window before a match is extended through the page cache. */
const NEAR_COMPARE = 64;
const PRIME = 0x01000193;
/** A second, independent polynomial: its top bits are the index's check bits. */
const PRIME2 = 0x2c9277b5;
const GOLDEN = 0x9e3779b1;

/** prime^(WINDOW-1) mod 2^32, to drop the outgoing byte when rolling. */
function dropFactor(prime: number): number {
  let p = 1;
  for (let i = 0; i < WINDOW - 1; i++) p = Math.imul(p, prime);
  return p;
}
const DROP = dropFactor(PRIME);
const DROP2 = dropFactor(PRIME2);

/**
 * Both hashes of the window at `at` in one pass over its bytes (the index build's hot loop):
 * returns the first, leaves the second in `windowHashes.second`.
 */
export function windowHashes(bytes: Uint8Array, at: number): number {
  let h = 0;
  let h2 = 0;
  for (let k = 0; k < WINDOW; k++) {
    const b = bytes[at + k]!;
    h = (Math.imul(h, PRIME) + b) | 0;
    h2 = (Math.imul(h2, PRIME2) + b) | 0;
  }
  windowHashes.second = h2;
  return h;
}
/** The second hash of the last `windowHashes` call (only its top 16 bits are used, as check bits). */
windowHashes.second = 0;

/** Random access to the source with a bounded page cache (synchronous: the matcher is a tight loop). */
export interface SourceBytes {
  readonly sizeBytes: number;
  /** The cached page holding `offset` and that page's first byte offset. */
  page(offset: number): { bytes: Uint8Array; start: number };
}

export class FileSourceBytes implements SourceBytes {
  static readonly PAGE = 1024 * 1024;
  private readonly fd: number;
  private readonly pages = new Map<number, Uint8Array>();
  private lastIndex = -1;
  private lastBytes: Uint8Array = new Uint8Array(0);
  constructor(
    path: string,
    readonly sizeBytes: number,
    private readonly maxPages: number,
  ) {
    this.fd = openSync(path, 'r');
  }
  page(offset: number): { bytes: Uint8Array; start: number } {
    const index = Math.floor(offset / FileSourceBytes.PAGE);
    const start = index * FileSourceBytes.PAGE;
    if (index === this.lastIndex) return { bytes: this.lastBytes, start };
    let bytes = this.pages.get(index);
    if (bytes) {
      this.pages.delete(index);
    } else {
      const length = Math.min(FileSourceBytes.PAGE, this.sizeBytes - start);
      bytes = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const n = readSync(this.fd, bytes, done, length - done, start + done);
        if (n === 0) throw new Error(`source shrank while diffing (EOF at byte ${start + done})`);
        done += n;
      }
      if (this.pages.size >= this.maxPages) this.pages.delete(this.pages.keys().next().value!);
    }
    this.pages.set(index, bytes);
    this.lastIndex = index;
    this.lastBytes = bytes;
    return { bytes, start };
  }
  close(): void {
    closeSync(this.fd);
  }
}

export class MemorySourceBytes implements SourceBytes {
  constructor(private readonly bytes: Uint8Array) {}
  get sizeBytes(): number {
    return this.bytes.length;
  }
  page(): { bytes: Uint8Array; start: number } {
    return { bytes: this.bytes, start: 0 };
  }
}

/**
 * Open-addressed, lossy (newest wins) map from window hash to source position / STRIDE + 1,
 * with 16 bits of a second, independent hash of the window beside it (bits of the first hash
 * would mostly repeat what the slot already says). A lookup whose check bits differ is a miss
 * without touching the source: on incompressible target bytes nearly every position finds an
 * occupied slot, and verifying each such candidate would read a random source page per target
 * byte (a 1 MiB read whenever the source exceeds the page cache: minutes per MiB).
 */
export class SourceIndex {
  readonly table: Int32Array;
  private readonly check: Uint16Array;
  private readonly shift: number;
  /** Candidates that passed the check bits (each one is verified against the source). */
  candidates = 0;
  constructor(sourceSizeBytes: number, maxTableBits = 24) {
    const wanted = Math.max(10, Math.ceil(Math.log2(Math.max(1, sourceSizeBytes / STRIDE))));
    const bits = Math.min(maxTableBits, wanted);
    this.table = new Int32Array(1 << bits);
    this.check = new Uint16Array(1 << bits);
    this.shift = 32 - bits;
  }
  /** Bytes held by the index (the diff's memory bound counts them). */
  get sizeBytes(): number {
    return this.table.byteLength + this.check.byteLength;
  }
  /** Index the windows starting at STRIDE-aligned positions inside `chunk` (absolute `chunkStart`). */
  addChunk(chunk: Uint8Array, chunkStart: number): void {
    const first = Math.ceil(chunkStart / STRIDE) * STRIDE - chunkStart;
    for (let at = first; at + WINDOW <= chunk.length; at += STRIDE) {
      const h = windowHashes(chunk, at);
      // All-zero windows hash to 0: runs of zeros are cheap literals and would flood the table.
      if (h === 0) continue;
      const slot = Math.imul(h, GOLDEN) >>> this.shift;
      this.table[slot] = (chunkStart + at) / STRIDE + 1;
      this.check[slot] = windowHashes.second >>> 16;
    }
  }
  /** The indexed source position of a window with hashes `h` and `h2`, or -1. */
  lookup(h: number, h2: number): number {
    const slot = Math.imul(h, GOLDEN) >>> this.shift;
    const v = this.table[slot]!;
    if (v === 0 || this.check[slot] !== h2 >>> 16) return -1;
    this.candidates++;
    return (v - 1) * STRIDE;
  }
}

/** Length of the common run of source[s..] and target[t..], at most `max`. */
function forwardMatch(src: SourceBytes, s: number, target: Uint8Array, t: number, max: number): number {
  let n = 0;
  const limit = Math.min(max, src.sizeBytes - s);
  while (n < limit) {
    const { bytes, start } = src.page(s + n);
    let p = s + n - start;
    const end = Math.min(bytes.length, p + (limit - n));
    while (p < end && bytes[p] === target[t + n]) {
      p++;
      n++;
    }
    if (p < end) break;
  }
  return n;
}

/** Length of the common run ending just before source[s] and target[t], at most `max`. */
function backwardMatch(src: SourceBytes, s: number, target: Uint8Array, t: number, max: number): number {
  let n = 0;
  const limit = Math.min(max, s);
  while (n < limit) {
    const { bytes, start } = src.page(s - n - 1);
    let p = s - n - 1 - start;
    while (p >= 0 && n < limit && bytes[p] === target[t - n - 1]) {
      p--;
      n++;
    }
    if (p >= 0 && n < limit) break;
  }
  return n;
}

/**
 * The source bytes around the point where the last copy's diagonal meets the current target
 * position: relinked code and recompressed data (lz4 streams keep the old bytes as literals
 * between re-encoded tokens) repeat the source in short runs a few bytes off that diagonal,
 * which the sampled index cannot see (xdelta3's small-string matcher finds them by hashing
 * every 4 bytes of the target). A small copy of the source, refilled as the point moves.
 */
class NearWindow {
  private readonly buf = new Uint8Array(8192);
  private bufStart = 0;
  private bufEnd = 0;
  /** Length of the last search's match. */
  length = 0;
  constructor(private readonly src: SourceBytes) {}

  private fill(from: number): void {
    const end = Math.min(this.src.sizeBytes, from + this.buf.length);
    let at = from;
    while (at < end) {
      const { bytes, start } = this.src.page(at);
      const take = Math.min(end - at, bytes.length - (at - start));
      this.buf.set(bytes.subarray(at - start, at - start + take), at - from);
      at += take;
    }
    this.bufStart = from;
    this.bufEnd = end;
  }

  /**
   * The source offset within NEAR_RADIUS of `expected` with the longest common run with
   * target[t..] (at most NEAR_COMPARE bytes; ties go to the nearest), or -1. Sets `length`.
   */
  search(expected: number, target: Uint8Array, t: number): number {
    const lo = Math.max(0, expected - NEAR_RADIUS);
    const hi = Math.min(this.src.sizeBytes, expected + NEAR_RADIUS + NEAR_COMPARE);
    if (lo >= hi) return -1;
    if (lo < this.bufStart || hi > this.bufEnd) this.fill(lo);
    const max = Math.min(NEAR_COMPARE, target.length - t);
    const first = target[t]!;
    const buf = this.buf;
    let best = -1;
    let bestLength = 0;
    let bestDistance = 0;
    for (let s = lo; s < hi; s++) {
      const b = s - this.bufStart;
      if (buf[b] !== first) continue;
      const limit = Math.min(max, hi - s);
      let k = 1;
      while (k < limit && buf[b + k] === target[t + k]) k++;
      const distance = Math.abs(s - expected);
      if (k > bestLength || (k === bestLength && distance < bestDistance)) {
        best = s;
        bestLength = k;
        bestDistance = distance;
      }
    }
    this.length = bestLength;
    return best;
  }
}

/**
 * Encode `target` (the bytes of one op's span, starting at absolute target byte `baseOffset`)
 * as ADD/COPY commands against the source.
 */
export function matchSpan(
  target: Uint8Array,
  baseOffset: number,
  src: SourceBytes,
  index: SourceIndex,
  opts: { nearSearch?: boolean } = {},
): PatchBuilder {
  const nearSearch = opts.nearSearch ?? true;
  const out = new PatchBuilder(baseOffset);
  const n = target.length;
  let literalStart = 0;
  let diagonal = Number.NaN; // source offset − target offset of the last copy
  let i = 0;
  let h = n >= WINDOW ? windowHashes(target, 0) : 0;
  let h2 = windowHashes.second;
  const near = new NearWindow(src);
  while (i < n) {
    let bestSource = -1;
    let bestLength = 0;
    if (!Number.isNaN(diagonal)) {
      const s = baseOffset + i + diagonal;
      if (s >= 0 && s < src.sizeBytes) {
        const len = forwardMatch(src, s, target, i, n - i);
        if (len >= MIN_DIAGONAL_MATCH) {
          bestSource = s;
          bestLength = len;
        }
      }
    }
    if (i + WINDOW <= n && bestLength < 256) {
      const s = index.lookup(h, h2);
      if (s >= 0 && s !== bestSource) {
        const len = forwardMatch(src, s, target, i, n - i);
        if (len >= MIN_HASH_MATCH && len > bestLength) {
          bestSource = s;
          bestLength = len;
        }
      }
    }
    if (nearSearch && bestSource < 0 && !Number.isNaN(diagonal) && i - literalStart < NEAR_REACH) {
      const found = near.search(baseOffset + i + diagonal, target, i);
      if (found >= 0 && near.length >= MIN_NEAR_MATCH) {
        bestSource = found;
        bestLength = near.length;
        if (bestLength >= NEAR_COMPARE)
          bestLength += forwardMatch(src, found + bestLength, target, i + bestLength, n - i - bestLength);
      }
    }
    if (bestSource >= 0) {
      const back = backwardMatch(src, bestSource, target, i, i - literalStart);
      out.add(target.subarray(literalStart, i - back));
      out.copy(bestSource - back, bestLength + back);
      diagonal = bestSource - (baseOffset + i);
      i += bestLength;
      literalStart = i;
      if (i + WINDOW <= n) {
        h = windowHashes(target, i);
        h2 = windowHashes.second;
      }
      continue;
    }
    if (i + WINDOW < n) {
      h = (Math.imul(h - Math.imul(target[i]!, DROP), PRIME) + target[i + WINDOW]!) | 0;
      h2 = (Math.imul(h2 - Math.imul(target[i]!, DROP2), PRIME2) + target[i + WINDOW]!) | 0;
    }
    i++;
  }
  out.add(target.subarray(literalStart, n));
  return out;
}
