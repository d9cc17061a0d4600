// Rollouts (admin API): create (staged, optionally as a draft), list, get, status, start,
// pause, resume, abort, and roll back. Every operator action is a conditional UPDATE on the
// expected state (so concurrent replicas cannot both apply it), audited, and announced to every
// replica's poll cache (src/rollout/engine.ts). The model is in src/rollout/ and README "Rollouts".
import { createRoute } from '@hono/zod-openapi';
import { and, asc, count, eq, gt, inArray, isNotNull, or, type SQL } from 'drizzle-orm';
import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import { createRouter } from '../router.js';
import { requireRole, ROLE_GROUPS } from '../../auth/api-keys.js';
import type { AppDeps } from '../../context.js';
import { products, releases, rolloutDevices, rollouts } from '../../db/schema.js';
import { ServerError } from '../../errors.js';
import type { RolloutLifecycle } from '../../rollout/model.js';
import { checkReleaseOfferable, checkStages, planRollout, previewRollout } from '../../rollout/preview.js';
import {
  RolloutCreateSchema,
  RolloutListQuerySchema,
  RolloutPreviewSchema,
  RolloutReasonSchema,
  RolloutRollbackSchema,
  RolloutSchema,
  RolloutStatusSchema,
} from '@abota/api';
import { rolloutStatus } from '../../rollout/status.js';
import { bakeSecondsOf } from '../../rollout/health.js';
import { loadProgress, loadRollout, type RolloutRow } from '../../rollout/store.js';
import { errorResponses, IdParam, pageOf } from '@abota/api';
import { audit, decodeCursor, json, page } from './common.js';

const SSE_REFRESH_MS = 5000;
const SSE_MAX_MS = 3600_000;

export const rolloutView = (r: RolloutRow, releaseVersion: string) => ({
  id: r.id,
  releaseId: r.releaseId,
  releaseVersion,
  product: r.product,
  name: r.name,
  kind: r.kind as 'normal' | 'rollback',
  selector: r.selector as Record<string, unknown>,
  state: r.state as RolloutLifecycle,
  stateReason: r.stateReason,
  allowDowngrade: r.allowDowngrade,
  stages: r.stages,
  currentStage: r.currentStage,
  maintenanceWindow: r.maintenanceWindow ?? null,
  startedAt: r.startedAt?.toISOString() ?? null,
  stageStartedAt: r.stageStartedAt.toISOString(),
  createdAt: r.createdAt.toISOString(),
  updatedAt: r.updatedAt.toISOString(),
  createdBy: r.createdBy,
  lateJoiners: r.lateJoiners,
  autoRollback: r.autoRollback ?? null,
  approval: {
    required: r.approvalRequired,
    approvedBy: r.approvedBy,
    approvedAt: r.approvedAt?.toISOString() ?? null,
  },
});

/** What an unapproved rollout of a product with requireApproval says in its stateReason. */
export const AWAITING_APPROVAL = 'awaiting approval by another operator or admin API key (four-eyes)';

/** Operator state changes: action → (from states, to state, default reason). */
const TRANSITIONS = {
  start: { from: ['draft'], to: 'active', summary: 'Start a draft rollout at its first stage' },
  pause: {
    from: ['active'],
    to: 'paused',
    summary: 'Pause a running rollout (started installs finish)',
    defaultReason: 'paused by operator',
  },
  resume: {
    from: ['paused'],
    to: 'active',
    summary: 'Resume a paused rollout at its current stage (the bake time starts again)',
  },
  abort: {
    from: ['draft', 'active', 'paused'],
    to: 'aborted',
    summary: 'Abort a rollout for good: nothing more is offered (started installs finish)',
    defaultReason: 'aborted by operator',
  },
} as const satisfies Record<
  string,
  { from: readonly RolloutLifecycle[]; to: RolloutLifecycle; summary: string; defaultReason?: string }
>;

const isUniqueViolation = (error: unknown): boolean => {
  for (let e = error, depth = 0; e instanceof Error && depth < 3; e = e.cause, depth++)
    if ((e as { code?: unknown }).code === '23505') return true;
  return false;
};

