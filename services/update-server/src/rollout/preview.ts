// Dry run of a rollout (POST /v1/admin/rollouts/preview): the checks creation makes, then how
// many devices each stage would reach right now, counted in the database — the selector, the
// release's compatible hardware and the bucket of every device (bucket.ts, as SQL) are evaluated
// by PostgreSQL, and only aggregates come back: one row per running version, the few lowest
// buckets a stage's minDevices needs, and one row of per-stage range counts (one per time zone
// for a device-local window). Nothing is written. A device's stage depends on the rollout id, so
// the preview picks the id (or takes the one given) and creation with that id reaches exactly
// the cohorts counted here (what `rollout status` then reports as each stage's `targeted`).
import { randomUUID } from 'node:crypto';
import type { RolloutCreateSchema, RolloutPreviewSchema } from '@abota/api';
import {
  and,
  arrayContains,
  arrayOverlaps,
  count,
  eq,
  inArray,
  isNull,
  or,
  type SQL,
  sql,
} from 'drizzle-orm';
import type { Db } from '../db/database.js';
import { devices, releases, rollouts } from '../db/schema.js';
import { ServerError } from '../errors.js';
import { resolveAutoRollback } from './auto-rollback.js';
import { rolloutBucketSql } from './bucket.js';
import {
  type MaintenanceWindow,
  resolveStage,
  type Selector,
  type StageSpec,
  validateStages,
} from './model.js';
import { versionApplies } from './offer.js';
import { GROUP_TAG_PREFIX, parseVersionConstraint, versionSatisfies } from './selector.js';
import { stageBucketLimits } from './stage-limits.js';
import { validateWindow, windowOpen } from './window.js';

export type RolloutCreateBody = ReturnType<typeof RolloutCreateSchema.parse>;
export type RolloutPreview = ReturnType<typeof RolloutPreviewSchema.parse>;
type ReleaseRow = typeof releases.$inferSelect;

/** A rollout creation request after every check: what creation inserts and a preview counts. */
export interface RolloutPlan {
  /** Lowercase, as the uuid column returns it (the bucket hash is over this text). */
  id: string;
  release: ReleaseRow;
  selector: Selector;
  stages: StageSpec[];
  allowDowngrade: boolean;
  maintenanceWindow: MaintenanceWindow | null;
  /** The automatic rollback policy, resolved (auto-rollback.ts), or null. */
  autoRollback: Awaited<ReturnType<typeof resolveAutoRollback>> | null;
}

export function checkReleaseOfferable(release: ReleaseRow, now: Date): void {
  if (release.yanked)
    throw new ServerError('ERR_CONFLICT', `release ${release.product} ${release.version} is yanked`);
  if (release.expires <= now) {
    throw new ServerError(
      'ERR_CONFLICT',
      `release ${release.product} ${release.version} expired at ${release.expires.toISOString()}; devices would refuse it`,
    );
  }
}

export function checkStages(stages: Parameters<typeof validateStages>[0]): void {
  const problem = validateStages(stages);
  if (problem !== undefined) throw new ServerError('ERR_VALIDATION', `stages: ${problem}`);
}

/**
 * Every check rollout creation makes (stages, selector, window, the release, a free id), in the
 * same order, so a preview refuses exactly what creation would refuse, with the same error.
 */
