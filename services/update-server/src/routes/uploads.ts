// Resumable blob uploads (issue #4): a large blob is sent as numbered parts into an upload session
// of the blob store (@abota/blobstore createUpload/uploadPart/...), then completed — assembled,
// verified against its digest and size, and only then stored under its content address. The
// session lives in the blob store, not in this process, so any replica continues it; maintenance
// removes sessions idle for longer than `uploadSessionIdleSeconds`.
import { digestToKey, type UploadSession } from '@abota/blobstore';
import { createRoute, z } from '@hono/zod-openapi';
import { createRouter, json } from './router.js';
import { requireRole, ROLE_GROUPS } from '../auth/api-keys.js';
import type { AppDeps } from '../context.js';
import { auditLog, blobs } from '../db/schema.js';
import { ServerError } from '../errors.js';
import { BlobPutResponseSchema, errorResponses } from '@abota/api';
import {
  UploadCreateSchema,
  UploadIdParam,
  UploadListQuerySchema,
  UploadListSchema,
  UploadPartParam,
  UploadPartSchema,
  UploadSchema,
} from '@abota/api';

/** `Content-Digest: sha-256=:<base64>:` (RFC 9530) → hex; undefined when absent. */
export function partDigestFromHeader(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = /(?:^|,)\s*sha-256=:([A-Za-z0-9+/]{43}=):\s*(?:,|$)/.exec(header);
  if (match?.[1] === undefined) {
    throw new ServerError(
      'ERR_VALIDATION',
      'Content-Digest must carry sha-256=:<base64 of the 32-byte SHA-256>: (RFC 9530), or be left out',
    );
  }
  return Buffer.from(match[1], 'base64').toString('hex');
}

/**
 * A request body as an AsyncIterable; stopping early (the store refusing it) cancels the stream.
 * A client that goes away mid-part is a 400 (logged quietly), not an internal error.
 */
async function* requestBody(
  body: ReadableStream<Uint8Array> | null,
  what: string,
): AsyncGenerator<Uint8Array> {
  if (body === null) return;
  const reader = body.getReader();
  let receivedBytes = 0;
  try {
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch (error) {
        throw new ServerError(
          'ERR_VALIDATION',
          `the body of ${what} broke off after ${receivedBytes} bytes (${error instanceof Error ? error.message : String(error)}); nothing stored, send the part again`,
        );
      }
      if (chunk.done) return;
      receivedBytes += chunk.value.byteLength;
      yield chunk.value;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

export function uploadRoutes(deps: AppDeps) {
  const { db, blobs: store, config, clock } = deps;

  const view = (s: UploadSession) => ({
    uploadId: s.uploadId,
    digest: `sha256:${s.key.slice('sha256/'.length)}`,
    sizeBytes: s.sizeBytes,
    partSizeBytes: s.partSizeBytes,
    partCount: s.partCount,
    parts: s.parts,
    receivedBytes: s.receivedBytes,
    createdAt: s.createdAt.toISOString(),
    updatedAt: s.updatedAt.toISOString(),
    expiresAt: new Date(s.updatedAt.getTime() + config.uploadSessionIdleSeconds * 1000).toISOString(),
  });

  return createRouter()
    .openapi(
      createRoute({
        method: 'post',
        path: '/v1/admin/uploads',
        tags: ['admin: releases'],
        summary:
          'Start a resumable upload of one blob in parts (200 with created:false when the blob is already stored)',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.publish)] as const,
        request: { body: { required: true, ...json(UploadCreateSchema) } },
        responses: {
          200: { description: 'The blob is already stored', ...json(BlobPutResponseSchema) },
          201: { description: 'Session started', ...json(UploadSchema) },
          ...errorResponses,
        },
      }),
      async (c) => {
        const body = c.req.valid('json');
        if (body.sizeBytes > config.maxBlobSizeBytes) {
          throw new ServerError(
            'ERR_BODY_TOO_LARGE',
            `blob of ${body.sizeBytes} bytes exceeds the limit of ${config.maxBlobSizeBytes} bytes`,
          );
        }
        const key = digestToKey(body.digest);
        const existing = await store.head(key);
        if (existing !== undefined) {
          if (existing.sizeBytes !== body.sizeBytes) {
            throw new ServerError(
              'ERR_VALIDATION',
              `${body.digest} is stored with ${existing.sizeBytes} bytes, not ${body.sizeBytes}`,
            );
          }
          return c.json({ digest: body.digest, sizeBytes: existing.sizeBytes, created: false }, 200);
        }
        const session = await store.createUpload(key, {
          sizeBytes: body.sizeBytes,
          ...(body.partSizeBytes === undefined ? {} : { partSizeBytes: body.partSizeBytes }),
        });
        return c.json(view(session), 201);
      },
    )

    .openapi(
      createRoute({
        method: 'get',
        path: '/v1/admin/uploads',
        tags: ['admin: releases'],
        summary: 'Open upload sessions, oldest first (optionally those of one digest), at most 100',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.publish)] as const,
        request: { query: UploadListQuerySchema },
        responses: { 200: { description: 'Sessions', ...json(UploadListSchema) }, ...errorResponses },
      }),
      async (c) => {
        const { digest } = c.req.valid('query');
        const sessions = await store.listUploads(digest === undefined ? {} : { key: digestToKey(digest) });
        return c.json({ items: sessions.map(view) }, 200);
      },
    )

    .openapi(
      createRoute({
        method: 'get',
        path: '/v1/admin/uploads/{id}',
        tags: ['admin: releases'],
        summary: 'An upload session and the parts received so far (resume: send the others)',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.publish)] as const,
        request: { params: UploadIdParam },
        responses: { 200: { description: 'The session', ...json(UploadSchema) }, ...errorResponses },
      }),
      async (c) => c.json(view(await store.getUpload(c.req.valid('param').id)), 200),
    )

    .openapi(
      createRoute({
        method: 'post',
        path: '/v1/admin/uploads/{id}/complete',
        tags: ['admin: releases'],
        summary:
          'Assemble the parts, verify digest and size, store the blob (409 ERR_UPLOAD_INCOMPLETE lists missing parts; 422 on a digest mismatch, which ends the session)',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.publish)] as const,
        request: { params: UploadIdParam },
        responses: {
          200: { description: 'The blob was already stored', ...json(BlobPutResponseSchema) },
          201: { description: 'Stored', ...json(BlobPutResponseSchema) },
          ...errorResponses,
        },
      }),
      async (c) => {
        const { id } = c.req.valid('param');
        const session = await store.getUpload(id);
        const done = await store.completeUpload(id);
        const digest = `sha256:${done.key.slice('sha256/'.length)}`;
        await db.transaction(async (tx) => {
          await tx.insert(blobs).values({ digest, sizeBytes: done.sizeBytes }).onConflictDoNothing();
          if (done.created) {
            await tx.insert(auditLog).values({
              actor: c.get('actor'),
              action: 'blob.upload',
              target: digest,
              details: {
                sizeBytes: done.sizeBytes,
                uploadId: id,
                parts: session.partCount,
                startedAt: session.createdAt.toISOString(),
                completedAt: clock.now().toISOString(),
              },
            });
          }
        });
        return c.json({ digest, sizeBytes: done.sizeBytes, created: done.created }, done.created ? 201 : 200);
      },
    )

    .openapi(
      createRoute({
        method: 'delete',
        path: '/v1/admin/uploads/{id}',
        tags: ['admin: releases'],
        summary: 'Abort an upload session and delete its parts (204 also when it does not exist)',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.publish)] as const,
        request: { params: UploadIdParam },
        responses: { 204: { description: 'Gone' }, ...errorResponses },
      }),
      async (c) => {
        await store.abortUpload(c.req.valid('param').id);
        return c.body(null, 204);
      },
    );
}

