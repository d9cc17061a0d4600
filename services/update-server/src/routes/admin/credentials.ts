// Credentials admins hand out: provisioning tokens (scoped to a product, expiring, revocable,
// usage-limited) and API keys (one role each). Both are shown once and stored as SHA-256.
import { createRoute } from '@hono/zod-openapi';
import { and, asc, eq, isNull } from 'drizzle-orm';
import { createRouter } from '../router.js';
import { requireRole, ROLE_GROUPS } from '../../auth/api-keys.js';
import { generateSecret, hashSecret } from '../../auth/secrets.js';
import type { ApiKeyRole, AppDeps } from '../../context.js';
import { apiKeys, provisioningTokens } from '../../db/schema.js';
import { ServerError } from '../../errors.js';
import {
  ApiKeyCreateSchema,
  ApiKeySchema,
  errorResponses,
  listOf,
  IdParam,
  ProvisioningTokenCreateSchema,
  ProvisioningTokenSchema,
} from '@abota/api';
import { loadProduct } from './products.js';
import { audit, iso, json } from './common.js';

/**
 * Uses of a provisioning token created without `maxUses`: one device. A leaked token then
 * registers at most one device (issue #16: ten fakes from one token poisoned a canary);
 * `abota token create --max-uses N` raises it for a batch.
 */
export const DEFAULT_TOKEN_MAX_USES = 1;

type TokenRow = typeof provisioningTokens.$inferSelect;
const tokenView = (t: TokenRow) => ({
  id: t.id,
  product: t.product,
  description: t.description,
  expiresAt: t.expiresAt.toISOString(),
  revokedAt: iso(t.revokedAt),
  maxUses: t.maxUses,
  uses: t.uses,
  createdAt: t.createdAt.toISOString(),
});
type KeyRow = typeof apiKeys.$inferSelect;
const keyView = (k: KeyRow) => ({
  id: k.id,
  name: k.name,
  role: k.role as ApiKeyRole,
  createdAt: k.createdAt.toISOString(),
  revokedAt: iso(k.revokedAt),
});

