// Blob transfer: admins upload content-addressed blobs (streamed into the blob store, digest and
// size verified while streaming, capped); devices and admins download them — a 302 to a
// presigned URL when the store can make one (S3, so a CDN can serve it), else streamed here with
// single-range support (RFC 9110 §14). A device may fetch only blobs of a release it is offered:
// the release's own blobs and the deltas registered for it.
import { keyToSha256Hex } from '@abota/blobstore';
import { createRoute, z } from '@hono/zod-openapi';
import { and, asc, eq, gt, inArray, isNull, lt, not, type SQL, sql } from 'drizzle-orm';
import type { Context, MiddlewareHandler } from 'hono';
import { createRouter } from './router.js';
import { findApiKey, requireRole, ROLE_GROUPS } from '../auth/api-keys.js';
import { authenticateDevice } from '../auth/device-jwt.js';
import { limitDevice } from '../rate-limit.js';
import { bearerToken } from '../auth/secrets.js';
import type { AppDeps, AppEnv } from '../context.js';
import {
  auditLog,
  blobs,
  releaseBlobs,
  releaseDeltas,
  releases,
  rolloutDevices,
  rollouts,
} from '../db/schema.js';
import { ServerError } from '../errors.js';
import { decideRange } from '../http-range.js';
import { selectorMatches } from '../rollout/policy.js';
import {
  BlobInfoSchema,
  BlobListItemSchema,
  BlobListQuerySchema,
  BlobPutResponseSchema,
  errorResponses,
  pageOf,
  Sha256HexParam,
} from '@abota/api';
import { audit } from './admin/common.js';

/** Counts bytes of a request body and stops at `maxBytes` + 1 so an oversize body is refused early. */
async function* cappedBody(body: ReadableStream<Uint8Array>, maxBytes: number): AsyncGenerator<Uint8Array> {
  let total = 0;
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      total += value.byteLength;
      if (total > maxBytes)
        throw new ServerError('ERR_BODY_TOO_LARGE', `blob exceeds the limit of ${maxBytes} bytes`);
      yield value;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/** An AsyncIterable as a web ReadableStream with backpressure; cancelling closes the source. */
function toReadableStream(source: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const iterator = source[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await iterator.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel() {
      await iterator.return?.();
    },
  });
}

