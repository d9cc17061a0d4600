// Automatic fleet rollback (a rollout created with `autoRollback`): when a stage crosses its
// failure threshold the engine pauses the rollout (stages.ts) and, in the same transaction,
// aborts it and starts a rollback rollout to the release the policy names, for the devices the
// rollout reached — the same targeting as the operator's POST .../rollback (`fromRollout`: only
// devices that run the rolled-back release are offered it; those that fell back already run the
// older one). Exactly once across replicas: it runs only inside the transaction of the replica
// whose conditional pause UPDATE won (store.ts applyTransition), and the unique index
// rollouts_auto_rollback_uq allows one automatic rollback per rollout whatever happens.
import { and, desc, eq, gt } from 'drizzle-orm';
import type { Db } from '../db/database.js';
import { auditLog, releases, type RolloutAutoRollback, rollouts } from '../db/schema.js';
import { ServerError } from '../errors.js';
import type { DecisionNumbers } from './stages.js';
import { type CachedRollout, ENGINE_ACTOR } from './store.js';
import { compareVersions } from './version.js';

type ReleaseRow = typeof releases.$inferSelect;

/** Whether a pause decision is the failure threshold (not "no device committed" or the end of the last stage). */
export function crossedFailureThreshold(n: DecisionNumbers): boolean {
  return n.outcomes >= n.minSample && n.failures * 100 > n.maxFailurePercent * n.outcomes;
}

/** Why `target` cannot be the release devices of `from` return to now; undefined when it can. */
export function rollbackTargetProblem(
  target: Pick<ReleaseRow, 'id' | 'version' | 'yanked' | 'expires' | 'securityVersion'>,
  from: Pick<ReleaseRow, 'id' | 'version' | 'securityVersion'>,
  now: Date,
): string | undefined {
  if (target.id === from.id) return `the rollback release ${target.version} is the release being rolled out`;
  if (target.yanked) return `release ${target.version} is yanked`;
  if (target.expires <= now)
    return `release ${target.version} expired at ${target.expires.toISOString()}; devices would refuse it`;
  // Devices that committed `from` keep its security version as their floor (docs/trust-model.md).
  if (target.securityVersion < from.securityVersion)
    return `release ${target.version} has securityVersion ${target.securityVersion}, below ${from.version}'s ${from.securityVersion}: devices that committed ${from.version} would refuse it`;
  return undefined;
}

/**
 * The policy of a new rollout of `release`, resolved to one release now (so the operator sees
 * where devices would go): `toVersion`, or the newest earlier release that is not yanked or expired.
 */
export async function resolveAutoRollback(
  db: Pick<Db, 'select'>,
  release: ReleaseRow,
  policy: { toVersion?: string | undefined },
  now: Date,
): Promise<RolloutAutoRollback> {
  let target: ReleaseRow | undefined;
  if (policy.toVersion !== undefined) {
    [target] = await db
      .select()
      .from(releases)
      .where(and(eq(releases.product, release.product), eq(releases.version, policy.toVersion)))
      .limit(1);
    if (target === undefined)
      throw new ServerError(
        'ERR_NOT_FOUND',
        `autoRollback.toVersion: no release ${policy.toVersion} of product ${release.product}`,
      );
  } else {
    const rows = await db
      .select()
      .from(releases)
      .where(
        and(eq(releases.product, release.product), eq(releases.yanked, false), gt(releases.expires, now)),
      )
      .orderBy(desc(releases.createdAt))
      .limit(1000);
    for (const r of rows) {
      const below = compareVersions(r.version, release.version);
      if (below === undefined || below >= 0) continue;
      if (target === undefined || (compareVersions(r.version, target.version) ?? 0) > 0) target = r;
    }
    if (target === undefined)
      throw new ServerError(
        'ERR_CONFLICT',
        `autoRollback: product ${release.product} has no release earlier than ${release.version} to roll back to; push one or give autoRollback.toVersion`,
      );
  }
  const problem = rollbackTargetProblem(target, release, now);
  if (problem !== undefined) throw new ServerError('ERR_CONFLICT', `autoRollback: ${problem}`);
  return { toReleaseId: target.id, toVersion: target.version };
}