export function rolloutRoutes(deps: AppDeps) {
  const { db } = deps;
  const app = createRouter();

  // Server-sent events: the status document now, then again on every change of the rollout
  // (this replica's or another's, via NOTIFY) and at least every few seconds while devices
  // report; the stream ends when the rollout completes or is aborted, or after an hour.
  const eventsPath = '/v1/admin/rollouts/{id}/events';
  app.openAPIRegistry.registerPath({
    method: 'get',
    path: eventsPath,
    tags: ['admin: rollouts'],
    summary:
      'Rollout status as server-sent events: `event: status` with the RolloutStatus document on each change and every few seconds',
    security: [{ apiKey: [] }],
    request: { params: IdParam },
    responses: {
      200: {
        description: 'text/event-stream of `status` events (data: RolloutStatus JSON)',
        content: { 'text/event-stream': { schema: RolloutStatusSchema } },
      },
      ...errorResponses,
    },
  });

  return app
    .openapi(
      createRoute({
        method: 'post',
        path: '/v1/admin/rollouts',
        tags: ['admin: rollouts'],
        summary:
          "Create a staged rollout of a release to the devices its selector matches (within the release's product); starts at once unless start is false",
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.operate)] as const,
        request: { body: { required: true, ...json(RolloutCreateSchema) } },
        responses: {
          201: { description: 'Created (active, or draft)', ...json(RolloutSchema) },
          ...errorResponses,
        },
      }),
      async (c) => {
        const body = c.req.valid('json');
        const now = deps.clock.now();
        const { id, release, stages, autoRollback } = await planRollout(db, body, now);
        const [product] = await db
          .select({ requireApproval: products.requireApproval })
          .from(products)
          .where(eq(products.id, release.product));
        // Four-eyes (rollout-approve.ts): it stays a draft until another key approves it.
        const approvalRequired = product?.requireApproval === true;
        const start = (body.start ?? true) && !approvalRequired;
        const row = await db
          .transaction(async (tx) => {
            const [created] = await tx
              .insert(rollouts)
              .values({
                id,
                releaseId: release.id,
                product: release.product,
                name: body.name ?? `${release.product} ${release.version}`,
                selector: body.selector ?? {},
                allowDowngrade: body.allowDowngrade ?? false,
                stages,
                state: start ? 'active' : 'draft',
                kind: 'normal',
                maintenanceWindow: body.maintenanceWindow ?? null,
                startedAt: start ? now : null,
                stageStartedAt: now,
                createdBy: c.get('actor'),
                lateJoiners: body.lateJoiners ?? true,
                autoRollback,
                approvalRequired,
                startOnApproval: approvalRequired && (body.start ?? true),
                stateReason: approvalRequired ? AWAITING_APPROVAL : null,
                createdAt: now,
                updatedAt: now,
              })
              .returning();
            if (created === undefined)
              throw new ServerError('ERR_INTERNAL', 'rollout insert returned no row');
            await audit(tx, c.get('actor'), 'rollout.create', `rollout:${created.id}`, {
              releaseId: release.id,
              version: release.version,
              selector: body.selector ?? {},
              stages,
              state: created.state,
              lateJoiners: created.lateJoiners,
              autoRollback,
              approvalRequired,
            });
            return created;
          })
          .catch((error: unknown) => {
            // Two creations with the same id (a preview's) at once: the loser hears why.
            if (isUniqueViolation(error))
              throw new ServerError(
                'ERR_CONFLICT',
                `rollout ${id} exists already; leave id out or preview again`,
              );
            throw error;
          });
        await deps.rollouts.changed(row.id);
        return c.json(rolloutView(row, release.version), 201);
      },
    )
    .openapi(
      createRoute({
        method: 'post',
        path: '/v1/admin/rollouts/preview',
        tags: ['admin: rollouts'],
        summary:
          'Dry run of rollout creation (same body): how many devices each stage would reach right now, and why the others are left out; changes nothing. Create with the answered rolloutId as id to get exactly these cohorts',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.operate)] as const,
        request: { body: { required: true, ...json(RolloutCreateSchema) } },
        responses: {
          200: { description: 'The preview', ...json(RolloutPreviewSchema) },
          ...errorResponses,
        },
      }),
      async (c) => {
        const now = deps.clock.now();
        const plan = await planRollout(db, c.req.valid('json'), now);
        return c.json(await previewRollout(db, plan, now), 200);
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        path: '/v1/admin/rollouts',
        tags: ['admin: rollouts'],
        summary: 'List rollouts',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.read)] as const,
        request: { query: RolloutListQuerySchema },
        responses: {
          200: { description: 'A page of rollouts', ...json(pageOf(RolloutSchema)) },
          ...errorResponses,
        },
      }),
      async (c) => {
        const q = c.req.valid('query');
        const after = decodeCursor(q.cursor);
        const where: SQL[] = [];
        if (q.product !== undefined) where.push(eq(rollouts.product, q.product));
        if (q.state !== undefined) where.push(eq(rollouts.state, q.state));
        if (after !== undefined) where.push(gt(rollouts.id, after));
        const rows = await db
          .select({ r: rollouts, version: releases.version })
          .from(rollouts)
          .innerJoin(releases, eq(releases.id, rollouts.releaseId))
          .where(and(...where))
          .orderBy(asc(rollouts.id))
          .limit(q.limit + 1);
        return c.json(
          page(
            rows.map(({ r, version }) => rolloutView(r, version)),
            q.limit,
          ),
          200,
        );
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        path: '/v1/admin/rollouts/{id}',
        tags: ['admin: rollouts'],
        summary: 'Get a rollout with device counts per state',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.read)] as const,
        request: { params: IdParam },
        responses: { 200: { description: 'The rollout', ...json(RolloutSchema) }, ...errorResponses },
      }),
      async (c) => {
        const { id } = c.req.valid('param');
        const loaded = await loadRollout(db, id);
        if (loaded === undefined) throw new ServerError('ERR_NOT_FOUND', `no rollout ${id}`);
        const counts = await db
          .select({ state: rolloutDevices.state, n: count() })
          .from(rolloutDevices)
          .where(eq(rolloutDevices.rolloutId, id))
          .groupBy(rolloutDevices.state);
        const deviceCounts: Record<string, number> = {};
        for (const { state, n } of counts) deviceCounts[state] = Number(n);
        return c.json({ ...rolloutView(loaded.row, loaded.release.version), deviceCounts }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        path: '/v1/admin/rollouts/{id}/status',
        tags: ['admin: rollouts'],
        summary:
          'Rollout status: per-stage and overall device counts by state, failure rate, time in stage and the next automatic action (poll it)',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.read)] as const,
        request: { params: IdParam },
        responses: { 200: { description: 'The status', ...json(RolloutStatusSchema) }, ...errorResponses },
      }),
      async (c) => {
        const { id } = c.req.valid('param');
        return c.json(await statusOf(deps, id), 200);
      },
    )
    .openapi(
      createRoute({
        method: 'post',
        path: '/v1/admin/rollouts/{id}/rollback',
        tags: ['admin: rollouts'],
        summary:
          'Roll back: abort this rollout and start a rollback rollout (downgrade allowed) of an earlier release to the devices it was offered to',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.operate)] as const,
        request: { params: IdParam, body: { required: true, ...json(RolloutRollbackSchema) } },
        responses: {
          201: { description: 'The rollback rollout (active)', ...json(RolloutSchema) },
          ...errorResponses,
        },
      }),
      async (c) => {
        const { id } = c.req.valid('param');
        const body = c.req.valid('json');
        if ((body.releaseId === undefined) === (body.version === undefined))
          throw new ServerError(
            'ERR_VALIDATION',
            'give exactly one of releaseId or version for the release to return to',
          );
        const stages = body.stages ?? [{ percent: 100 }];
        checkStages(stages);
        const original = await loadRollout(db, id);
        if (original === undefined) throw new ServerError('ERR_NOT_FOUND', `no rollout ${id}`);
        const [target] = await db
          .select()
          .from(releases)
          .where(
            body.releaseId !== undefined
              ? eq(releases.id, body.releaseId)
              : and(eq(releases.product, original.row.product), eq(releases.version, body.version ?? '')),
          )
          .limit(1);
        if (target === undefined || target.product !== original.row.product) {
          throw new ServerError(
            'ERR_NOT_FOUND',
            `no release ${body.releaseId ?? body.version} of product ${original.row.product} to roll back to`,
          );
        }
        if (target.id === original.release.id)
          throw new ServerError('ERR_CONFLICT', 'the rollback release is the release being rolled back');
        const now = deps.clock.now();
        checkReleaseOfferable(target, now);
        // Devices that committed the rolled-back release keep its security version as their floor
        // (docs/trust-model.md "Going back: version versus security version") and would refuse
        // anything below it: say so now, not per device.
        if (target.securityVersion < original.release.securityVersion) {
          throw new ServerError(
            'ERR_CONFLICT',
            `release ${target.version} has securityVersion ${target.securityVersion}, below ${original.release.version}'s ${original.release.securityVersion}: devices that committed ${original.release.version} would refuse it; publish a fixed release with securityVersion >= ${original.release.securityVersion} instead`,
          );
        }
        const row = await db.transaction(async (tx) => {
          const aborted = await tx
            .update(rollouts)
            .set({ state: 'aborted', stateReason: `rolled back to ${target.version}`, updatedAt: now })
            .where(
              and(eq(rollouts.id, id), inArray(rollouts.state, ['draft', 'active', 'paused', 'completed'])),
            )
            .returning({ id: rollouts.id });
          if (aborted.length === 0 && original.row.state !== 'aborted')
            throw new ServerError('ERR_ROLLOUT_STATE', `rollout ${id} changed state meanwhile; retry`);
          const [created] = await tx
            .insert(rollouts)
            .values({
              releaseId: target.id,
              product: original.row.product,
              name: body.name ?? `rollback of ${original.row.name} to ${target.version}`,
              selector: { fromRollout: id },
              allowDowngrade: true,
              stages,
              state: 'active',
              kind: 'rollback',
              createdBy: c.get('actor'),
              startedAt: now,
              stageStartedAt: now,
              createdAt: now,
              updatedAt: now,
            })
            .returning();
          if (created === undefined) throw new ServerError('ERR_INTERNAL', 'rollout insert returned no row');
          await audit(tx, c.get('actor'), 'rollout.rollback', `rollout:${id}`, {
            rollbackRolloutId: created.id,
            toReleaseId: target.id,
            toVersion: target.version,
            fromVersion: original.release.version,
          });
          return created;
        });
        await deps.rollouts.changed(id);
        return c.json(rolloutView(row, target.version), 201);
      },
    )
    .get('/v1/admin/rollouts/:id/events', requireRole(deps, ROLE_GROUPS.read), async (c) => {
      const parsed = IdParam.safeParse({ id: c.req.param('id') });
      if (!parsed.success) throw new ServerError('ERR_VALIDATION', 'id: expected a rollout id (UUID)');
      const { id } = parsed.data;
      return rolloutEventStream(deps, c, id);
    })
    .route('/', transitionRoutes(deps, 'start'))
    .route('/', transitionRoutes(deps, 'pause'))
    .route('/', transitionRoutes(deps, 'resume'))
    .route('/', transitionRoutes(deps, 'abort'));
}

