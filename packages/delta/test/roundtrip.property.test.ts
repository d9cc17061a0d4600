// Property tests: any source/target pair round-trips exactly through diff + streaming apply,
// and any corruption of the payload is refused (never a wrong target accepted).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { withTempDir } from '@abota/testkit';
import { DeltaError } from '../src/index.js';
import { applyBytes, digestVerifier, makeDelta } from './support.js';

const BLOCK = 4096;

/** Deterministic bytes from a seed (xorshift32): fast-check picks seeds and edits, not megabytes. */
function prng(seed: number): () => number {
  let x = seed | 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

/** A source image with random, text-like and zero regions, padded to whole blocks. */
function makeSource(seed: number, blocks: number): Uint8Array {
  const rand = prng(seed);
  const out = new Uint8Array(blocks * BLOCK);
  const words = ['lib', 'ssl', 'curl', 'usr/', 'bin', '\n', ' ', 'ELF', '\0\0\0\0'];
  let p = 0;
  while (p < out.length) {
    const kind = rand() % 3;
    const len = Math.min(out.length - p, 512 + (rand() % 9000));
    if (kind === 0) for (let i = 0; i < len; i++) out[p + i] = rand() & 0xff;
    else if (kind === 1) {
      let i = 0;
      while (i < len) {
        const w = words[rand() % words.length]!;
        for (let k = 0; k < w.length && i < len; k++) out[p + i++] = w.charCodeAt(k);
      }
    } // kind 2: stays zero
    p += len;
  }
  return out;
}

type Edit = {
  kind: 'insert' | 'delete' | 'overwrite' | 'zero' | 'move';
  at: number;
  len: number;
  seed: number;
};

const editArb: fc.Arbitrary<Edit> = fc.record({
  kind: fc.constantFrom('insert', 'delete', 'overwrite', 'zero', 'move'),
  at: fc.nat(),
  len: fc.integer({ min: 1, max: 20_000 }),
  seed: fc.integer({ min: 1, max: 0x7fffffff }),
});

/** Apply edits to a copy of the source; result trimmed/zero-padded to `blocks` whole blocks. */
function makeTarget(source: Uint8Array, edits: readonly Edit[], blocks: number): Uint8Array {
  let cur = Buffer.from(source);
  for (const e of edits) {
    const at = e.at % (cur.length + 1);
    const rand = prng(e.seed);
    const fresh = Buffer.from(Array.from({ length: e.len }, () => rand() & 0xff));
    if (e.kind === 'insert') cur = Buffer.concat([cur.subarray(0, at), fresh, cur.subarray(at)]);
    else if (e.kind === 'delete') cur = Buffer.concat([cur.subarray(0, at), cur.subarray(at + e.len)]);
    else if (e.kind === 'overwrite') fresh.copy(cur, at, 0, Math.min(e.len, cur.length - at));
    else if (e.kind === 'zero') cur.fill(0, at, Math.min(cur.length, at + e.len));
    else {
      // move: cut a region and re-insert it elsewhere (shifted content).
      const region = Buffer.from(cur.subarray(at, at + e.len));
      const rest = Buffer.concat([cur.subarray(0, at), cur.subarray(at + e.len)]);
      const to = (e.seed % (rest.length + 1)) | 0;
      cur = Buffer.concat([rest.subarray(0, to), region, rest.subarray(to)]);
    }
  }
  const out = new Uint8Array(blocks * BLOCK);
  out.set(cur.subarray(0, out.length));
  return out;
}

describe('diff + apply round trip', () => {
  it('reproduces the target exactly after inserted, deleted, moved, overwritten and zeroed regions', async () => {
    await withTempDir(async (dir) => {
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1, max: 0x7fffffff }),
          fc.integer({ min: 1, max: 48 }),
          fc.integer({ min: 1, max: 48 }),
          fc.array(editArb, { maxLength: 6 }),
          fc.constantFrom(8192, 65536, 2 * 1024 * 1024),
          async (seed, sourceBlocks, targetBlocks, edits, maxOpTargetBytes) => {
            const source = makeSource(seed, sourceBlocks);
            const target = makeTarget(source, edits, targetBlocks);
            const { delta, sourcePath } = await makeDelta(dir, source, target, { maxOpTargetBytes });
            const { output, result } = await applyBytes(
              dir,
              sourcePath,
              delta,
              digestVerifier(target, BLOCK),
              target.length,
            );
            expect(Buffer.from(output).equals(Buffer.from(target))).toBe(true);
            expect(result.blocksWritten).toBe(targetBlocks);
            expect(result.targetSha256Checked).toBe(true);
          },
        ),
        { numRuns: 40 },
      );
    });
  });

  it('sends much less than the target when only a small region changed', async () => {
    await withTempDir(async (dir) => {
      const source = makeSource(7, 256);
      const target = makeTarget(source, [{ kind: 'insert', at: 300_000, len: 100, seed: 3 }], 256);
      const { delta, result } = await makeDelta(dir, source, target);
      // The insert shifts everything after it by 100 bytes: block dedup alone would resend ~75%.
      expect(delta.length).toBeLessThan(4096);
      expect(result.opCounts.patch).toBeGreaterThan(0);
    });
  });
});