export function credentialRoutes(deps: AppDeps) {
  const { db } = deps;

  return createRouter()
    .openapi(
      createRoute({
        method: 'post',
        path: '/v1/admin/provisioning-tokens',
        tags: ['admin: credentials'],
        summary: 'Create a provisioning token for registering devices of one product (shown once)',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.operate)] as const,
        request: { body: { required: true, ...json(ProvisioningTokenCreateSchema) } },
        responses: {
          201: { description: 'Created; `token` is not shown again', ...json(ProvisioningTokenSchema) },
          ...errorResponses,
        },
      }),
      async (c) => {
        const body = c.req.valid('json');
        await loadProduct(deps, body.product);
        const token = generateSecret('abp');
        const row = await db.transaction(async (tx) => {
          const [created] = await tx
            .insert(provisioningTokens)
            .values({
              tokenHash: hashSecret(token),
              product: body.product,
              description: body.description ?? '',
              expiresAt: new Date(deps.clock.now().getTime() + body.expiresInSeconds * 1000),
              maxUses: body.maxUses ?? DEFAULT_TOKEN_MAX_USES,
            })
            .returning();
          if (created === undefined) throw new ServerError('ERR_INTERNAL', 'token insert returned no row');
          await audit(tx, c.get('actor'), 'provisioning-token.create', `provisioning-token:${created.id}`, {
            product: body.product,
            maxUses: created.maxUses,
          });
          return created;
        });
        return c.json({ ...tokenView(row), token }, 201);
      },
    )

    .openapi(
      createRoute({
        method: 'get',
        path: '/v1/admin/provisioning-tokens',
        tags: ['admin: credentials'],
        summary: 'List provisioning tokens (never the tokens themselves)',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.operate)] as const,
        responses: {
          200: { description: 'Tokens', ...json(listOf(ProvisioningTokenSchema)) },
          ...errorResponses,
        },
      }),
      async (c) => {
        const rows = await db
          .select()
          .from(provisioningTokens)
          .orderBy(asc(provisioningTokens.createdAt))
          .limit(1000);
        return c.json({ items: rows.map(tokenView) }, 200);
      },
    )

    .openapi(
      createRoute({
        method: 'post',
        path: '/v1/admin/provisioning-tokens/{id}/revoke',
        tags: ['admin: credentials'],
        summary: 'Revoke a provisioning token',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.operate)] as const,
        request: { params: IdParam },
        responses: { 200: { description: 'Revoked', ...json(ProvisioningTokenSchema) }, ...errorResponses },
      }),
      async (c) => {
        const { id } = c.req.valid('param');
        const row = await db.transaction(async (tx) => {
          const [updated] = await tx
            .update(provisioningTokens)
            .set({ revokedAt: deps.clock.now() })
            .where(and(eq(provisioningTokens.id, id), isNull(provisioningTokens.revokedAt)))
            .returning();
          if (updated === undefined)
            throw new ServerError('ERR_NOT_FOUND', `no unrevoked provisioning token ${id}`);
          await audit(tx, c.get('actor'), 'provisioning-token.revoke', `provisioning-token:${id}`);
          return updated;
        });
        return c.json(tokenView(row), 200);
      },
    )

    .openapi(
      createRoute({
        method: 'post',
        path: '/v1/admin/api-keys',
        tags: ['admin: credentials'],
        summary: 'Create an API key with one role (shown once)',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.admin)] as const,
        request: { body: { required: true, ...json(ApiKeyCreateSchema) } },
        responses: {
          201: { description: 'Created; `key` is not shown again', ...json(ApiKeySchema) },
          ...errorResponses,
        },
      }),
      async (c) => {
        const body = c.req.valid('json');
        const key = generateSecret('abk');
        const row = await db.transaction(async (tx) => {
          const [created] = await tx
            .insert(apiKeys)
            .values({ keyHash: hashSecret(key), name: body.name, role: body.role })
            .returning();
          if (created === undefined) throw new ServerError('ERR_INTERNAL', 'api key insert returned no row');
          await audit(tx, c.get('actor'), 'api-key.create', `api-key:${created.id}`, {
            name: body.name,
            role: body.role,
          });
          return created;
        });
        return c.json({ ...keyView(row), key }, 201);
      },
    )

    .openapi(
      createRoute({
        method: 'get',
        path: '/v1/admin/api-keys',
        tags: ['admin: credentials'],
        summary: 'List API keys (never the keys themselves)',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.admin)] as const,
        responses: {
          200: { description: 'Keys', ...json(listOf(ApiKeySchema)) },
          ...errorResponses,
        },
      }),
      async (c) => {
        const rows = await db.select().from(apiKeys).orderBy(asc(apiKeys.createdAt)).limit(1000);
        return c.json({ items: rows.map(keyView) }, 200);
      },
    )

    .openapi(
      createRoute({
        method: 'post',
        path: '/v1/admin/api-keys/{id}/revoke',
        tags: ['admin: credentials'],
        summary: 'Revoke an API key',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.admin)] as const,
        request: { params: IdParam },
        responses: { 200: { description: 'Revoked', ...json(ApiKeySchema) }, ...errorResponses },
      }),
      async (c) => {
        const { id } = c.req.valid('param');
        const row = await db.transaction(async (tx) => {
          const [updated] = await tx
            .update(apiKeys)
            .set({ revokedAt: deps.clock.now() })
            .where(and(eq(apiKeys.id, id), isNull(apiKeys.revokedAt)))
            .returning();
          if (updated === undefined) throw new ServerError('ERR_NOT_FOUND', `no unrevoked API key ${id}`);
          await audit(tx, c.get('actor'), 'api-key.revoke', `api-key:${id}`);
          return updated;
        });
        return c.json(keyView(row), 200);
      },
    );
}
