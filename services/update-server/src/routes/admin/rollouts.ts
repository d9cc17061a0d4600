// Rollouts: a release offered to the devices a selector matches (one stage at 100 % for now;
// the table already holds stages for canary percentages). Operators pause, resume and abort;
// every change is audited. Device progress is counted per state from rollout_devices.
import { createRoute } from '@hono/zod-openapi';
import { and, asc, count, eq, gt, inArray, type SQL } from 'drizzle-orm';
import type { App } from '../../app.js';
import { requireRole, ROLE_GROUPS } from '../../auth/api-keys.js';
import type { AppDeps } from '../../context.js';
import { releases, rolloutDevices, rollouts } from '../../db/schema.js';
import { ServerError } from '../../errors.js';
import {
  errorResponses,
  IdParam,
  pageOf,
  type ROLLOUT_STATES,
  RolloutCreateSchema,
  RolloutListQuerySchema,
  RolloutSchema,
} from '../../schemas.js';
import { audit, decodeCursor, json, page } from './common.js';

type RolloutRow = typeof rollouts.$inferSelect;
type RolloutState = (typeof ROLLOUT_STATES)[number];
const view = (r: RolloutRow) => ({
  id: r.id,
  releaseId: r.releaseId,
  product: r.product,
  name: r.name,
  selector: r.selector as Record<string, unknown>,
  state: r.state as RolloutState,
  allowDowngrade: r.allowDowngrade,
  stages: r.stages as unknown as Record<string, unknown>[],
  currentStage: r.currentStage,
  createdAt: r.createdAt.toISOString(),
  updatedAt: r.updatedAt.toISOString(),
});

/** Allowed state changes: action → (from states, to state). */
const TRANSITIONS = {
  pause: { from: ['active'], to: 'paused' },
  resume: { from: ['paused'], to: 'active' },
  abort: { from: ['active', 'paused'], to: 'aborted' },
} as const satisfies Record<string, { from: readonly RolloutState[]; to: RolloutState }>;

export function registerRolloutRoutes(app: App, deps: AppDeps): void {
  const { db } = deps;

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/admin/rollouts',
      tags: ['admin: rollouts'],
      summary:
        "Start a rollout of a release to the devices its selector matches (within the release's product)",
      security: [{ apiKey: [] }],
      middleware: [requireRole(deps, ROLE_GROUPS.operate)] as const,
      request: { body: { required: true, ...json(RolloutCreateSchema) } },
      responses: { 201: { description: 'Created (active)', ...json(RolloutSchema) }, ...errorResponses },
    }),
    async (c) => {
      const body = c.req.valid('json');
      const [release] = await db.select().from(releases).where(eq(releases.id, body.releaseId)).limit(1);
      if (release === undefined) throw new ServerError('ERR_NOT_FOUND', `no release ${body.releaseId}`);
      if (release.yanked)
        throw new ServerError('ERR_CONFLICT', `release ${release.product} ${release.version} is yanked`);
      if (release.expires <= deps.clock.now()) {
        throw new ServerError(
          'ERR_CONFLICT',
          `release ${release.product} ${release.version} expired at ${release.expires.toISOString()}; devices would refuse it`,
        );
      }
      const row = await db.transaction(async (tx) => {
        const [created] = await tx
          .insert(rollouts)
          .values({
            releaseId: release.id,
            product: release.product,
            name: body.name ?? `${release.product} ${release.version}`,
            selector: body.selector ?? {},
            allowDowngrade: body.allowDowngrade ?? false,
            stages: [{ percent: 100 }],
          })
          .returning();
        if (created === undefined) throw new ServerError('ERR_INTERNAL', 'rollout insert returned no row');
        await audit(tx, c.get('actor'), 'rollout.create', `rollout:${created.id}`, {
          releaseId: release.id,
          selector: body.selector ?? {},
        });
        return created;
      });
      return c.json(view(row), 201);
    },
  );

  app.openapi(
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
        .select()
        .from(rollouts)
        .where(and(...where))
        .orderBy(asc(rollouts.id))
        .limit(q.limit + 1);
      return c.json(page(rows.map(view), q.limit), 200);
    },
  );

  app.openapi(
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
      const [row] = await db.select().from(rollouts).where(eq(rollouts.id, id)).limit(1);
      if (row === undefined) throw new ServerError('ERR_NOT_FOUND', `no rollout ${id}`);
      const counts = await db
        .select({ state: rolloutDevices.state, n: count() })
        .from(rolloutDevices)
        .where(eq(rolloutDevices.rolloutId, id))
        .groupBy(rolloutDevices.state);
      const deviceCounts: Record<string, number> = {};
      for (const { state, n } of counts) deviceCounts[state] = Number(n);
      return c.json({ ...view(row), deviceCounts }, 200);
    },
  );

  for (const [action, { from, to }] of Object.entries(TRANSITIONS)) {
    app.openapi(
      createRoute({
        method: 'post',
        path: `/v1/admin/rollouts/{id}/${action}`,
        tags: ['admin: rollouts'],
        summary: `${action[0]?.toUpperCase()}${action.slice(1)} a rollout (from ${from.join(' or ')} to ${to})`,
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.operate)] as const,
        request: { params: IdParam },
        responses: { 200: { description: `Now ${to}`, ...json(RolloutSchema) }, ...errorResponses },
      }),
      async (c) => {
        const { id } = c.req.valid('param');
        const row = await db.transaction(async (tx) => {
          const [updated] = await tx
            .update(rollouts)
            .set({ state: to, updatedAt: deps.clock.now() })
            .where(and(eq(rollouts.id, id), inArray(rollouts.state, [...from])))
            .returning();
          if (updated === undefined) {
            const [current] = await tx
              .select({ state: rollouts.state })
              .from(rollouts)
              .where(eq(rollouts.id, id))
              .limit(1);
            if (current === undefined) throw new ServerError('ERR_NOT_FOUND', `no rollout ${id}`);
            throw new ServerError(
              'ERR_ROLLOUT_STATE',
              `cannot ${action} a rollout that is ${current.state} (only from ${from.join(' or ')})`,
            );
          }
          await audit(tx, c.get('actor'), `rollout.${action}`, `rollout:${id}`);
          return updated;
        });
        return c.json(view(row), 200);
      },
    );
  }
}