describe('large PATCH ops', () => {
  it("reproduces a PATCH op spanning several of the applier's 256 KiB output pieces", async () => {
    await withTempDir(async (dir) => {
      const source = makeSource(5, 512);
      // Inserts shift everything after them: the changed blocks form PATCH ops of up to 1 MiB.
      const target = makeTarget(
        source,
        [
          { kind: 'insert', at: 100_000, len: 3, seed: 9 },
          { kind: 'overwrite', at: 700_000, len: 5000, seed: 4 },
          { kind: 'insert', at: 1_500_000, len: 7000, seed: 2 },
        ],
        512,
      );
      const { delta, sourcePath, result } = await makeDelta(dir, source, target);
      expect(result.targetBytes.patch).toBeGreaterThan(256 * 1024);
      const { output } = await applyBytes(
        dir,
        sourcePath,
        delta,
        digestVerifier(target, BLOCK),
        target.length,
      );
      expect(Buffer.from(output).equals(Buffer.from(target))).toBe(true);
    });
  });
});

describe('corrupted deltas', () => {
  it('refuses every flipped byte and every truncation with a DeltaError, never a wrong target', async () => {
    await withTempDir(async (dir) => {
      const source = makeSource(11, 24);
      const target = makeTarget(
        source,
        [
          { kind: 'insert', at: 5000, len: 3000, seed: 5 },
          { kind: 'zero', at: 40_000, len: 9000, seed: 1 },
          { kind: 'overwrite', at: 70_000, len: 5000, seed: 9 },
        ],
        24,
      );
      const { delta, sourcePath } = await makeDelta(dir, source, target);
      const verifier = digestVerifier(target, BLOCK);
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.record({ flipAt: fc.nat(delta.length - 1), mask: fc.integer({ min: 1, max: 255 }) }),
            fc.record({ truncateTo: fc.nat(delta.length - 1) }),
            fc.record({ append: fc.integer({ min: 1, max: 100 }) }),
          ),
          async (damage) => {
            let bad: Uint8Array;
            if ('flipAt' in damage) {
              bad = Uint8Array.from(delta);
              bad[damage.flipAt]! ^= damage.mask;
            } else if ('truncateTo' in damage) {
              bad = delta.subarray(0, damage.truncateTo);
            } else {
              bad = Buffer.concat([delta, Buffer.alloc(damage.append, 7)]);
            }
            const err = await applyBytes(dir, sourcePath, bad, verifier, target.length).then(
              () => undefined,
              (e: unknown) => e,
            );
            expect(err).toBeInstanceOf(DeltaError);
          },
        ),
        { numRuns: 150 },
      );
    });
  });
});