/**
 * The status document as server-sent events (`event: status`): now, then on every change of the
 * rollout (this replica's or another's, via NOTIFY) and at least every few seconds; ends when the
 * rollout completes or is aborted, or after an hour. Shared by the API route and the console's
 * rollout page (which signs in with a cookie, not a bearer key). 404 before the stream starts.
 */
export async function rolloutEventStream(
  deps: AppDeps,
  c: Context,
  id: string,
  /** What each event carries: the status document, or (the console) the document with more. */
  present: (doc: RolloutStatusDocument) => unknown = (doc) => doc,
): Promise<Response> {
  const first = await statusOf(deps, id);
  return streamSSE(c, async (stream) => {
    let wake: (() => void) | undefined;
    const unsubscribe = deps.rollouts.onChange((changed) => {
      if (changed === undefined || changed === id) wake?.();
    });
    let closed = false;
    stream.onAbort(() => {
      closed = true;
      wake?.();
    });
    const endAt = performance.now() + SSE_MAX_MS;
    try {
      let doc = first;
      for (let n = 0; !closed; n++) {
        await stream.writeSSE({ event: 'status', id: String(n), data: JSON.stringify(present(doc)) });
        if (doc.rollout.state === 'completed' || doc.rollout.state === 'aborted' || performance.now() > endAt)
          break;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, SSE_REFRESH_MS);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
        if (!closed) doc = await statusOf(deps, id);
      }
    } finally {
      unsubscribe();
    }
  });
}

