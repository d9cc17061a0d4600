// What the console's rollout pages read besides the status document (routes/admin/rollouts.ts
// statusOf): a page of rollouts with their members counted by state, the rollout's failure rate
// over time, and its timeline (the audit log). Each is one indexed query: rollout_devices by its
// (rollout_id, device_id) key, audit_log by its target index.
//
// The failure rate over time is computed from rollout_devices, not sampled: each member's outcome
// (committed, failed, rolled back) counted at the time it was reached (updated_at), cumulated, and
// judged like the engine judges it (stages.ts): failures over outcomes of the whole rollout, a
// failure without any download not counted (issue #16). It is the history of the outcomes as they
// stand now — a device that committed and later rolled back counts as a failure from that moment,
// not as a commit before it. The threshold drawn with it is the maxFailurePercent of the stage in
// effect at each time, the stage taken from the `rollout.advance` records of the audit log.
import { and, asc, desc, eq, inArray, lt, or, type SQL, sql } from 'drizzle-orm';
import type { AppDeps } from '../../context.js';
import { auditLog, releases, rolloutDevices, rollouts } from '../../db/schema.js';
import { resolveStage, type StageSpec } from '../../rollout/model.js';

export const ROLLOUTS_PAGE_SIZE = 50;

export interface RolloutListFilters {
  state?: string | undefined;
  product?: string | undefined;
  /** Keyset: the last rollout id of the previous page (newest first). */
  after?: string | undefined;
}

/** A page of rollouts, newest first, each with its members counted by state. */
export async function rolloutList(deps: Pick<AppDeps, 'db'>, f: RolloutListFilters) {
  const where: SQL[] = [];
  if (f.state !== undefined) where.push(eq(rollouts.state, f.state));
  if (f.product !== undefined) where.push(eq(rollouts.product, f.product));
  if (f.after !== undefined) {
    const [cursor] = await deps.db
      .select({ createdAt: rollouts.createdAt })
      .from(rollouts)
      .where(eq(rollouts.id, f.after))
      .limit(1);
    if (cursor !== undefined)
      where.push(
        or(
          lt(rollouts.createdAt, cursor.createdAt),
          and(eq(rollouts.createdAt, cursor.createdAt), lt(rollouts.id, f.after)),
        )!,
      );
  }
  const rows = await deps.db
    .select({ r: rollouts, version: releases.version })
    .from(rollouts)
    .innerJoin(releases, eq(releases.id, rollouts.releaseId))
    .where(and(...where))
    .orderBy(desc(rollouts.createdAt), desc(rollouts.id))
    .limit(ROLLOUTS_PAGE_SIZE + 1);
  const page = rows.slice(0, ROLLOUTS_PAGE_SIZE);
  const ids = page.map(({ r }) => r.id);
  const counts =
    ids.length === 0
      ? []
      : await deps.db
          .select({
            rolloutId: rolloutDevices.rolloutId,
            state: rolloutDevices.state,
            n: sql<number>`count(*)`.mapWith(Number),
          })
          .from(rolloutDevices)
          .where(inArray(rolloutDevices.rolloutId, ids))
          .groupBy(rolloutDevices.rolloutId, rolloutDevices.state);
  const byRollout = new Map<string, Record<string, number>>();
  for (const c of counts) {
    const m = byRollout.get(c.rolloutId) ?? {};
    m[c.state] = c.n;
    byRollout.set(c.rolloutId, m);
  }
  return {
    rows: page.map(({ r, version }) => ({ rollout: r, version, counts: byRollout.get(r.id) ?? {} })),
    next: rows.length > ROLLOUTS_PAGE_SIZE ? page.at(-1)?.r.id : undefined,
  };
}

export interface TimelineEntry {
  id: number;
  at: string;
  actor: string;
  action: string;
  details: Record<string, unknown>;
}

/** The rollout's audit records, oldest first (operator actions and the engine's decisions). */
export async function rolloutTimeline(deps: Pick<AppDeps, 'db'>, id: string, limit = 500) {
  const rows = await deps.db
    .select()
    .from(auditLog)
    .where(eq(auditLog.target, `rollout:${id}`))
    .orderBy(asc(auditLog.id))
    .limit(limit);
  return rows.map(
    (r): TimelineEntry => ({
      id: r.id,
      at: r.at.toISOString(),
      actor: r.actor,
      action: r.action,
      details: (r.details ?? {}) as Record<string, unknown>,
    }),
  );
}

export interface FailureSeries {
  /** Unix seconds, oldest first. */
  t: number[];
  /** Failed or rolled back (after downloading) over outcomes, percent, cumulative at t. */
  failurePercent: number[];
  /** maxFailurePercent of the stage in effect at t. */
  threshold: number[];
  outcomes: number[];
  failures: number[];
}

/** At most this many points, whatever the rollout's age: the bins widen instead. */
const MAX_POINTS = 120;

export async function failureSeries(
  deps: Pick<AppDeps, 'db' | 'clock'>,
  rollout: { id: string; stages: readonly StageSpec[]; startedAt: Date | null; createdAt: Date },
  timeline: readonly TimelineEntry[],
): Promise<FailureSeries> {
  const now = deps.clock.now();
  const start = rollout.startedAt ?? rollout.createdAt;
  const spanSeconds = Math.max(1, Math.ceil((now.getTime() - start.getTime()) / 1000));
  const step = Math.max(1, Math.ceil(spanSeconds / MAX_POINTS));
  const result = await deps.db.execute(sql`
    select extract(epoch from date_bin(${step} * interval '1 second', updated_at, ${start.toISOString()}::timestamptz))::bigint as t,
      count(*) filter (where state = 'committed')::int as committed,
      count(*) filter (where state in ('failed', 'rolled-back') and blobs_fetched_at is not null)::int as failed
    from ${rolloutDevices}
    where rollout_id = ${rollout.id} and state in ('committed', 'failed', 'rolled-back')
    group by 1 order by 1`);
  const rows = (result as unknown as { rows: { t: string | number; committed: number; failed: number }[] })
    .rows;
  const advances = timeline.filter((e) => e.action === 'rollout.advance').map((e) => Date.parse(e.at) / 1000);
  const stageAt = (t: number) => Math.min(rollout.stages.length - 1, advances.filter((a) => a <= t).length);
  const thresholdAt = (t: number) => {
    const spec = rollout.stages[stageAt(t)];
    return spec === undefined ? 100 : resolveStage(spec).maxFailurePercent;
  };
  const out: FailureSeries = { t: [], failurePercent: [], threshold: [], outcomes: [], failures: [] };
  const push = (t: number, outcomes: number, failures: number) => {
    out.t.push(t);
    out.outcomes.push(outcomes);
    out.failures.push(failures);
    out.failurePercent.push(outcomes === 0 ? 0 : Math.round((failures / outcomes) * 1000) / 10);
    out.threshold.push(thresholdAt(t));
  };
  const t0 = Math.floor(start.getTime() / 1000);
  push(t0, 0, 0);
  let outcomes = 0;
  let failures = 0;
  for (const r of rows) {
    outcomes += Number(r.committed) + Number(r.failed);
    failures += Number(r.failed);
    // A bin is drawn at its end (the counts are reached by then), never past now.
    push(Math.min(Number(r.t) + step, Math.floor(now.getTime() / 1000)), outcomes, failures);
  }
  const nowT = Math.floor(now.getTime() / 1000);
  if ((out.t.at(-1) ?? 0) < nowT) push(nowT, outcomes, failures);
  return out;
}
