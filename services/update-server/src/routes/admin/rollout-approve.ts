// POST /v1/admin/rollouts/{id}/approve: four-eyes approval. A rollout of a product with
// `requireApproval` is created as a draft that offers nothing; another operator or admin API key
// (not the one that created it) approves it, and it starts then if its creator asked it to start
// (otherwise `start` may now start it). One conditional UPDATE (still a draft, not yet approved,
// not by its creator), so two approvals cannot both win; audited with who created it.
import { createRoute } from '@hono/zod-openapi';
import { and, eq, isNull, ne } from 'drizzle-orm';
import { createRouter } from '../router.js';
import { requireRole, ROLE_GROUPS } from '../../auth/api-keys.js';
import type { AppDeps } from '../../context.js';
import { releases, rollouts } from '../../db/schema.js';
import { ServerError } from '../../errors.js';
import { errorResponses, IdParam, RolloutApproveSchema, RolloutSchema } from '@abota/api';
import { audit, json } from './common.js';
import { rolloutView } from './rollouts.js';

export function rolloutApproveRoutes(deps: AppDeps) {
  const { db } = deps;
  return createRouter().openapi(
    createRoute({
      method: 'post',
      path: '/v1/admin/rollouts/{id}/approve',
      tags: ['admin: rollouts'],
      summary:
        'Approve a rollout that needs four-eyes approval (by an operator or admin key other than its creator); it starts now unless it was created as a draft',
      security: [{ apiKey: [] }],
      middleware: [requireRole(deps, ROLE_GROUPS.operate)] as const,
      request: { params: IdParam, body: { required: false, ...json(RolloutApproveSchema) } },
      responses: {
        200: { description: 'Approved (active, or still a draft)', ...json(RolloutSchema) },
        ...errorResponses,
      },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const comment = (c.req.valid('json') as { comment?: string } | undefined)?.comment;
      const actor = c.get('actor');
      const now = deps.clock.now();
      const row = await db.transaction(async (tx) => {
        const [current] = await tx.select().from(rollouts).where(eq(rollouts.id, id)).limit(1);
        if (current === undefined) throw new ServerError('ERR_NOT_FOUND', `no rollout ${id}`);
        if (!current.approvalRequired)
          throw new ServerError(
            'ERR_ROLLOUT_STATE',
            `rollout ${id} does not need approval (its product did not require it when it was created)`,
          );
        if (current.approvedBy !== null)
          throw new ServerError(
            'ERR_ROLLOUT_STATE',
            `rollout ${id} was already approved by ${current.approvedBy} at ${current.approvedAt?.toISOString()}`,
          );
        if (current.state !== 'draft')
          throw new ServerError('ERR_ROLLOUT_STATE', `cannot approve a rollout that is ${current.state}`);
        if (current.createdBy === actor)
          throw new ServerError(
            'ERR_APPROVAL_SAME_KEY',
            `rollout ${id} was created with this API key; four-eyes approval needs another operator or admin key`,
          );
        const start = current.startOnApproval;
        const [updated] = await tx
          .update(rollouts)
          .set({
            approvedBy: actor,
            approvedAt: now,
            updatedAt: now,
            stateReason: null,
            ...(start ? { state: 'active', startedAt: now, stageStartedAt: now } : {}),
          })
          .where(
            and(
              eq(rollouts.id, id),
              eq(rollouts.state, 'draft'),
              isNull(rollouts.approvedBy),
              // The same refusal as above, in the statement itself (a created_by of NULL never matches).
              ne(rollouts.createdBy, actor),
            ),
          )
          .returning();
        if (updated === undefined)
          throw new ServerError('ERR_ROLLOUT_STATE', `rollout ${id} changed meanwhile; retry`);
        await audit(tx, actor, 'rollout.approve', `rollout:${id}`, {
          createdBy: current.createdBy,
          started: start,
          ...(comment === undefined ? {} : { comment }),
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