export interface AutoRollbackInput {
  rollout: Pick<CachedRollout, 'rolloutId' | 'product' | 'releaseId' | 'releaseVersion'>;
  policy: RolloutAutoRollback;
  /** The pause decision's reason and numbers (what caused the rollback, for the audit log). */
  reason: string;
  numbers: DecisionNumbers;
  now: Date;
}

export type AutoRollbackResult = { rollbackId: string; toVersion: string } | { problem: string };

/**
 * In the transaction that just paused the rollout: abort it and create the rollback rollout,
 * audited on both with the numbers. When the target release can no longer be offered (yanked or
 * expired since), the rollout stays paused and the refusal is audited instead.
 */
export async function startAutoRollback(tx: Db, input: AutoRollbackInput): Promise<AutoRollbackResult> {
  const { rollout, policy, now } = input;
  const cause = {
    reason: input.reason,
    stage: input.numbers.stage,
    failures: input.numbers.failures,
    outcomes: input.numbers.outcomes,
    failurePercent: input.numbers.failurePercent,
    maxFailurePercent: input.numbers.maxFailurePercent,
    minSample: input.numbers.minSample,
  };
  const found = await tx
    .select()
    .from(releases)
    .where(eq(releases.product, rollout.product))
    .then((rows) => ({
      target: rows.find((r) => r.id === policy.toReleaseId),
      from: rows.find((r) => r.id === rollout.releaseId),
    }));
  const problem =
    found.target === undefined || found.from === undefined
      ? `release ${policy.toVersion} no longer exists`
      : rollbackTargetProblem(found.target, found.from, now);
  const target = `rollout:${rollout.rolloutId}`;
  if (problem !== undefined) {
    await tx.insert(auditLog).values({
      actor: ENGINE_ACTOR,
      action: 'rollout.auto-rollback-failed',
      target,
      details: { toVersion: policy.toVersion, problem, cause },
      at: now,
    });
    await tx
      .update(rollouts)
      .set({ stateReason: `${input.reason}; automatic rollback not possible: ${problem}` })
      .where(eq(rollouts.id, rollout.rolloutId));
    return { problem };
  }
  await tx
    .update(rollouts)
    .set({
      state: 'aborted',
      stateReason: `rolled back to ${policy.toVersion} automatically: ${input.reason}`,
      updatedAt: now,
    })
    .where(and(eq(rollouts.id, rollout.rolloutId), eq(rollouts.state, 'paused')));
  const [created] = await tx
    .insert(rollouts)
    .values({
      releaseId: policy.toReleaseId,
      product: rollout.product,
      name: `automatic rollback of ${rollout.product} ${rollout.releaseVersion} to ${policy.toVersion}`,
      selector: { fromRollout: rollout.rolloutId },
      allowDowngrade: true,
      stages: [{ percent: 100 }],
      state: 'active',
      kind: 'rollback',
      createdBy: ENGINE_ACTOR,
      startedAt: now,
      stageStartedAt: now,
      createdAt: now,
      updatedAt: now,
    })
    .returning({ id: rollouts.id });
  if (created === undefined) throw new Error('rollback rollout insert returned no row');
  await tx.insert(auditLog).values([
    {
      actor: ENGINE_ACTOR,
      action: 'rollout.auto-rollback',
      target,
      details: {
        rollbackRolloutId: created.id,
        toReleaseId: policy.toReleaseId,
        toVersion: policy.toVersion,
        fromVersion: rollout.releaseVersion,
        cause,
      },
      at: now,
    },
    {
      actor: ENGINE_ACTOR,
      action: 'rollout.create',
      target: `rollout:${created.id}`,
      details: { kind: 'rollback', rollbackOf: rollout.rolloutId, toVersion: policy.toVersion, cause },
      at: now,
    },
  ]);
  return { rollbackId: created.id, toVersion: policy.toVersion };
}
