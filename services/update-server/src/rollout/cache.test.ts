import { describe, expect, it } from 'vitest';
import { RolloutCache } from './cache.js';
import type { CachedRollout } from './store.js';

const rollout = (rolloutId: string, product: string) => ({ rolloutId, product }) as CachedRollout;

/** A loader whose calls the test completes by hand. */
function manualLoader() {
  const pending: ((rows: CachedRollout[]) => void)[] = [];
  return {
    load: () => new Promise<CachedRollout[]>((resolve) => pending.push(resolve)),
    pending,
  };
}

describe('RolloutCache', () => {
  it('loads once for concurrent callers, serves products from memory, and reloads after invalidation', async () => {
    const loader = manualLoader();
    const cache = new RolloutCache(loader.load);
    const a = cache.forProduct('p');
    const b = cache.forProduct('q');
    expect(loader.pending).toHaveLength(1);
    loader.pending[0]?.([rollout('r1', 'p'), rollout('r2', 'q'), rollout('r3', 'p')]);
    expect((await a).map((r) => r.rolloutId)).toEqual(['r1', 'r3']);
    expect((await b).map((r) => r.rolloutId)).toEqual(['r2']);
    expect(await cache.forProduct('none')).toEqual([]);
    expect(cache.loads).toBe(1);
    cache.invalidate();
    const c = cache.forProduct('p');
    loader.pending[1]?.([]);
    expect(await c).toEqual([]);
    expect(cache.loads).toBe(2);
  });

  it('does not keep a result loaded before an invalidation that arrived meanwhile', async () => {
    const loader = manualLoader();
    const cache = new RolloutCache(loader.load);
    const stale = cache.forProduct('p');
    cache.invalidate(); // e.g. a NOTIFY for a pause, while the old rows are in flight
    const fresh = cache.forProduct('p');
    expect(loader.pending).toHaveLength(2);
    loader.pending[0]?.([rollout('old', 'p')]);
    loader.pending[1]?.([]);
    expect((await stale).map((r) => r.rolloutId)).toEqual(['old']);
    expect(await fresh).toEqual([]);
    // The kept entry is the fresh one: no third load, and no resurrected "old".
    expect(await cache.forProduct('p')).toEqual([]);
    expect(loader.pending).toHaveLength(2);
  });

  it('reloads after the TTL even without an invalidation', async () => {
    let loads = 0;
    const cache = new RolloutCache(
      async () => {
        loads++;
        return [];
      },
      { ttlMs: 30 },
    );
    await cache.forProduct('p');
    await cache.forProduct('p');
    expect(loads).toBe(1);
    await new Promise((r) => setTimeout(r, 40));
    await cache.all();
    expect(loads).toBe(2);
  });
});
