// The database side of rollouts: loading the offerable rollouts (for the poll cache), a
// device's progress in them, a rollout's measured progress, and applying one stage transition
// with a conditional UPDATE so that exactly one replica wins it (and audits it).
import { and, count, eq, inArray, isNotNull, isNull, notInArray, sql } from 'drizzle-orm';
import type { Db } from '../db/database.js';
import { auditLog, devices, releases, rolloutDevices, rollouts } from '../db/schema.js';
import {
  DEVICE_ERROR_STATE,
  type MaintenanceWindow,
  OUTCOME_STATES,
  type RolloutKind,
  type RolloutLifecycle,
  type Selector,
  type StageSpec,
  TRIAL_ARMED_STATES,
} from './model.js';
import type { OfferCandidate } from './offer.js';
import { inFrozenPopulation } from './late-joiners.js';
import { measureProgress, type StageProgress } from './progress.js';
import { type BakeOptions, loadProgressSql } from './progress-sql.js';
import { type CountedRollout, loadProgressCounted } from './counters.js';
import type { SelectableDevice } from './selector.js';

/** What the poll path needs about an offerable rollout, cached per process (cache.ts). */
export interface CachedRollout extends OfferCandidate {
  releaseId: string;
  manifestJws: string;
  stageStartedAt: Date;
  /** false: the population is frozen at start (late-joiners.ts). */
  lateJoiners: boolean;
  /** The automatic rollback policy (auto-rollback.ts); null = off. */
  autoRollback: RolloutRow['autoRollback'];
}

export type RolloutRow = typeof rollouts.$inferSelect;
type ReleaseRow = typeof releases.$inferSelect;

export function toCandidate(
  r: RolloutRow,
  rel: Pick<ReleaseRow, 'id' | 'version' | 'compatible' | 'manifestJws'>,
): CachedRollout {
  return {
    rolloutId: r.id,
    kind: r.kind as RolloutKind,
    state: r.state as RolloutLifecycle,
    product: r.product,
    selector: r.selector as Selector,
    allowDowngrade: r.allowDowngrade,
    releaseVersion: rel.version,
    releaseCompatible: rel.compatible,
    stages: r.stages as StageSpec[],
    currentStage: r.currentStage,
    startedAt: r.startedAt,
    maintenanceWindow: (r.maintenanceWindow ?? null) as MaintenanceWindow | null,
    releaseId: rel.id,
    manifestJws: rel.manifestJws,
    stageStartedAt: r.stageStartedAt,
    lateJoiners: r.lateJoiners,
    autoRollback: r.autoRollback ?? null,
  };
}

/** Every rollout that can still offer (active, or paused with installs to finish). */
export async function loadOfferableRollouts(db: Db): Promise<CachedRollout[]> {
  const rows = await db
    .select({ r: rollouts, rel: releases })
    .from(rollouts)
    .innerJoin(releases, eq(releases.id, rollouts.releaseId))
    .where(and(inArray(rollouts.state, ['active', 'paused']), eq(releases.yanked, false)));
  return rows.map(({ r, rel }) => toCandidate(r, rel));
}

/** Devices between offer and outcome (for maxConcurrent); a device stuck on its own error holds no place. */
export async function countInFlight(db: Db, rolloutId: string): Promise<number> {
  const [row] = await db
    .select({ n: count() })
    .from(rolloutDevices)
    .where(
      and(
        eq(rolloutDevices.rolloutId, rolloutId),
        notInArray(rolloutDevices.state, [...OUTCOME_STATES, DEVICE_ERROR_STATE]),
      ),
    );
  return Number(row?.n ?? 0);
}

export async function loadRollout(
  db: Db,
  id: string,
): Promise<{ row: RolloutRow; candidate: CachedRollout; release: ReleaseRow } | undefined> {
  const [found] = await db
    .select({ r: rollouts, rel: releases })
    .from(rollouts)
    .innerJoin(releases, eq(releases.id, rollouts.releaseId))
    .where(eq(rollouts.id, id))
    .limit(1);
  if (found === undefined) return undefined;
  return { row: found.r, candidate: toCandidate(found.r, found.rel), release: found.rel };
}

/**
 * Per-stage cohorts of one rollout: from its counters while it runs (counters.ts, O(stages)),
 * recounted from the fleet otherwise (progress-sql.ts; a draft or finished rollout has no
 * candidates kept). `state` absent: running.
 */
export function loadProgress(
  db: Db,
  rollout: CountedRollout & { state?: string },
  bake?: BakeOptions,
): Promise<StageProgress[]> {
  return rollout.state === undefined || RUNNING_STATES.has(rollout.state)
    ? loadProgressCounted(db, rollout, bake)
    : loadProgressSql(db, rollout, bake);
}

const RUNNING_STATES = new Set(['active', 'paused']);

/**
 * The same cohorts computed in this process from every device of the product and every member
 * (O(devices) rows read per call): the reference the SQL count is tested and benchmarked against.
 */