export async function planRollout(db: Db, body: RolloutCreateBody, now: Date): Promise<RolloutPlan> {
  const stages = body.stages ?? [{ percent: 100 }];
  checkStages(stages);
  if (body.selector?.currentVersion !== undefined) {
    const parsed = parseVersionConstraint(body.selector.currentVersion);
    if (typeof parsed === 'string') throw new ServerError('ERR_VALIDATION', `selector.${parsed}`);
  }
  if (body.maintenanceWindow !== undefined) {
    const problem = validateWindow(body.maintenanceWindow);
    if (problem !== undefined) throw new ServerError('ERR_VALIDATION', problem);
  }
  const [release] = await db.select().from(releases).where(eq(releases.id, body.releaseId)).limit(1);
  if (release === undefined) throw new ServerError('ERR_NOT_FOUND', `no release ${body.releaseId}`);
  checkReleaseOfferable(release, now);
  const autoRollback =
    body.autoRollback === undefined || body.autoRollback === false
      ? null
      : await resolveAutoRollback(db, release, body.autoRollback, now);
  const id = (body.id ?? randomUUID()).toLowerCase();
  if (body.id !== undefined) {
    const [taken] = await db.select({ id: rollouts.id }).from(rollouts).where(eq(rollouts.id, id)).limit(1);
    if (taken !== undefined)
      throw new ServerError(
        'ERR_CONFLICT',
        `rollout ${id} exists already; preview again for a fresh id, or leave id out`,
      );
  }
  return {
    id,
    release,
    selector: body.selector ?? {},
    stages,
    allowDowngrade: body.allowDowngrade ?? false,
    maintenanceWindow: body.maintenanceWindow ?? null,
    autoRollback,
  };
}

const listed = (values: readonly string[] | undefined): values is readonly string[] =>
  values !== undefined && values.length > 0;

/** selectorPicks (selector.ts) as SQL, except the version constraint (semver order: done per version). */
function selectorSql(selector: Selector, product: string): SQL | undefined {
  const where: SQL[] = [];
  if (selector.product !== undefined && selector.product !== product) where.push(sql`false`);
  if (listed(selector.hardware)) where.push(inArray(devices.hardware, [...selector.hardware]));
  if (listed(selector.tags)) where.push(arrayContains(devices.tags, [...selector.tags]));
  if (listed(selector.groups))
    where.push(
      arrayOverlaps(
        devices.tags,
        selector.groups.map((g) => `${GROUP_TAG_PREFIX}${g}`),
      ),
    );
  // As text: selectorPicks compares the id strings exactly, a uuid comparison would ignore case.
  if (listed(selector.deviceIds)) where.push(inArray(sql`${devices.id}::text`, [...selector.deviceIds]));
  if (selector.fromRollout !== undefined)
    throw new ServerError('ERR_VALIDATION', 'a preview cannot select by membership of another rollout');
  return where.length === 0 ? undefined : and(...where);
}