/**
 * PUT of one part, streamed into the store, which reads at most the part's size: app.ts mounts
 * this sub-app without the JSON body limit.
 */
export function uploadPartRoutes(deps: AppDeps) {
  const { blobs: store } = deps;

  return createRouter().openapi(
    createRoute({
      method: 'put',
      path: '/v1/admin/uploads/{id}/parts/{n}',
      tags: ['admin: releases'],
      summary:
        'Upload part n: exactly partSizeBytes (the remainder for the last part); Content-Digest sha-256 checked when sent; replaces an earlier copy',
      security: [{ apiKey: [] }],
      middleware: [requireRole(deps, ROLE_GROUPS.publish)] as const,
      request: {
        params: UploadPartParam,
        headers: z.object({
          'content-digest': z
            .string()
            .optional()
            .openapi({ description: 'RFC 9530, e.g. sha-256=:<base64>:' }),
        }),
        body: {
          content: { 'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) } },
        },
      },
      responses: { 200: { description: 'Stored', ...json(UploadPartSchema) }, ...errorResponses },
    }),
    async (c) => {
      const { id, n } = c.req.valid('param');
      const sha256 = partDigestFromHeader(c.req.header('content-digest'));
      const declared = c.req.header('content-length');
      let sizeBytes: number | undefined;
      if (declared !== undefined) {
        sizeBytes = Number(declared);
        if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0)
          throw new ServerError('ERR_VALIDATION', `Content-Length "${declared}" is not a byte count`);
      }
      // The store reads at most the part's exact size (+ one chunk) before refusing: bounded.
      const part = await store.uploadPart(id, n, requestBody(c.req.raw.body, `part ${n} of upload ${id}`), {
        ...(sizeBytes === undefined ? {} : { sizeBytes }),
        ...(sha256 === undefined ? {} : { sha256 }),
      });
      return c.json(part, 200);
    },
  );
}