export async function loadProgressInMemory(
  db: Db,
  rollout: Parameters<typeof measureProgress>[0] & { lateJoiners?: boolean },
): Promise<StageProgress[]> {
  const from = rollout.selector.fromRollout;
  const [members, fleet, fromMembers] = await Promise.all([
    db
      .select({
        deviceId: rolloutDevices.deviceId,
        state: rolloutDevices.state,
        fetched: isNotNull(rolloutDevices.blobsFetchedAt),
      })
      .from(rolloutDevices)
      .where(eq(rolloutDevices.rolloutId, rollout.rolloutId)),
    db
      .select({
        id: devices.id,
        product: devices.product,
        hardware: devices.hardware,
        tags: devices.tags,
        currentVersion: devices.currentVersion,
      })
      .from(devices)
      .where(
        and(
          eq(devices.product, rollout.product),
          isNull(devices.decommissionedAt),
          rollout.lateJoiners === false ? inFrozenPopulation(rollout.rolloutId, devices.id) : undefined,
        ),
      ),
    from === undefined
      ? Promise.resolve([])
      : db
          .select({ deviceId: rolloutDevices.deviceId, state: rolloutDevices.state })
          .from(rolloutDevices)
          .where(eq(rolloutDevices.rolloutId, from)),
  ]);
  const fromSet = new Set(fromMembers.map((m) => m.deviceId));
  // Devices whose trial of the rolled-back release is armed commit it at their next boot
  // without asking the server: the rollback waits for them and then takes them back.
  const armed = new Set(fromMembers.filter((m) => TRIAL_ARMED_STATES.has(m.state)).map((m) => m.deviceId));
  const member = from === undefined ? undefined : new Set([from]);
  const none = new Set<string>();
  const selectable: SelectableDevice[] = fleet.map((d) => ({
    ...d,
    memberOf: member !== undefined && fromSet.has(d.id) ? member : none,
  }));
  // A decommissioned device will never report again: its unfinished offer must not hold the
  // rollout open (its outcome, if it had one, still counts).
  const live = new Set(fleet.map((d) => d.id));
  const counted = members.filter((m) => live.has(m.deviceId) || OUTCOME_STATES.has(m.state));
  const fetched = new Set(counted.filter((m) => m.fetched).map((m) => m.deviceId));
  return measureProgress(
    rollout,
    selectable,
    new Map(counted.map((m) => [m.deviceId, m.state])),
    armed,
    fetched,
  );
}

export const ENGINE_ACTOR = 'system:rollout-engine';

export type Transition =
  | { kind: 'advance'; toStage: number }
  | { kind: 'pause'; reason: string }
  | { kind: 'complete' };

/**
 * Applies a transition decided at stage `fromStage`, only if the rollout is still active at
 * that stage: the WHERE clause is the cross-replica guard (two replicas deciding the same thing
 * race on it and one updates zero rows). The audit row is written in the same transaction.
 */
export async function applyTransition(
  db: Db,
  rolloutId: string,
  fromStage: number,
  transition: Transition,
  now: Date,
  details: Record<string, unknown>,
  /** Runs in the same transaction once this process has won the transition (auto-rollback.ts). */
  after?: (tx: Db) => Promise<void>,
): Promise<boolean> {
  return db.transaction(async (tx) => {
    const set =
      transition.kind === 'advance'
        ? { currentStage: transition.toStage, stageStartedAt: now, updatedAt: now }
        : transition.kind === 'pause'
          ? { state: 'paused', stateReason: transition.reason, updatedAt: now }
          : { state: 'completed', stateReason: null, updatedAt: now };
    const updated = await tx
      .update(rollouts)
      .set(set)
      .where(
        and(eq(rollouts.id, rolloutId), eq(rollouts.state, 'active'), eq(rollouts.currentStage, fromStage)),
      )
      .returning({ id: rollouts.id });
    if (updated.length === 0) return false;
    await tx.insert(auditLog).values({
      actor: ENGINE_ACTOR,
      action: `rollout.${transition.kind === 'pause' ? 'auto-pause' : transition.kind}`,
      target: `rollout:${rolloutId}`,
      details: { fromStage, ...details },
      at: now,
    });
    await after?.(tx as unknown as Db);
    return true;
  });
}

/** Ids of running rollouts, for the periodic evaluation. */
export async function activeRolloutIds(db: Db): Promise<string[]> {
  const rows = await db.select({ id: rollouts.id }).from(rollouts).where(eq(rollouts.state, 'active'));
  return rows.map((r) => r.id);
}

export const ROLLOUT_CHANNEL = 'abota_rollouts';

/** Tells every replica (LISTEN abota_rollouts) that a rollout changed. */
export async function notifyRolloutChanged(db: Db, rolloutId: string): Promise<void> {
  await db.execute(sql`select pg_notify(${ROLLOUT_CHANNEL}, ${rolloutId})`);
}
