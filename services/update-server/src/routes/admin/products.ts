// Products and their trust roots: created with a self-signed root.json, rotated only by a root
// that verifies against the current one (TUF-style, @abota/manifest verifyRootUpdate).
import type { SignedRoot } from '@abota/manifest';
import { createRoute } from '@hono/zod-openapi';
import { and, asc, eq } from 'drizzle-orm';
import { createRouter } from '../router.js';
import { requireRole, ROLE_GROUPS } from '../../auth/api-keys.js';
import type { AppDeps } from '../../context.js';
import { products, productTrustRoots } from '../../db/schema.js';
import { checkRootUpdate, checkTrustRoot } from '../../manifest-check.js';
import { ServerError } from '../../errors.js';
import {
  errorResponses,
  listOf,
  ProductCreateSchema,
  ProductIdParam,
  ProductSchema,
  ProductUpdateSchema,
  TrustRootUpdateSchema,
} from '@abota/api';
import { audit, json } from './common.js';

type ProductRow = typeof products.$inferSelect;
const view = (p: ProductRow) => ({
  id: p.id,
  description: p.description,
  trustRootVersion: p.trustRootVersion,
  trustRoot: p.trustRoot,
  requireApproval: p.requireApproval,
  createdAt: p.createdAt.toISOString(),
  updatedAt: p.updatedAt.toISOString(),
});

export async function loadProduct(deps: AppDeps, id: string): Promise<ProductRow> {
  const [row] = await deps.db.select().from(products).where(eq(products.id, id)).limit(1);
  if (row === undefined)
    throw new ServerError('ERR_NOT_FOUND', `no product "${id}"; create it first (POST /v1/admin/products)`);
  return row;
}

function asSignedRoot(value: unknown): SignedRoot | string {
  // Accept root.json as an object or as its text; @abota/manifest validates the shape.
  if (typeof value === 'string') return value;
  if (value === null || typeof value !== 'object')
    throw new ServerError('ERR_TRUST_ROOT_INVALID', 'trustRoot must be the root.json General JWS object');
  return value as SignedRoot;
}

export function productRoutes(deps: AppDeps) {
  const { db } = deps;
  return createRouter()
    .openapi(
      createRoute({
        method: 'post',
        path: '/v1/admin/products',
        tags: ['admin: products'],
        summary: 'Create a product with its trust root (root.json, self-signed)',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.admin)] as const,
        request: { body: { required: true, ...json(ProductCreateSchema) } },
        responses: { 201: { description: 'Created', ...json(ProductSchema) }, ...errorResponses },
      }),
      async (c) => {
        const body = c.req.valid('json');
        const signed = asSignedRoot(body.trustRoot);
        const root = await checkTrustRoot(signed);
        const stored = typeof signed === 'string' ? (JSON.parse(signed) as unknown) : signed;
        const row = await db.transaction(async (tx) => {
          const [created] = await tx
            .insert(products)
            .values({
              id: body.id,
              description: body.description ?? '',
              trustRoot: stored,
              trustRootVersion: root.version,
            })
            .onConflictDoNothing()
            .returning();
          if (created === undefined)
            throw new ServerError(
              'ERR_CONFLICT',
              `product "${body.id}" already exists; rotate its root with PUT .../trust-root`,
            );
          await tx
            .insert(productTrustRoots)
            .values({ product: body.id, version: root.version, trustRoot: stored });
          await audit(tx, c.get('actor'), 'product.create', `product:${body.id}`, {
            trustRootVersion: root.version,
          });
          return created;
        });
        return c.json(view(row), 201);
      },
    )

    .openapi(
      createRoute({
        method: 'get',
        path: '/v1/admin/products',
        tags: ['admin: products'],
        summary: 'List products',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.read)] as const,
        responses: {
          200: { description: 'Products', ...json(listOf(ProductSchema)) },
          ...errorResponses,
        },
      }),
      async (c) => {
        const rows = await db.select().from(products).orderBy(asc(products.id)).limit(1000);
        return c.json({ items: rows.map(view) }, 200);
      },
    )

    .openapi(
      createRoute({
        method: 'get',
        path: '/v1/admin/products/{id}',
        tags: ['admin: products'],
        summary: 'Get a product and its current trust root',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.read)] as const,
        request: { params: ProductIdParam },
        responses: { 200: { description: 'The product', ...json(ProductSchema) }, ...errorResponses },
      }),
      async (c) => c.json(view(await loadProduct(deps, c.req.valid('param').id)), 200),
    )

    .openapi(
      createRoute({
        method: 'patch',
        path: '/v1/admin/products/{id}',
        tags: ['admin: products'],
        summary: 'Change product settings: description, requireApproval (four-eyes approval of its rollouts)',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.admin)] as const,
        request: { params: ProductIdParam, body: { required: true, ...json(ProductUpdateSchema) } },
        responses: { 200: { description: 'Updated', ...json(ProductSchema) }, ...errorResponses },
      }),
      async (c) => {
        const { id } = c.req.valid('param');
        const body = c.req.valid('json');
        const row = await db.transaction(async (tx) => {
          const [updated] = await tx
            .update(products)
            .set({
              ...(body.description === undefined ? {} : { description: body.description }),
              ...(body.requireApproval === undefined ? {} : { requireApproval: body.requireApproval }),
              updatedAt: deps.clock.now(),
            })
            .where(eq(products.id, id))
            .returning();
          if (updated === undefined)
            throw new ServerError(
              'ERR_NOT_FOUND',
              `no product "${id}"; create it first (POST /v1/admin/products)`,
            );
          await audit(tx, c.get('actor'), 'product.update', `product:${id}`, body);
          return updated;
        });
        return c.json(view(row), 200);
      },
    )

    .openapi(
      createRoute({
        method: 'put',
        path: '/v1/admin/products/{id}/trust-root',
        tags: ['admin: products'],
        summary:
          'Rotate the trust root: version N+1 signed by thresholds of the current and the new root keys',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.admin)] as const,
        request: { params: ProductIdParam, body: { required: true, ...json(TrustRootUpdateSchema) } },
        responses: { 200: { description: 'Rotated', ...json(ProductSchema) }, ...errorResponses },
      }),
      async (c) => {
        const { id } = c.req.valid('param');
        const body = c.req.valid('json');
        const current = await loadProduct(deps, id);
        const currentRoot = await checkTrustRoot(current.trustRoot as SignedRoot);
        const signed = asSignedRoot(body.trustRoot);
        const next = await checkRootUpdate(currentRoot, signed);
        const stored = typeof signed === 'string' ? (JSON.parse(signed) as unknown) : signed;
        const row = await db.transaction(async (tx) => {
          // Compare-and-set on the version: two concurrent rotations cannot both win.
          const [updated] = await tx
            .update(products)
            .set({ trustRoot: stored, trustRootVersion: next.version, updatedAt: deps.clock.now() })
            .where(and(eq(products.id, id), eq(products.trustRootVersion, currentRoot.version)))
            .returning();
          if (updated === undefined)
            throw new ServerError('ERR_CONFLICT', `trust root of "${id}" changed meanwhile; retry`);
          // Kept for devices still on an older root: the poll serves them the chain (device.ts).
          await tx
            .insert(productTrustRoots)
            .values({ product: id, version: next.version, trustRoot: stored });
          await audit(tx, c.get('actor'), 'product.rotate-root', `product:${id}`, {
            from: currentRoot.version,
            to: next.version,
          });
          return updated;
        });
        return c.json(view(row), 200);
      },
    );
}