/** PostgreSQL's foreign_key_violation (SQLSTATE 23503), possibly wrapped by drizzle. */
function isForeignKeyViolation(error: unknown): boolean {
  let e = error;
  for (let depth = 0; depth < 5 && typeof e === 'object' && e !== null; depth++) {
    if ((e as { code?: unknown }).code === '23503') return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** The releases that hold `digest`: among their blobs, or as a delta registered for them. */
const releaseHolds = (digest: string) =>
  sql`${releases.id} IN (SELECT ${releaseBlobs.releaseId} FROM ${releaseBlobs} WHERE ${releaseBlobs.digest} = ${digest}
    UNION ALL SELECT ${releaseDeltas.releaseId} FROM ${releaseDeltas} WHERE ${releaseDeltas.digest} = ${digest})`;

/**
 * May this device fetch `digest`? Only if a live rollout it matches targets a release with it.
 * Returns those rollouts' ids (empty: refused).
 */
async function deviceMayFetch(
  deps: AppDeps,
  device: { id: string; product: string; hardware: string; tags: string[]; currentVersion: string | null },
  digest: string,
): Promise<string[]> {
  const rows = await deps.db
    .select({ id: rollouts.id, product: rollouts.product, selector: rollouts.selector })
    .from(releases)
    .innerJoin(rollouts, eq(rollouts.releaseId, releases.id))
    .where(
      and(
        releaseHolds(digest),
        eq(releases.product, device.product),
        eq(releases.yanked, false),
        inArray(rollouts.state, ['active', 'paused', 'completed']),
      ),
    );
  if (rows.some((r) => selectorMatches(r.selector, r.product, device))) return rows.map((r) => r.id);
  if (rows.length === 0) return [];
  // Selectors that depend on history (a rollback's `fromRollout`) are settled by the offer itself.
  const offered = await deps.db
    .select({ rolloutId: rolloutDevices.rolloutId })
    .from(rolloutDevices)
    .where(
      and(
        eq(rolloutDevices.deviceId, device.id),
        inArray(
          rolloutDevices.rolloutId,
          rows.map((r) => r.id),
        ),
      ),
    )
    .limit(1);
  return offered.length > 0 ? rows.map((r) => r.id) : [];
}

/**
 * Marks the device's offers of these rollouts as downloaded (first time only): from then on a
 * failure it reports counts against the rollout (progress.ts). One indexed UPDATE per download
 * request; no row when the device was not offered any of them.
 */
async function recordBlobFetch(deps: AppDeps, deviceId: string, rolloutIds: string[]): Promise<void> {
  await deps.db
    .update(rolloutDevices)
    .set({ blobsFetchedAt: deps.clock.now() })
    .where(
      and(
        eq(rolloutDevices.deviceId, deviceId),
        inArray(rolloutDevices.rolloutId, rolloutIds),
        isNull(rolloutDevices.blobsFetchedAt),
      ),
    );
}

export function blobRoutes(deps: AppDeps) {
  const { db, blobs: store, config } = deps;
  const app = createRouter();

  app.openAPIRegistry.registerPath({
    method: 'get',
    path: '/v1/device/blobs/sha256/{hex}',
    tags: ['device'],
    summary: 'Download a blob (device JWT or admin API key): 302 to a presigned URL, or 200/206 with Range',
    security: [{ deviceJwt: [] }, { apiKey: [] }],
    request: { params: Sha256HexParam, headers: z.object({ range: z.string().optional() }) },
    responses: {
      200: {
        description: 'The whole blob',
        content: { 'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) } },
      },
      206: {
        description: 'The requested byte range',
        content: { 'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) } },
      },
      302: { description: 'Redirect to a presigned URL' },
      416: { description: 'Range not satisfiable' },
      ...errorResponses,
    },
  });

  const download = async (c: Context<AppEnv>) => {
    const hex = c.req.param('hex') ?? '';
    if (!/^[0-9a-f]{64}$/.test(hex))
      throw new ServerError('ERR_VALIDATION', 'blob path must end in sha256/<64 lower-case hex>');
    const digest = `sha256:${hex}`;
    const key = `sha256/${hex}`;
    const token = bearerToken(c.req.header('authorization'));
    if (token === undefined)
      throw new ServerError('ERR_UNAUTHENTICATED', 'blob downloads need a device JWT or an admin API key');
    if (token.startsWith('abk_')) {
      const key = await findApiKey(deps, token);
      if (key === undefined)
        throw new ServerError('ERR_UNAUTHENTICATED', 'the API key is unknown or revoked');
      // Blob contents are the product's images: read by those who publish them, not by every
      // read-only key (README "Security"). Presence and size stay readable: GET /v1/admin/blobs.
      if (!(ROLE_GROUPS.publish as readonly string[]).includes(key.role)) {
        throw new ServerError(
          'ERR_FORBIDDEN',
          `a ${key.role} key cannot download blob contents; use a publisher or admin key`,
        );
      }
    }
    // Set for a device: the rollouts whose offer this download counts for (recordBlobFetch), once
    // the answer is known to carry bytes — a refused request (404, 416) records nothing.
    let fetchedFor: { deviceId: string; rolloutIds: string[] } | undefined;
    if (!token.startsWith('abk_')) {
      const device = await authenticateDevice(deps, token);
      limitDevice(deps, device.id);
      // Same answer for "exists but not yours" and "does not exist": no probing of other releases.
      const rolloutIds = await deviceMayFetch(deps, device, digest);
      if (rolloutIds.length === 0)
        throw new ServerError('ERR_NOT_FOUND', `no blob ${digest} in any release offered to this device`);
      if (c.req.method !== 'HEAD') fetchedFor = { deviceId: device.id, rolloutIds };
    }
    const recordFetch = async () => {
      if (fetchedFor !== undefined) await recordBlobFetch(deps, fetchedFor.deviceId, fetchedFor.rolloutIds);
    };
    if (config.blobDelivery === 'redirect') {
      const url = await store.presignGet(key, { expiresInSeconds: config.presignExpiresSeconds });
      if (url !== undefined) {
        await recordFetch();
        c.header('cache-control', 'no-store');
        return c.redirect(url, 302);
      }
    }
    const info = await store.head(key);
    if (info === undefined) throw new ServerError('ERR_NOT_FOUND', `blob ${digest} is not in the blob store`);
    const total = info.sizeBytes;
    c.header('accept-ranges', 'bytes');
    c.header('etag', `"${hex}"`);
    c.header('content-type', 'application/octet-stream');
    // Immutable: the URL names the content.
    c.header('cache-control', 'private, max-age=31536000, immutable');
    const decision = decideRange(c.req.header('range'), total);
    if (decision.kind === 'unsatisfiable') {
      c.header('content-range', `bytes */${total}`);
      return c.json(
        {
          error: {
            code: 'ERR_RANGE_NOT_SATISFIABLE',
            message: `range ${c.req.header('range')} is outside the blob's ${total} bytes`,
          },
        },
        416,
      );
    }
    if (decision.kind === 'partial') {
      // HEAD: the headers only. Opening the blob here would leak its file handle: hono drops a
      // HEAD answer's body without cancelling it (issue #16 defect 6, test/blob-head-fd.test.ts).
      if (c.req.method === 'HEAD') {
        c.header('content-range', `bytes ${decision.start}-${decision.end}/${total}`);
        c.header('content-length', String(decision.end - decision.start + 1));
        return c.body(null, 206);
      }
      await recordFetch();
      const read = await store.get(key, { start: decision.start, end: decision.end });
      c.header('content-range', `bytes ${read.start}-${read.end}/${read.totalSizeBytes}`);
      c.header('content-length', String(read.end - read.start + 1));
      return c.body(toReadableStream(read.body), 206);
    }
    c.header('content-length', String(total));
    if (c.req.method === 'HEAD') return c.body(null, 200);
    await recordFetch();
    const read = await store.get(key);
    return c.body(toReadableStream(read.body), 200);
  };

  // Hono routes HEAD to GET handlers: answer HEAD here with the blob's size and no body.
  const headBlobInfo: MiddlewareHandler<AppEnv> = async (c, next) => {
    if (c.req.method !== 'HEAD') return next();
    const hex = c.req.param('hex') ?? '';
    const info = /^[0-9a-f]{64}$/.test(hex) ? await store.head(`sha256/${hex}`) : undefined;
    if (info === undefined) return c.body(null, 404);
    c.header('content-length', String(info.sizeBytes));
    return c.body(null, 200);
  };

  return app
    .openapi(
      createRoute({
        method: 'get',
        path: '/v1/admin/blobs/sha256/{hex}',
        tags: ['admin: releases'],
        summary:
          'Is this blob in the store? HEAD answers with Content-Length = its size (resumable pushes skip present blobs)',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.read), headBlobInfo] as const,
        request: { params: Sha256HexParam },
        responses: {
          200: { description: 'Present', content: { 'application/json': { schema: BlobInfoSchema } } },
          ...errorResponses,
        },
      }),
      async (c) => {
        const { hex } = c.req.valid('param');
        const info = await store.head(`sha256/${hex}`);
        if (info === undefined)
          throw new ServerError('ERR_NOT_FOUND', `blob sha256:${hex} is not in the blob store`);
        return c.json({ digest: `sha256:${hex}`, sizeBytes: info.sizeBytes }, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'delete',
        path: '/v1/admin/blobs/sha256/{hex}',
        tags: ['admin: releases'],
        summary:
          'Delete a blob no release references (as an artifact, hash tree or registered delta); 409 ERR_BLOB_IN_USE otherwise',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.publish)] as const,
        request: { params: Sha256HexParam },
        responses: {
          200: { description: 'Deleted', content: { 'application/json': { schema: BlobInfoSchema } } },
          ...errorResponses,
        },
      }),
      async (c) => {
        const { hex } = c.req.valid('param');
        const digest = `sha256:${hex}`;
        const key = `sha256/${hex}`;
        const [asReleaseBlob] = await db
          .select({ releaseId: releaseBlobs.releaseId, role: releaseBlobs.role })
          .from(releaseBlobs)
          .where(eq(releaseBlobs.digest, digest))
          .limit(1);
        if (asReleaseBlob !== undefined) {
          throw new ServerError(
            'ERR_BLOB_IN_USE',
            `blob ${digest} is ${asReleaseBlob.role} of release ${asReleaseBlob.releaseId}; releases keep their blobs`,
          );
        }
        const [asDelta] = await db
          .select({ id: releaseDeltas.id, releaseId: releaseDeltas.releaseId })
          .from(releaseDeltas)
          .where(eq(releaseDeltas.digest, digest))
          .limit(1);
        if (asDelta !== undefined) {
          throw new ServerError(
            'ERR_BLOB_IN_USE',
            `blob ${digest} is delta ${asDelta.id} of release ${asDelta.releaseId}; DELETE /v1/admin/releases/${asDelta.releaseId}/deltas/${asDelta.id} first`,
          );
        }
        const info = await store.head(key);
        const deleted = await db.transaction(async (tx) => {
          // The foreign keys of release_blobs and release_deltas make a reference added since the
          // checks above fail this delete, so a blob is never removed from under a release.
          const rows = await tx
            .delete(blobs)
            .where(eq(blobs.digest, digest))
            .returning({ sizeBytes: blobs.sizeBytes })
            .catch((error: unknown) => {
              if (!isForeignKeyViolation(error)) throw error;
              throw new ServerError('ERR_BLOB_IN_USE', `blob ${digest} was just referenced by a release`, {
                cause: error,
              });
            });
          if (rows.length === 0 && info === undefined) return undefined;
          await audit(tx, c.get('actor'), 'blob.delete', digest, {
            sizeBytes: info?.sizeBytes ?? rows[0]?.sizeBytes ?? null,
          });
          if (info !== undefined) await store.delete(key);
          return { digest, sizeBytes: info?.sizeBytes ?? rows[0]?.sizeBytes ?? 0 };
        });
        if (deleted === undefined)
          throw new ServerError('ERR_NOT_FOUND', `blob ${digest} is not in the blob store`);
        return c.json(deleted, 200);
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        path: '/v1/admin/blobs',
        tags: ['admin: releases'],
        summary:
          'List stored blobs by digest, each with whether a release references it (filters: unreferenced, createdBefore): what a garbage collection may delete',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.read)] as const,
        request: { query: BlobListQuerySchema },
        responses: {
          200: {
            description: 'A page of blobs; nextCursor continues',
            content: { 'application/json': { schema: pageOf(BlobListItemSchema) } },
          },
          ...errorResponses,
        },
      }),
      async (c) => {
        const q = c.req.valid('query');
        // Spelled out: drizzle leaves columns unqualified inside sql``, which would make the
        // subqueries compare their own column with itself.
        const referenced = sql<boolean>`(exists (select 1 from "release_blobs" r where r."digest" = "blobs"."digest") or exists (select 1 from "release_deltas" d where d."digest" = "blobs"."digest"))`;
        const where: SQL[] = [];
        if (q.cursor !== undefined) where.push(gt(blobs.digest, q.cursor));
        if (q.unreferenced === 'true') where.push(not(referenced));
        if (q.unreferenced === 'false') where.push(referenced);
        if (q.createdBefore !== undefined) where.push(lt(blobs.createdAt, new Date(q.createdBefore)));
        const rows = await db
          .select({
            digest: blobs.digest,
            sizeBytes: blobs.sizeBytes,
            createdAt: blobs.createdAt,
            referenced,
          })
          .from(blobs)
          .where(and(...where))
          .orderBy(asc(blobs.digest))
          .limit(q.limit + 1);
        const items = rows.slice(0, q.limit).map((r) => ({
          digest: r.digest,
          sizeBytes: r.sizeBytes,
          createdAt: r.createdAt.toISOString(),
          referenced: r.referenced === true,
        }));
        const last = items.at(-1);
        return c.json(
          { items, nextCursor: rows.length > q.limit && last !== undefined ? last.digest : null },
          200,
        );
      },
    )
    .get('/v1/device/blobs/sha256/:hex', download);
}