/** One operator state change (TRANSITIONS) as its own sub-app, so its path is a literal type. */
function transitionRoutes<A extends keyof typeof TRANSITIONS>(deps: AppDeps, action: A) {
  const { db } = deps;
  const transition = TRANSITIONS[action];
  const { from, to, summary } = transition;
  return createRouter().openapi(
    createRoute({
      method: 'post',
      path: `/v1/admin/rollouts/{id}/${action}`,
      tags: ['admin: rollouts'],
      summary: `${summary} (from ${from.join(' or ')} to ${to})`,
      security: [{ apiKey: [] }],
      middleware: [requireRole(deps, ROLE_GROUPS.operate)] as const,
      request: { params: IdParam, body: { required: false, ...json(RolloutReasonSchema) } },
      responses: { 200: { description: `Now ${to}`, ...json(RolloutSchema) }, ...errorResponses },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const reason = (c.req.valid('json') as { reason?: string } | undefined)?.reason;
      const now = deps.clock.now();
      const set: Partial<typeof rollouts.$inferInsert> = { state: to, updatedAt: now };
      if (action === 'start' || action === 'resume') {
        set.stateReason = null;
        // A resumed stage bakes again from now: the pause may have hidden failures.
        set.stageStartedAt = now;
      }
      if (action === 'start') set.startedAt = now;
      if ('defaultReason' in transition) set.stateReason = reason ?? transition.defaultReason;
      const row = await db.transaction(async (tx) => {
        const [updated] = await tx
          .update(rollouts)
          .set(set)
          .where(
            and(
              eq(rollouts.id, id),
              inArray(rollouts.state, [...from]),
              // Four-eyes: a rollout that needs approval starts only once approved.
              action === 'start'
                ? or(eq(rollouts.approvalRequired, false), isNotNull(rollouts.approvedBy))
                : undefined,
            ),
          )
          .returning();
        if (updated === undefined) {
          const [current] = await tx
            .select({
              state: rollouts.state,
              approvalRequired: rollouts.approvalRequired,
              approvedBy: rollouts.approvedBy,
            })
            .from(rollouts)
            .where(eq(rollouts.id, id))
            .limit(1);
          if (current === undefined) throw new ServerError('ERR_NOT_FOUND', `no rollout ${id}`);
          if (
            action === 'start' &&
            current.state === 'draft' &&
            current.approvalRequired &&
            current.approvedBy === null
          )
            throw new ServerError(
              'ERR_APPROVAL_REQUIRED',
              `rollout ${id} needs approval first: another operator or admin key runs \`abota rollout approve ${id}\` (POST /v1/admin/rollouts/${id}/approve)`,
            );
          throw new ServerError(
            'ERR_ROLLOUT_STATE',
            `cannot ${action} a rollout that is ${current.state} (only from ${from.join(' or ')})`,
          );
        }
        await audit(tx, c.get('actor'), `rollout.${action}`, `rollout:${id}`, {
          ...(reason === undefined ? {} : { reason }),
          stage: updated.currentStage,
        });
        return updated;
      });
      await deps.rollouts.changed(id);
      const [rel] = await db
        .select({ version: releases.version })
        .from(releases)
        .where(eq(releases.id, row.releaseId));
      return c.json(rolloutView(row, rel?.version ?? ''), 200);
    },
  );
}

export type RolloutStatusDocument = Awaited<ReturnType<typeof statusOf>>;

/** The pollable status document (also what the CLI's `status --watch` redraws). */
export async function statusOf(deps: AppDeps, id: string) {
  const loaded = await loadRollout(deps.db, id);
  if (loaded === undefined) throw new ServerError('ERR_NOT_FOUND', `no rollout ${id}`);
  const now = deps.clock.now();
  const progress = await loadProgress(deps.db, loaded.candidate, {
    now,
    bakeSeconds: bakeSecondsOf(loaded.candidate.stages[loaded.row.currentStage]),
  });
  return {
    rollout: rolloutView(loaded.row, loaded.release.version),
    status: rolloutStatus({
      state: loaded.row.state as RolloutLifecycle,
      stateReason: loaded.row.stateReason,
      stages: loaded.candidate.stages,
      currentStage: loaded.row.currentStage,
      stageStartedAt: loaded.row.stageStartedAt,
      progress,
      now,
    }),
    at: now.toISOString(),
  };
}