/** How many devices each stage of the planned rollout would reach now. Read-only. */
export async function previewRollout(db: Db, plan: RolloutPlan, now: Date): Promise<RolloutPreview> {
  const { release, selector, stages } = plan;
  const product = release.product;
  const live = and(eq(devices.product, product), isNull(devices.decommissionedAt));
  const compatible =
    release.compatible.length > 0 ? inArray(devices.hardware, [...release.compatible]) : sql`false`;
  const picked = selectorSql(selector, product) ?? sql`true`;
  const clauses =
    selector.currentVersion === undefined ? undefined : parseVersionConstraint(selector.currentVersion);
  if (typeof clauses === 'string') throw new ServerError('ERR_VALIDATION', `selector.${clauses}`);

  // One snapshot for the three queries: a device reporting meanwhile cannot be counted twice.
  return db.transaction(
    async (tx) => {
      // 1. The funnel, one row per (running version, selected, compatible).
      const byVersion = await tx
        .select({
          version: devices.currentVersion,
          selected: sql<boolean>`(${picked})`,
          compatible: sql<boolean>`(${compatible})`,
          n: count(),
        })
        .from(devices)
        .where(live)
        .groupBy(devices.currentVersion, sql`2`, sql`3`);
      const funnel = {
        product: 0,
        selected: 0,
        incompatible: 0,
        upToDate: 0,
        eligible: 0,
        beyondLastStage: 0,
      };
      const versions = new Map<
        string | null,
        { version: string | null; selected: number; eligible: number }
      >();
      const eligibleVersions: string[] = [];
      let eligibleUnreported = false;
      for (const row of byVersion) {
        funnel.product += row.n;
        if (!row.selected) continue;
        if (clauses !== undefined && (row.version === null || !versionSatisfies(row.version, clauses)))
          continue;
        funnel.selected += row.n;
        const v = versions.get(row.version) ?? { version: row.version, selected: 0, eligible: 0 };
        versions.set(row.version, v);
        v.selected += row.n;
        if (!row.compatible) {
          funnel.incompatible += row.n;
          continue;
        }
        if (
          !versionApplies(
            { releaseVersion: release.version, allowDowngrade: plan.allowDowngrade },
            row.version,
          )
        ) {
          funnel.upToDate += row.n;
          continue;
        }
        funnel.eligible += row.n;
        v.eligible += row.n;
        if (row.version === null) eligibleUnreported = true;
        else if (!eligibleVersions.includes(row.version)) eligibleVersions.push(row.version);
      }
      const versionIn = [
        ...(eligibleVersions.length > 0 ? [inArray(devices.currentVersion, eligibleVersions)] : []),
        ...(eligibleUnreported ? [isNull(devices.currentVersion)] : []),
      ];
      const eligible = and(live, picked, compatible, or(...versionIn));
      const bucket = rolloutBucketSql(plan.id, devices.id);

      // 2. The lowest buckets, as many as the largest minDevices needs (stage-limits.ts widens
      //    a stage to its minDevices lowest-bucket devices; the rest of the order is not needed).
      const need = Math.min(funnel.eligible, Math.max(0, ...stages.map((s) => resolveStage(s).minDevices)));
      const lowest =
        need === 0
          ? []
          : await tx.select({ b: bucket }).from(devices).where(eligible).orderBy(sql`1`).limit(need);
      const limits = stageBucketLimits(
        stages,
        lowest.map((r) => Number(r.b)),
      );

      // 3. Every stage's cohort: devices whose bucket is in [previous limit, limit).
      const window = plan.maintenanceWindow;
      const byZone = window?.timezone === 'device-local';
      const e = tx
        .select({
          b: bucket.as('b'),
          tz: (byZone ? sql<string | null>`${devices.attributes}->>'timezone'` : sql<null>`null::text`).as(
            'tz',
          ),
        })
        .from(devices)
        .where(eligible)
        .as('e');
      const ranges = Object.fromEntries(
        limits.map((limit, i) => [
          `s${i}`,
          sql<number>`count(*) filter (where ${e.b} >= ${i === 0 ? 0 : (limits[i - 1] ?? 0)} and ${e.b} < ${limit})`.mapWith(
            Number,
          ),
        ]),
      );
      const cohorts =
        versionIn.length === 0
          ? []
          : await tx
              .select({ tz: e.tz, ...ranges })
              .from(e)
              .groupBy(e.tz);

      let cumulative = 0;
      const stageViews = stages.map((spec, i) => {
        const s = resolveStage(spec);
        let targeted = 0;
        let inWindowNow = 0;
        for (const row of cohorts) {
          const n = Number((row as Record<string, unknown>)[`s${i}`] ?? 0);
          targeted += n;
          if (windowOpen(window, now, row.tz ?? undefined)) inWindowNow += n;
        }
        cumulative += targeted;
        return {
          stage: i,
          percent: s.percent,
          minDevices: s.minDevices,
          maxConcurrent: s.maxConcurrent ?? null,
          bucketLimit: limits[i] ?? 0,
          targeted,
          cumulative,
          inWindowNow,
        };
      });
      funnel.beyondLastStage = funnel.eligible - cumulative;
      return {
        rolloutId: plan.id,
        releaseId: release.id,
        releaseVersion: release.version,
        product,
        devices: funnel,
        versions: [...versions.values()].sort((a, b) => b.selected - a.selected),
        stages: stageViews,
        maintenanceWindow: window,
        at: now.toISOString(),
      };
    },
    { isolationLevel: 'repeatable read', accessMode: 'read only' },
  );
}
