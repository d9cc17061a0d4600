// diff's progress reports and its stop signal (used by `abota release build --delta-from` and
// `release add-delta` for their progress bars and Ctrl-C): every phase reports up to its total,
// and an abort in any phase throws the signal's reason and leaves no file behind.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type DiffProgress, diff } from '../src/index.js';

const MIB = 1024 * 1024;
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'abota-diff-signal-'));
  // 12 MiB source; target = source with 3 MiB of new data in the middle (3 encode ops).
  const source = randomBytes(12 * MIB);
  const target = Buffer.from(source);
  randomBytes(3 * MIB).copy(target, 4 * MIB);
  await writeFile(join(dir, 'old.img'), source);
  await writeFile(join(dir, 'new.img'), target);
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const options = (signal?: AbortSignal, onProgress?: (p: DiffProgress) => void) => ({
  sourcePath: join(dir, 'old.img'),
  targetPath: join(dir, 'new.img'),
  outPath: join(dir, 'out.delta'),
  brotliQuality: 1,
  ...(signal === undefined ? {} : { signal }),
  ...(onProgress === undefined ? {} : { onProgress }),
});

describe('diff progress and abort', () => {
  it('reports source, target and encode progress in order, each reaching its total', async () => {
    const seen: DiffProgress[] = [];
    await diff(options(undefined, (p) => seen.push({ ...p })));
    const phases = [...new Set(seen.map((p) => p.phase))];
    expect(phases).toEqual(['source', 'target', 'encode']);
    for (const phase of phases) {
      const of = seen.filter((p) => p.phase === phase);
      for (let i = 1; i < of.length; i++) expect(of[i]!.doneBytes).toBeGreaterThan(of[i - 1]!.doneBytes);
      expect(of.at(-1)!.doneBytes).toBe(of.at(-1)!.totalBytes);
    }
    expect(seen.find((p) => p.phase === 'source')!.totalBytes).toBe(12 * MIB);
    expect(seen.find((p) => p.phase === 'encode')!.totalBytes).toBe(3 * MIB);
  });

  for (const phase of ['source', 'target', 'encode'] as const) {
    it(`an abort during ${phase} throws the signal's reason and leaves no output or temporary file`, async () => {
      const stop = new AbortController();
      const reason = new Error(`stopped in ${phase}`);
      const err = await diff(
        options(stop.signal, (p) => {
          if (p.phase === phase) stop.abort(reason);
        }),
      ).catch((e: unknown) => e);
      expect(err).toBe(reason);
      expect((await readdir(dir)).sort()).toEqual(['new.img', 'old.img']);
    });
  }
});
