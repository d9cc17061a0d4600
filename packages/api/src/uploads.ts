// Schemas of the resumable upload API (the server's routes/uploads.ts): validation, types and
// OpenAPI in one place, like schemas.ts for the rest of the admin API.
import { z } from '@hono/zod-openapi';

const Digest = z
  .string()
  .regex(/^sha256:[0-9a-f]{64}$/, 'expected "sha256:" followed by 64 lower-case hex characters');

const UploadId = z.string().regex(/^[0-9a-f]{32}$/, 'expected an upload id: 32 lower-case hex characters');

export const UploadIdParam = z.object({
  id: UploadId.openapi({ param: { name: 'id', in: 'path' } }),
});
export const UploadPartParam = UploadIdParam.extend({
  n: z.coerce
    .number()
    .int()
    .min(1)
    .max(10_000)
    .openapi({ param: { name: 'n', in: 'path' }, type: 'integer', description: 'part number, 1-based' }),
});

export const UploadCreateSchema = z
  .strictObject({
    digest: Digest,
    sizeBytes: z.int().min(1),
    partSizeBytes: z.int().min(1).optional().openapi({
      description: "within the store's limits; default 8 MiB, raised when 10,000 parts would not do",
    }),
  })
  .openapi('UploadCreate');

export const UploadPartSchema = z
  .object({ partNumber: z.int(), sizeBytes: z.int(), sha256: z.string().regex(/^[0-9a-f]{64}$/) })
  .openapi('UploadPart');

export const UploadSchema = z
  .object({
    // A client puts the id into the paths of its next calls: the schema says exactly what it is.
    uploadId: UploadId,
    digest: Digest,
    sizeBytes: z.int(),
    partSizeBytes: z.int(),
    partCount: z.int(),
    parts: z.array(UploadPartSchema),
    receivedBytes: z.int(),
    createdAt: z.string(),
    updatedAt: z.string(),
    expiresAt: z.string().openapi({ description: 'removed by maintenance if no part arrives before then' }),
  })
  .openapi('Upload');

export const UploadListQuerySchema = z.object({ digest: Digest.optional() });
export const UploadListSchema = z.object({ items: z.array(UploadSchema) }).openapi('UploadList');
