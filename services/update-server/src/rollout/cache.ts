// Per-process cache of the offerable rollouts, so a poll costs one small progress lookup
// instead of a join over rollouts and releases. Invalidated by this process's own changes at
// once, by other replicas through PostgreSQL NOTIFY (engine.ts), and after `ttlMs` regardless,
// as a bound on staleness should a notification ever be lost.
import type { CachedRollout } from './store.js';

export class RolloutCache {
  #entries: Map<string, CachedRollout[]> | undefined;
  #loadedAtMs = 0;
  #generation = 0;
  #loading: { generation: number; promise: Promise<Map<string, CachedRollout[]>> } | undefined;
  readonly #load: () => Promise<CachedRollout[]>;
  readonly #ttlMs: number;
  /** How many times the database was read (tests and metrics). */
  loads = 0;

  constructor(load: () => Promise<CachedRollout[]>, options: { ttlMs?: number } = {}) {
    this.#load = load;
    this.#ttlMs = options.ttlMs ?? 10_000;
  }

  /** Offerable rollouts of a product (any order; the offer decision sorts by precedence). */
  async forProduct(product: string): Promise<CachedRollout[]> {
    const entries = this.#entries;
    if (entries !== undefined && performance.now() - this.#loadedAtMs < this.#ttlMs)
      return entries.get(product) ?? [];
    return (await this.#reload()).get(product) ?? [];
  }

  /** Every offerable rollout, all products. */
  async all(): Promise<CachedRollout[]> {
    const entries =
      this.#entries !== undefined && performance.now() - this.#loadedAtMs < this.#ttlMs
        ? this.#entries
        : await this.#reload();
    return [...entries.values()].flat();
  }

  invalidate(): void {
    this.#generation++;
    this.#entries = undefined;
  }

  #reload(): Promise<Map<string, CachedRollout[]>> {
    const generation = this.#generation;
    if (this.#loading !== undefined && this.#loading.generation === generation) return this.#loading.promise;
    const startedMs = performance.now();
    const promise = this.#load().then((rows) => {
      this.loads++;
      const byProduct = new Map<string, CachedRollout[]>();
      for (const r of rows) {
        const list = byProduct.get(r.product);
        if (list === undefined) byProduct.set(r.product, [r]);
        else list.push(r);
      }
      // An invalidation that arrived while loading makes this result stale: use it for the
      // callers that asked before, but do not keep it.
      if (this.#generation === generation) {
        this.#entries = byProduct;
        this.#loadedAtMs = startedMs;
      }
      return byProduct;
    });
    this.#loading = { generation, promise };
    promise.then(
      () => {
        if (this.#loading?.promise === promise) this.#loading = undefined;
      },
      () => {
        if (this.#loading?.promise === promise) this.#loading = undefined;
      },
    );
    return promise;
  }
}
