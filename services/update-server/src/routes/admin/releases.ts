// Releases: push a signed manifest (verified against the product's trust root, every referenced
// blob present in the store with the declared size), list, get, yank. The JWS is stored verbatim:
// devices verify it themselves, the server's parsed columns are for queries only.
import { digestToKey } from '@abota/blobstore';
import { ManifestError, parseGeneralJws, type ReleaseManifest, type SignedRoot } from '@abota/manifest';
import { createRoute } from '@hono/zod-openapi';
import { and, asc, eq, gt, type SQL } from 'drizzle-orm';
import { createRouter } from '../router.js';
import { requireRole, ROLE_GROUPS } from '../../auth/api-keys.js';
import type { AppDeps } from '../../context.js';
import { blobs, releaseBlobs, releases, rollouts } from '../../db/schema.js';
import { ServerError } from '../../errors.js';
import { checkManifest, checkTrustRoot } from '../../manifest-check.js';
import {
  errorResponses,
  IdParam,
  pageOf,
  ReleaseListQuerySchema,
  ReleasePushSchema,
  ReleaseSchema,
  YankSchema,
} from '@abota/api';
import { loadProduct } from './products.js';
import { audit, decodeCursor, json, page } from './common.js';

type ReleaseRow = typeof releases.$inferSelect;
const view = (r: ReleaseRow) => ({
  id: r.id,
  product: r.product,
  version: r.version,
  securityVersion: r.securityVersion,
  compatible: r.compatible,
  expires: r.expires.toISOString(),
  yanked: r.yanked,
  yankedReason: r.yankedReason,
  createdAt: r.createdAt.toISOString(),
});

/** Every blob a manifest references, with where (FORMATS-independent: CONTRACTS.md manifest shape). */
export function referencedBlobs(
  manifest: ReleaseManifest,
): { digest: string; sizeBytes: number; role: string }[] {
  const out: { digest: string; sizeBytes: number; role: string }[] = [];
  for (const [slotClass, image] of Object.entries(manifest.images)) {
    if (image === undefined) continue;
    out.push({
      digest: image.artifact.digest,
      sizeBytes: image.artifact.sizeBytes,
      role: `images.${slotClass}.artifact`,
    });
    out.push({
      digest: image.verity.hashTree.digest,
      sizeBytes: image.verity.hashTree.sizeBytes,
      role: `images.${slotClass}.verity.hashTree`,
    });
  }
  // One row per digest (the same blob may serve two roles, e.g. identical boot images).
  return [...new Map(out.map((b) => [b.digest, b])).values()];
}

/** The product a manifest claims, read BEFORE verification only to pick the trust root to verify with. */
function claimedProduct(manifestJws: string): string {
  const jws = parseGeneralJws(manifestJws, 'manifest.jws');
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(jws.payload, 'base64url').toString('utf8'));
  } catch {
    throw new ManifestError('ERR_MANIFEST_INVALID', 'manifest.jws payload is not base64url-encoded JSON');
  }
  const product = (value as { product?: unknown } | null)?.product;
  if (typeof product !== 'string')
    throw new ManifestError('ERR_MANIFEST_INVALID', 'release manifest: product: expected a string');
  return product;
}

