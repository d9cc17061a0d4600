// The matcher's cost on bytes the source does not hold: every target position looks up the
// index, and each candidate it returns is verified against the source (a page read when the
// source is larger than the page cache). Candidates must stay rare on incompressible changes.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MemorySourceBytes, matchSpan, SourceIndex } from './matcher.js';

describe('matchSpan', () => {
  it('verifies few index candidates for random target bytes against a full index (no source read per byte)', () => {
    const source = randomBytes(4 * 1024 * 1024);
    const index = new SourceIndex(source.length);
    index.addChunk(source, 0);
    const target = randomBytes(1024 * 1024);
    const patch = matchSpan(target, 0, new MemorySourceBytes(source), index);
    expect(patch.copies).toBe(0);
    // ~2/3 of the slots are occupied: with only the slot to go by, ~700 000 of the 1 Mi
    // lookups would be verified; the check bits leave ~10 (1 in 65 536).
    expect(index.candidates).toBeLessThan(100);
  });

  it('still finds the source bytes a target span holds', () => {
    const source = randomBytes(4 * 1024 * 1024);
    const index = new SourceIndex(source.length);
    index.addChunk(source, 0);
    const target = Buffer.concat([
      randomBytes(5000),
      source.subarray(1_000_003, 1_200_003),
      randomBytes(7000),
    ]);
    const patch = matchSpan(target, 0, new MemorySourceBytes(source), index);
    expect(patch.copies).toBe(1);
    expect(patch.literalBytes).toBe(12_000);
  });

  it('copies short runs a few bytes off the last copy diagonal (recompressed / relinked data)', () => {
    const source = randomBytes(1024 * 1024);
    const index = new SourceIndex(source.length);
    index.addChunk(source, 0);
    // 4 KiB copied whole (found by the index), then 10-byte runs of the following source bytes
    // each behind 1-3 new bytes: every run is off the previous diagonal and too short for the
    // index (24) or the diagonal continuation (12).
    const parts: Buffer[] = [source.subarray(300_000, 304_096)];
    let inserted = 0;
    for (let s = 304_096; s < 364_096; s += 10) {
      const junk = randomBytes(1 + (s % 3));
      inserted += junk.length;
      parts.push(junk, source.subarray(s, s + 10));
    }
    const target = Buffer.concat(parts);
    const patch = matchSpan(target, 0, new MemorySourceBytes(source), index);
    expect(patch.literalBytes).toBeLessThan(inserted * 1.1);
    expect(patch.copies).toBeGreaterThan(5000);
  });
});
