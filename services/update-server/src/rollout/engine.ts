// The rollout runtime of one server process: answers "what does this device get" from the
// cache, evaluates running rollouts on a timer and shortly after device outcomes, applies the
// engine's transitions (one replica wins each, store.ts), and keeps every replica's cache fresh
// through PostgreSQL LISTEN/NOTIFY.
import type { Clock } from '../clock.js';
import type { Database, Db } from '../db/database.js';
import type { Logger } from '../logger.js';
import { type AutoRollbackResult, crossedFailureThreshold, startAutoRollback } from './auto-rollback.js';
import { RolloutCache } from './cache.js';
import { bakeSecondsOf } from './health.js';
import { outsideFrozen } from './late-joiners.js';
import { OUTCOME_STATES } from './model.js';
import { chooseOffer, type Offer, type OfferDevice } from './offer.js';
import type { StageDecision } from './stages.js';
import { evaluateStage } from './stages.js';
import {
  activeRolloutIds,
  applyTransition,
  type CachedRollout,
  countInFlight,
  loadOfferableRollouts,
  loadProgress,
  loadRollout,
  notifyRolloutChanged,
  ROLLOUT_CHANNEL,
} from './store.js';

export interface RolloutEngineOptions {
  db: Db;
  clock: Clock;
  logger: Logger;
  /** Cross-replica cache invalidation (Database.listen); without it only local changes invalidate. */
  listen?: Database['listen'] | undefined;
  /** Upper bound on cache staleness if a notification is lost. */
  cacheTtlMs?: number;
  /** Delay that coalesces the evaluations device outcomes trigger. */
  reportEvaluationDelayMs?: number;
}

export interface EvaluationResult {
  rolloutId: string;
  decision: StageDecision;
  /** Whether this process applied it (false: waiting, or another replica got there first). */
  applied: boolean;
  /** The rollback rollout this process started by the automatic rollback policy (auto-rollback.ts). */
  rollbackRolloutId?: string;
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

export class RolloutEngine {
  readonly cache: RolloutCache;
  readonly #db: Db;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #listen: Database['listen'] | undefined;
  readonly #reportDelayMs: number;
  #unlisten: (() => Promise<void>) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #tick: Promise<unknown> | undefined;
  readonly #scheduled = new Map<string, Promise<void>>();
  readonly #dirty = new Set<string>();
  #stopped = false;
  readonly #listeners = new Set<(rolloutId: string | undefined) => void>();
  /** rolloutId → each stage's bucket limit with minDevices applied (measured with the fleet). */
  readonly #stageLimits = new Map<string, Promise<number[]>>();

  constructor(options: RolloutEngineOptions) {
    this.#db = options.db;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#listen = options.listen;
    this.#reportDelayMs = options.reportEvaluationDelayMs ?? 250;
    this.cache = new RolloutCache(
      () => loadOfferableRollouts(this.#db),
      options.cacheTtlMs === undefined ? {} : { ttlMs: options.cacheTtlMs },
    );
  }

  /** Starts listening for other replicas' changes and evaluating every `intervalMs`. */
  async start(options: { intervalMs?: number } = {}): Promise<void> {
    this.#stopped = false;
    if (this.#listen !== undefined && this.#unlisten === undefined) {
      this.#unlisten = await this.#listen(ROLLOUT_CHANNEL, (payload) => {
        this.cache.invalidate();
        this.#stageLimits.clear();
        this.#emit(payload);
      });
    }
    const intervalMs = options.intervalMs ?? 5000;
    if (intervalMs > 0 && this.#timer === undefined) {
      this.#timer = setInterval(() => {
        // One periodic run at a time per process; a slow database skips ticks instead of piling up.
        if (this.#tick !== undefined) return;
        this.#tick = this.evaluateAll()
          .catch((error: unknown) =>
            this.#logger.warn({ err: { message: message(error) } }, 'rollout evaluation failed'),
          )
          .finally(() => {
            this.#tick = undefined;
          });
      }, intervalMs);
      this.#timer.unref();
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.idle();
    await this.#unlisten?.();
    this.#unlisten = undefined;
  }

