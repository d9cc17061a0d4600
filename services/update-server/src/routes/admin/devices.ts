// Fleet inventory: list devices with filters and cursor pagination, get one with its event
// history, replace its tags, decommission it (its JWTs are refused from then on).
import { createRoute } from '@hono/zod-openapi';
import { and, arrayContains, asc, desc, eq, gt, isNull, type SQL } from 'drizzle-orm';
import { createRouter } from '../router.js';
import { requireRole, ROLE_GROUPS } from '../../auth/api-keys.js';
import type { AppDeps } from '../../context.js';
import { deviceEvents, devices } from '../../db/schema.js';
import { ServerError } from '../../errors.js';
import { markRetagged } from '../../rollout/late-joiners.js';
import {
  DeviceDetailSchema,
  DeviceListQuerySchema,
  DeviceSchema,
  DeviceTagsSchema,
  errorResponses,
  IdParam,
  pageOf,
} from '@abota/api';
import { audit, decodeCursor, iso, json, page } from './common.js';

type DeviceRow = typeof devices.$inferSelect;
const view = (d: DeviceRow) => ({
  id: d.id,
  product: d.product,
  hardware: d.hardware,
  tags: d.tags,
  attributes: d.attributes,
  currentVersion: d.currentVersion,
  bootedSlot: d.bootedSlot,
  installState: d.installState,
  lastSeenAt: iso(d.lastSeenAt),
  registeredAt: d.registeredAt.toISOString(),
  decommissionedAt: iso(d.decommissionedAt),
});

const EVENT_HISTORY_LIMIT = 100;

export function deviceAdminRoutes(deps: AppDeps) {
  const { db } = deps;

  return createRouter()
    .openapi(
      createRoute({
        method: 'get',
        path: '/v1/admin/devices',
        tags: ['admin: devices'],
        summary: 'List devices (filters: product, hardware, tag, version, installState)',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.read)] as const,
        request: { query: DeviceListQuerySchema },
        responses: {
          200: { description: 'A page of devices', ...json(pageOf(DeviceSchema)) },
          ...errorResponses,
        },
      }),
      async (c) => {
        const q = c.req.valid('query');
        const after = decodeCursor(q.cursor);
        const where: SQL[] = [];
        if (q.product !== undefined) where.push(eq(devices.product, q.product));
        if (q.hardware !== undefined) where.push(eq(devices.hardware, q.hardware));
        if (q.tag !== undefined) where.push(arrayContains(devices.tags, [q.tag]));
        if (q.version !== undefined) where.push(eq(devices.currentVersion, q.version));
        if (q.installState !== undefined) where.push(eq(devices.installState, q.installState));
        if (q.includeDecommissioned !== 'true') where.push(isNull(devices.decommissionedAt));
        if (after !== undefined) where.push(gt(devices.id, after));
        const rows = await db
          .select()
          .from(devices)
          .where(and(...where))
          .orderBy(asc(devices.id))
          .limit(q.limit + 1);
        return c.json(page(rows.map(view), q.limit), 200);
      },
    )

    .openapi(
      createRoute({
        method: 'get',
        path: '/v1/admin/devices/{id}',
        tags: ['admin: devices'],
        summary: `Get a device with its latest ${EVENT_HISTORY_LIMIT} events`,
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.read)] as const,
        request: { params: IdParam },
        responses: {
          200: {
            description: 'The device',
            ...json(DeviceDetailSchema),
          },
          ...errorResponses,
        },
      }),
      async (c) => {
        const { id } = c.req.valid('param');
        const [row] = await db.select().from(devices).where(eq(devices.id, id)).limit(1);
        if (row === undefined) throw new ServerError('ERR_NOT_FOUND', `no device ${id}`);
        const events = await db
          .select()
          .from(deviceEvents)
          .where(eq(deviceEvents.deviceId, id))
          .orderBy(desc(deviceEvents.id))
          .limit(EVENT_HISTORY_LIMIT);
        return c.json(
          {
            ...view(row),
            events: events.map((e) => ({
              id: e.id,
              rolloutId: e.rolloutId,
              version: e.version,
              state: e.state,
              errorCode: e.errorCode,
              message: e.message,
              progress: e.progress,
              at: e.at.toISOString(),
            })),
          },
          200,
        );
      },
    )

    .openapi(
      createRoute({
        method: 'put',
        path: '/v1/admin/devices/{id}/tags',
        tags: ['admin: devices'],
        summary: "Replace a device's tags (rollout selectors match on them)",
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.operate)] as const,
        request: { params: IdParam, body: { required: true, ...json(DeviceTagsSchema) } },
        responses: { 200: { description: 'Updated', ...json(DeviceSchema) }, ...errorResponses },
      }),
      async (c) => {
        const { id } = c.req.valid('param');
        const tags = [...new Set(c.req.valid('json').tags)].sort();
        const row = await db.transaction(async (tx) => {
          const [before] = await tx.select().from(devices).where(eq(devices.id, id)).for('update');
          if (before === undefined) throw new ServerError('ERR_NOT_FOUND', `no device ${id}`);
          // Frozen rollouts remember whether it was part of their population (late-joiners.ts).
          if (before.tags.join('\n') !== tags.join('\n')) await markRetagged(tx, before, deps.clock.now());
          const [updated] = await tx.update(devices).set({ tags }).where(eq(devices.id, id)).returning();
          if (updated === undefined) throw new ServerError('ERR_NOT_FOUND', `no device ${id}`);
          await audit(tx, c.get('actor'), 'device.tags', `device:${id}`, { tags });
          return updated;
        });
        return c.json(view(row), 200);
      },
    )

    .openapi(
      createRoute({
        method: 'post',
        path: '/v1/admin/devices/{id}/decommission',
        tags: ['admin: devices'],
        summary: 'Decommission a device: its tokens are refused from now on',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.operate)] as const,
        request: { params: IdParam },
        responses: { 200: { description: 'Decommissioned', ...json(DeviceSchema) }, ...errorResponses },
      }),
      async (c) => {
        const { id } = c.req.valid('param');
        const row = await db.transaction(async (tx) => {
          const [updated] = await tx
            .update(devices)
            .set({ decommissionedAt: deps.clock.now() })
            .where(and(eq(devices.id, id), isNull(devices.decommissionedAt)))
            .returning();
          if (updated === undefined) throw new ServerError('ERR_NOT_FOUND', `no active device ${id}`);
          await audit(tx, c.get('actor'), 'device.decommission', `device:${id}`);
          return updated;
        });
        return c.json(view(row), 200);
      },
    );
}
