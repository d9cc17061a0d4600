// POST /v1/admin/rollouts/{id}/advance: the operator moves a running rollout to its next stage
// by hand — a small fleet may never meet a stage's thresholds, and an operator who has watched
// the canary need not wait for the bake time. The same conditional UPDATE as the engine's own
// advance (only from the stage the operator saw), audited with the operator as actor.
import { createRoute } from '@hono/zod-openapi';
import { and, eq } from 'drizzle-orm';
import { createRouter } from '../router.js';
import { requireRole, ROLE_GROUPS } from '../../auth/api-keys.js';
import type { AppDeps } from '../../context.js';
import { rollouts } from '../../db/schema.js';
import { ServerError } from '../../errors.js';
import { RolloutReasonSchema, RolloutSchema } from '@abota/api';
import { loadRollout } from '../../rollout/store.js';
import { errorResponses, IdParam } from '@abota/api';
import { audit, json } from './common.js';
import { rolloutView } from './rollouts.js';

export function rolloutAdvanceRoutes(deps: AppDeps) {
  const { db } = deps;
  return createRouter().openapi(
    createRoute({
      method: 'post',
      path: '/v1/admin/rollouts/{id}/advance',
      tags: ['admin: rollouts'],
      summary:
        'Move a running rollout to its next stage now, whatever its bake time and thresholds (the new stage bakes from now)',
      security: [{ apiKey: [] }],
      middleware: [requireRole(deps, ROLE_GROUPS.operate)] as const,
      request: { params: IdParam, body: { required: false, ...json(RolloutReasonSchema) } },
      responses: { 200: { description: 'Now at the next stage', ...json(RolloutSchema) }, ...errorResponses },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const reason = (c.req.valid('json') as { reason?: string } | undefined)?.reason;
      const loaded = await loadRollout(db, id);
      if (loaded === undefined) throw new ServerError('ERR_NOT_FOUND', `no rollout ${id}`);
      const { row, release } = loaded;
      if (row.state !== 'active')
        throw new ServerError(
          'ERR_ROLLOUT_STATE',
          `cannot advance a rollout that is ${row.state} (only active ones)`,
        );
      const from = row.currentStage;
      if (from + 1 >= row.stages.length)
        throw new ServerError(
          'ERR_ROLLOUT_STATE',
          `rollout ${id} is at its last stage (${from + 1} of ${row.stages.length}); it completes when its devices finish`,
        );
      const now = deps.clock.now();
      const updated = await db.transaction(async (tx) => {
        const [done] = await tx
          .update(rollouts)
          .set({ currentStage: from + 1, stageStartedAt: now, updatedAt: now })
          .where(and(eq(rollouts.id, id), eq(rollouts.state, 'active'), eq(rollouts.currentStage, from)))
          .returning();
        if (done === undefined)
          throw new ServerError(
            'ERR_ROLLOUT_STATE',
            `rollout ${id} changed meanwhile; look at its status and retry`,
          );
        await audit(tx, c.get('actor'), 'rollout.advance', `rollout:${id}`, {
          fromStage: from,
          toStage: from + 1,
          ...(reason === undefined ? {} : { reason }),
        });
        return done;
      });
      await deps.rollouts.changed(id);
      return c.json(rolloutView(updated, release.version), 200);
    },
  );
}