/**
 * PUT of a whole blob, streamed into the store with its own cap (not buffered): app.ts mounts
 * this sub-app without the JSON body limit.
 */
export function blobUploadRoutes(deps: AppDeps) {
  const { db, blobs: store, config } = deps;
  return createRouter().openapi(
    createRoute({
      method: 'put',
      path: '/v1/admin/blobs/sha256/{hex}',
      tags: ['admin: releases'],
      summary: 'Upload a blob; its SHA-256 must equal the path, its size at most the configured cap',
      security: [{ apiKey: [] }],
      middleware: [requireRole(deps, ROLE_GROUPS.publish)] as const,
      request: {
        params: Sha256HexParam,
        body: {
          content: { 'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) } },
        },
      },
      responses: {
        200: {
          description: 'Already present',
          content: { 'application/json': { schema: BlobPutResponseSchema } },
        },
        201: { description: 'Stored', content: { 'application/json': { schema: BlobPutResponseSchema } } },
        ...errorResponses,
      },
    }),
    async (c) => {
      const { hex } = c.req.valid('param');
      const key = `sha256/${hex}`;
      keyToSha256Hex(key);
      const declared = c.req.header('content-length');
      let sizeBytes: number | undefined;
      if (declared !== undefined) {
        sizeBytes = Number(declared);
        if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0)
          throw new ServerError('ERR_VALIDATION', `Content-Length "${declared}" is not a byte count`);
        if (sizeBytes > config.maxBlobSizeBytes) {
          throw new ServerError(
            'ERR_BODY_TOO_LARGE',
            `blob of ${sizeBytes} bytes exceeds the limit of ${config.maxBlobSizeBytes} bytes`,
          );
        }
      }
      const existing = await store.head(key);
      const raw = c.req.raw.body;
      const body = raw === null ? (async function* () {})() : cappedBody(raw, config.maxBlobSizeBytes);
      const info =
        existing ??
        (await store.put(key, body, { ...(sizeBytes === undefined ? {} : { sizeBytes }), sha256: hex }));
      if (existing !== undefined && raw !== null) await raw.cancel().catch(() => {});
      const digest = `sha256:${hex}`;
      await db.transaction(async (tx) => {
        await tx.insert(blobs).values({ digest, sizeBytes: info.sizeBytes }).onConflictDoNothing();
        if (existing === undefined) {
          await tx.insert(auditLog).values({
            actor: c.get('actor'),
            action: 'blob.upload',
            target: digest,
            details: { sizeBytes: info.sizeBytes },
          });
        }
      });
      return c.json(
        { digest, sizeBytes: info.sizeBytes, created: existing === undefined },
        existing === undefined ? 201 : 200,
      );
    },
  );
}