export function releaseRoutes(deps: AppDeps) {
  const { db, blobs: store } = deps;

  return createRouter()
    .openapi(
      createRoute({
        method: 'post',
        path: '/v1/admin/releases',
        tags: ['admin: releases'],
        summary:
          "Push a release: manifest JWS verified against the product's trust root; all blobs must be uploaded first",
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.publish)] as const,
        request: { body: { required: true, ...json(ReleasePushSchema) } },
        responses: {
          200: { description: 'The same release was already pushed', ...json(ReleaseSchema) },
          201: { description: 'Created', ...json(ReleaseSchema) },
          ...errorResponses,
        },
      }),
      async (c) => {
        const { manifestJws } = c.req.valid('json');
        const product = await loadProduct(deps, claimedProduct(manifestJws));
        const root = await checkTrustRoot(product.trustRoot as SignedRoot);
        const { manifest } = await checkManifest(manifestJws, root, deps.clock.now());
        const referenced = referencedBlobs(manifest);
        for (const blob of referenced) {
          const info = await store.head(digestToKey(blob.digest));
          if (info === undefined) {
            throw new ServerError(
              'ERR_BLOB_MISSING',
              `${blob.role} ${blob.digest} is not uploaded; PUT /v1/admin/blobs/sha256/<hex> first`,
            );
          }
          if (info.sizeBytes !== blob.sizeBytes) {
            throw new ServerError(
              'ERR_BLOB_MISSING',
              `${blob.role} ${blob.digest} is ${info.sizeBytes} bytes in the store, the manifest says ${blob.sizeBytes}`,
            );
          }
        }
        const [existing] = await db
          .select()
          .from(releases)
          .where(and(eq(releases.product, manifest.product), eq(releases.version, manifest.version)))
          .limit(1);
        if (existing !== undefined) {
          if (existing.manifestJws === manifestJws) return c.json(view(existing), 200);
          throw new ServerError(
            'ERR_CONFLICT',
            `${manifest.product} ${manifest.version} already exists with a different manifest; bump the version`,
          );
        }
        const row = await db.transaction(async (tx) => {
          for (const blob of referenced)
            await tx
              .insert(blobs)
              .values({ digest: blob.digest, sizeBytes: blob.sizeBytes })
              .onConflictDoNothing();
          const [created] = await tx
            .insert(releases)
            .values({
              product: manifest.product,
              version: manifest.version,
              securityVersion: manifest.securityVersion,
              compatible: manifest.compatible,
              expires: new Date(manifest.expires),
              manifestJws,
              manifest,
            })
            .onConflictDoNothing()
            .returning();
          if (created === undefined)
            throw new ServerError(
              'ERR_CONFLICT',
              `${manifest.product} ${manifest.version} was pushed concurrently`,
            );
          await tx
            .insert(releaseBlobs)
            .values(referenced.map((b) => ({ releaseId: created.id, digest: b.digest, role: b.role })));
          await audit(tx, c.get('actor'), 'release.push', `release:${created.id}`, {
            product: manifest.product,
            version: manifest.version,
          });
          return created;
        });
        deps.logger.info(
          { product: manifest.product, version: manifest.version, releaseId: row.id },
          'release pushed',
        );
        return c.json(view(row), 201);
      },
    )

    .openapi(
      createRoute({
        method: 'get',
        path: '/v1/admin/releases',
        tags: ['admin: releases'],
        summary: 'List releases',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.read)] as const,
        request: { query: ReleaseListQuerySchema },
        responses: {
          200: { description: 'A page of releases', ...json(pageOf(ReleaseSchema)) },
          ...errorResponses,
        },
      }),
      async (c) => {
        const q = c.req.valid('query');
        const after = decodeCursor(q.cursor);
        const where: SQL[] = [];
        if (q.product !== undefined) where.push(eq(releases.product, q.product));
        if (after !== undefined) where.push(gt(releases.id, after));
        const rows = await db
          .select()
          .from(releases)
          .where(and(...where))
          .orderBy(asc(releases.id))
          .limit(q.limit + 1);
        return c.json(page(rows.map(view), q.limit), 200);
      },
    )

    .openapi(
      createRoute({
        method: 'get',
        path: '/v1/admin/releases/{id}',
        tags: ['admin: releases'],
        summary: 'Get a release with its manifest and blobs',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.read)] as const,
        request: { params: IdParam },
        responses: { 200: { description: 'The release', ...json(ReleaseSchema) }, ...errorResponses },
      }),
      async (c) => {
        const { id } = c.req.valid('param');
        const [row] = await db.select().from(releases).where(eq(releases.id, id)).limit(1);
        if (row === undefined) throw new ServerError('ERR_NOT_FOUND', `no release ${id}`);
        const blobRows = await db
          .select({ digest: releaseBlobs.digest, role: releaseBlobs.role })
          .from(releaseBlobs)
          .where(eq(releaseBlobs.releaseId, id));
        return c.json(
          { ...view(row), blobs: blobRows, manifest: row.manifest, manifestJws: row.manifestJws },
          200,
        );
      },
    )

    .openapi(
      createRoute({
        method: 'post',
        path: '/v1/admin/releases/{id}/yank',
        tags: ['admin: releases'],
        summary: 'Yank a release: never offered again (devices that installed it keep it)',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.publish)] as const,
        request: { params: IdParam, body: { required: true, ...json(YankSchema) } },
        responses: { 200: { description: 'Yanked', ...json(ReleaseSchema) }, ...errorResponses },
      }),
      async (c) => {
        const { id } = c.req.valid('param');
        const { reason } = c.req.valid('json');
        const row = await db.transaction(async (tx) => {
          const [updated] = await tx
            .update(releases)
            .set({ yanked: true, yankedReason: reason })
            .where(eq(releases.id, id))
            .returning();
          if (updated === undefined) throw new ServerError('ERR_NOT_FOUND', `no release ${id}`);
          await audit(tx, c.get('actor'), 'release.yank', `release:${id}`, { reason });
          return updated;
        });
        // Stop offering it now, on every replica, instead of when the rollout cache expires.
        const affected = await db
          .select({ id: rollouts.id })
          .from(rollouts)
          .where(eq(rollouts.releaseId, id));
        for (const r of affected) await deps.rollouts.changed(r.id);
        return c.json(view(row), 200);
      },
    );
}