  /** Resolves when no evaluation started by this process is running or scheduled. */
  async idle(): Promise<void> {
    while (this.#tick !== undefined || this.#scheduled.size > 0) {
      await Promise.allSettled([this.#tick, ...this.#scheduled.values()]);
    }
  }

  /**
   * Calls `listener` whenever a rollout changes, here or on another replica (`undefined`: maybe
   * several, after a lost LISTEN connection). Returns the unsubscribe function.
   */
  onChange(listener: (rolloutId: string | undefined) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(rolloutId: string | undefined): void {
    for (const listener of this.#listeners) listener(rolloutId);
  }

  /** A rollout changed here: drop this cache now and tell the other replicas. */
  async changed(rolloutId: string): Promise<void> {
    this.cache.invalidate();
    this.#stageLimits.delete(rolloutId);
    this.#emit(rolloutId);
    try {
      await notifyRolloutChanged(this.#db, rolloutId);
    } catch (error) {
      // The change is committed; other replicas catch up when their cache TTL runs out.
      this.#logger.warn(
        { rolloutId, err: { message: message(error) } },
        'rollout change notification failed',
      );
    }
  }

  /**
   * Rollouts whose progress rows a poll must read: every cached offerable rollout plus those a
   * rollback selects devices from. The poll statement reads them with the device check (one round trip).
   */
  async progressRolloutIds(): Promise<string[]> {
    const ids = new Set<string>();
    for (const c of await this.cache.all()) {
      ids.add(c.rolloutId);
      if (c.selector.fromRollout !== undefined) ids.add(c.selector.fromRollout);
    }
    return [...ids];
  }

  /** The offer for a polling device, from cached rollouts plus the device's own progress. */
  async offerFor(
    device: OfferDevice,
    progress: ReadonlyMap<string, string>,
  ): Promise<Offer<CachedRollout> | undefined> {
    const now = this.#clock.now();
    let candidates = await this.cache.forProduct(device.product);
    if (candidates.length === 0) return undefined;
    // Rollouts with a frozen population (late-joiners.ts): a device that joined since is not offered.
    const frozen = candidates.filter(
      (c) => c.state === 'active' && !c.lateJoiners && !progress.has(c.rolloutId),
    );
    if (frozen.length > 0) {
      const outside = await outsideFrozen(
        this.#db,
        device.id,
        frozen.map((c) => c.rolloutId),
      );
      if (outside.size > 0) candidates = candidates.filter((c) => !outside.has(c.rolloutId));
    }
    const capped = candidates.filter(
      (c) =>
        c.state === 'active' &&
        c.stages[c.currentStage]?.maxConcurrent !== undefined &&
        !progress.has(c.rolloutId),
    );
    if (capped.length > 0) {
      const inFlight = new Map(
        await Promise.all(
          capped.map(async (c) => [c.rolloutId, await countInFlight(this.#db, c.rolloutId)] as const),
        ),
      );
      candidates = candidates.map((c) =>
        inFlight.has(c.rolloutId) ? { ...c, inFlight: inFlight.get(c.rolloutId) } : c,
      );
    }
    candidates = await Promise.all(
      candidates.map(async (c) =>
        c.state === 'active' ? { ...c, stageBucketLimit: (await this.#limitsOf(c))[c.currentStage] } : c,
      ),
    );
    return chooseOffer({ ...device, memberOf: new Set(progress.keys()) }, candidates, progress, now);
  }

  /**
   * Stage limits of a rollout: from its last evaluation, else measured now (once per process
   * until the rollout changes; the periodic evaluation refreshes them as devices register).
   */
  #limitsOf(c: CachedRollout): Promise<number[]> {
    let limits = this.#stageLimits.get(c.rolloutId);
    if (limits === undefined) {
      limits = loadProgress(this.#db, c).then((p) => p.map((s) => s.bucketLimit));
      limits.catch(() => this.#stageLimits.delete(c.rolloutId));
      this.#stageLimits.set(c.rolloutId, limits);
    }
    return limits;
  }

  /** Called after a device report: outcomes re-evaluate their rollout soon (coalesced). */
  afterReport(rolloutId: string, state: string): void {
    // A healthy report may complete a device's bake window (health.ts).
    if (!(OUTCOME_STATES.has(state) || state === 'healthy') || this.#stopped) return;
    if (this.#scheduled.has(rolloutId)) {
      this.#dirty.add(rolloutId);
      return;
    }
    const run = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.#reportDelayMs);
      timer.unref();
    })
      .then(() => this.evaluate(rolloutId))
      .then(
        () => {},
        (error: unknown) =>
          this.#logger.warn({ rolloutId, err: { message: message(error) } }, 'rollout evaluation failed'),
      )
      .finally(() => {
        this.#scheduled.delete(rolloutId);
        if (this.#dirty.delete(rolloutId)) this.afterReport(rolloutId, 'committed');
      });
    this.#scheduled.set(rolloutId, run);
  }

  /** Evaluates every running rollout once (the timer's job; tests call it after moving the clock). */
  async evaluateAll(): Promise<EvaluationResult[]> {
    const results: EvaluationResult[] = [];
    for (const id of await activeRolloutIds(this.#db)) {
      const result = await this.evaluate(id);
      if (result !== undefined) results.push(result);
    }
    return results;
  }

  /** Evaluates one rollout and applies its decision; undefined when it is not running. */
  async evaluate(rolloutId: string): Promise<EvaluationResult | undefined> {
    const loaded = await loadRollout(this.#db, rolloutId);
    if (loaded === undefined || loaded.row.state !== 'active') return undefined;
    const { candidate, row } = loaded;
    const now = this.#clock.now();
    const progress = await loadProgress(this.#db, candidate, {
      now,
      bakeSeconds: bakeSecondsOf(candidate.stages[row.currentStage]),
    });
    this.#stageLimits.set(rolloutId, Promise.resolve(progress.map((p) => p.bucketLimit)));
    const decision = evaluateStage({
      stages: candidate.stages,
      currentStage: row.currentStage,
      stageStartedAt: row.stageStartedAt,
      progress,
      now,
    });
    if (decision.action === 'wait') return { rolloutId, decision, applied: false };
    const transition =
      decision.action === 'advance'
        ? { kind: 'advance' as const, toStage: decision.toStage }
        : decision.action === 'pause'
          ? { kind: 'pause' as const, reason: decision.reason }
          : { kind: 'complete' as const };
    // The automatic rollback policy runs in the transaction of the pause this process wins.
    const policy = candidate.autoRollback;
    let rolledBack: AutoRollbackResult | undefined;
    const after =
      decision.action === 'pause' && policy !== null && crossedFailureThreshold(decision.numbers)
        ? async (tx: Db) => {
            rolledBack = await startAutoRollback(tx, {
              rollout: candidate,
              policy,
              reason: decision.reason,
              numbers: decision.numbers,
              now,
            });
          }
        : undefined;
    const applied = await applyTransition(
      this.#db,
      rolloutId,
      row.currentStage,
      transition,
      now,
      {
        reason: decision.reason,
        numbers: decision.numbers,
        ...(decision.action === 'advance' ? { toStage: decision.toStage } : {}),
      },
      after,
    );
    if (applied) {
      this.#logger.info(
        { rolloutId, action: decision.action, stage: row.currentStage, numbers: decision.numbers },
        decision.reason,
      );
      await this.changed(rolloutId);
      if (rolledBack !== undefined && 'rollbackId' in rolledBack) {
        this.#logger.warn(
          { rolloutId, rollbackRolloutId: rolledBack.rollbackId, toVersion: rolledBack.toVersion },
          'automatic rollback started',
        );
        await this.changed(rolledBack.rollbackId);
        return { rolloutId, decision, applied, rollbackRolloutId: rolledBack.rollbackId };
      }
      if (rolledBack !== undefined)
        this.#logger.error({ rolloutId, problem: rolledBack.problem }, 'automatic rollback not possible');
    }
    return { rolloutId, decision, applied };
  }
}
