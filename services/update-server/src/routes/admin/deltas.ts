// Deltas of a release (docs/CONTRACTS.md "Deltas end to end"): a publisher registers a delta
// payload already uploaded as a blob; the server reads its 256-byte header (packages/delta
// FORMAT.md "Header") from the blob store and checks that it turns the named source into this
// release's image before devices are ever offered it. Deltas are unsigned: devices still verify
// every block they produce, these checks only keep useless or mislabelled offers out.
import { type BlobStore, digestToKey } from '@abota/blobstore';
import { DeltaError, type DeltaHeader, decodeHeader, HEADER_SIZE_BYTES } from '@abota/delta';
import type { ImageManifest, ReleaseManifest } from '@abota/manifest';
import { createRoute, type z } from '@hono/zod-openapi';
import { and, asc, eq } from 'drizzle-orm';
import { createRouter } from '../router.js';
import { requireRole, ROLE_GROUPS } from '../../auth/api-keys.js';
import type { AppDeps } from '../../context.js';
import { blobs, releaseDeltas, releases } from '../../db/schema.js';
import { ServerError } from '../../errors.js';
import {
  DeltaListSchema,
  DeltaRegisterSchema,
  DeltaSchema,
  errorResponses,
  IdParam,
  ReleaseDeltaParam,
} from '@abota/api';
import { audit, json } from './common.js';

type DeltaRow = typeof releaseDeltas.$inferSelect;
type DeltaRegistration = z.infer<typeof DeltaRegisterSchema>;
type ImageName = DeltaRegistration['image'];

const view = (d: DeltaRow) => ({
  id: d.id,
  releaseId: d.releaseId,
  image: d.image as ImageName,
  sourceVersion: d.sourceVersion,
  sourceRootHash: d.sourceRootHash,
  sourceSizeBytes: d.sourceSizeBytes,
  targetRootHash: d.targetRootHash,
  digest: d.digest,
  sizeBytes: d.sizeBytes,
  createdAt: d.createdAt.toISOString(),
});

/** The same delta as `body` (a repeat registration answers 200 with the stored row). */
const sameDelta = (row: DeltaRow, body: DeltaRegistration) =>
  row.digest === body.digest && row.sizeBytes === body.sizeBytes && row.sourceVersion === body.sourceVersion;

/** The first HEADER_SIZE_BYTES of a blob (a range read: never more, whatever the store sends). */
async function readHeaderBytes(store: BlobStore, key: string): Promise<Uint8Array> {
  const read = await store.get(key, { start: 0, end: HEADER_SIZE_BYTES - 1 });
  const out = new Uint8Array(HEADER_SIZE_BYTES);
  let filled = 0;
  for await (const chunk of read.body) {
    const take = Math.min(chunk.byteLength, HEADER_SIZE_BYTES - filled);
    out.set(chunk.subarray(0, take), filled);
    filled += take;
    if (filled === HEADER_SIZE_BYTES) break;
  }
  return out.subarray(0, filled);
}

function decodeDeltaHeader(bytes: Uint8Array, digest: string): DeltaHeader {
  try {
    return decodeHeader(bytes).header;
  } catch (error) {
    if (error instanceof DeltaError)
      throw new ServerError('ERR_DELTA_INVALID', `blob ${digest} is not a valid delta: ${error.message}`);
    throw error;
  }
}

/** The header must turn `sourceRootHash` into exactly this release image (FORMAT.md "Header"). */
function checkHeaderAgainstRelease(
  header: DeltaHeader,
  body: DeltaRegistration,
  image: ImageManifest,
  where: string,
): void {
  const problems: string[] = [];
  if (header.target.rootHash !== image.verity.rootHash)
    problems.push(
      `names target root hash "${header.target.rootHash}", the release's ${body.image} has "${image.verity.rootHash}"`,
    );
  if (header.target.sizeBytes !== image.sizeBytes)
    problems.push(
      `produces ${header.target.sizeBytes} bytes, the release's ${body.image} is ${image.sizeBytes} bytes`,
    );
  if (header.blockSize !== image.verity.dataBlockSize)
    problems.push(
      `uses ${header.blockSize}-byte blocks, the release's ${body.image} verity data blocks are ${image.verity.dataBlockSize} bytes`,
    );
  if (header.source.rootHash !== body.sourceRootHash)
    problems.push(
      `names source root hash "${header.source.rootHash}", not sourceRootHash "${body.sourceRootHash}"`,
    );
  if (problems.length > 0)
    throw new ServerError('ERR_DELTA_INVALID', `${where}: the delta header ${problems.join('; ')}`);
}

export function deltaRoutes(deps: AppDeps) {
  const { db, blobs: store } = deps;

  const loadRelease = async (id: string) => {
    const [row] = await db.select().from(releases).where(eq(releases.id, id)).limit(1);
    if (row === undefined) throw new ServerError('ERR_NOT_FOUND', `no release ${id}`);
    return row;
  };

  return createRouter()
    .openapi(
      createRoute({
        method: 'post',
        path: '/v1/admin/releases/{id}/deltas',
        tags: ['admin: releases'],
        summary:
          'Register a delta (uploaded as a blob first) from another version to this release; its header is checked against the release',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.publish)] as const,
        request: { params: IdParam, body: { required: true, ...json(DeltaRegisterSchema) } },
        responses: {
          200: { description: 'This exact delta was already registered', ...json(DeltaSchema) },
          201: { description: 'Registered', ...json(DeltaSchema) },
          ...errorResponses,
        },
      }),
      async (c) => {
        const { id } = c.req.valid('param');
        const body = c.req.valid('json');
        const release = await loadRelease(id);
        const where = `delta ${body.digest} for ${release.product} ${release.version} ${body.image}`;
        const findExisting = async () => {
          const [row] = await db
            .select()
            .from(releaseDeltas)
            .where(
              and(
                eq(releaseDeltas.releaseId, id),
                eq(releaseDeltas.image, body.image),
                eq(releaseDeltas.sourceRootHash, body.sourceRootHash),
              ),
            )
            .limit(1);
          return row;
        };
        const conflict = (row: DeltaRow) =>
          new ServerError(
            'ERR_CONFLICT',
            `${release.product} ${release.version} already has delta ${row.id} for ${body.image} from source root hash ${body.sourceRootHash} (${row.digest}, ${row.sizeBytes} bytes, from ${row.sourceVersion}); delete it first to replace it`,
          );
        const manifest = release.manifest as ReleaseManifest;
        const image = manifest.images[body.image];
        if (image === undefined) {
          throw new ServerError(
            'ERR_DELTA_INVALID',
            `${where}: ${release.product} ${release.version} has no ${body.image} image (it has ${Object.keys(manifest.images).join(', ')})`,
          );
        }
        if (body.sourceVersion === release.version)
          throw new ServerError('ERR_DELTA_INVALID', `${where}: sourceVersion is the release's own version`);

        const key = digestToKey(body.digest);
        const info = await store.head(key);
        if (info === undefined) {
          throw new ServerError(
            'ERR_BLOB_NOT_FOUND',
            `${where}: the blob is not uploaded; PUT /v1/admin/blobs/sha256/${body.digest.slice(7)} first`,
          );
        }
        if (info.sizeBytes !== body.sizeBytes) {
          throw new ServerError(
            'ERR_DELTA_INVALID',
            `${where}: the blob is ${info.sizeBytes} bytes in the store, the registration says ${body.sizeBytes}`,
          );
        }
        const header = decodeDeltaHeader(await readHeaderBytes(store, key), body.digest);
        checkHeaderAgainstRelease(header, body, image, where);

        // When the source version is a release of this product here, the delta must start from it.
        const [source] = await db
          .select({ manifest: releases.manifest })
          .from(releases)
          .where(and(eq(releases.product, release.product), eq(releases.version, body.sourceVersion)))
          .limit(1);
        if (source !== undefined) {
          const sourceImage = (source.manifest as ReleaseManifest).images[body.image];
          const mismatch =
            sourceImage === undefined
              ? `${release.product} ${body.sourceVersion} has no ${body.image} image`
              : sourceImage.verity.rootHash !== body.sourceRootHash
                ? `${release.product} ${body.sourceVersion} ${body.image} has root hash "${sourceImage.verity.rootHash}", not "${body.sourceRootHash}"`
                : sourceImage.sizeBytes !== header.source.sizeBytes
                  ? `${release.product} ${body.sourceVersion} ${body.image} is ${sourceImage.sizeBytes} bytes, the delta header says ${header.source.sizeBytes}`
                  : undefined;
          if (mismatch !== undefined)
            throw new ServerError('ERR_DELTA_SOURCE_MISMATCH', `${where}: ${mismatch}`);
        }

        // Checked after the content, so a repeat still proves the blob is this delta (a 256-byte read).
        const existing = await findExisting();
        if (existing !== undefined) {
          if (sameDelta(existing, body)) return c.json(view(existing), 200);
          throw conflict(existing);
        }
        const created = await db.transaction(async (tx) => {
          await tx
            .insert(blobs)
            .values({ digest: body.digest, sizeBytes: info.sizeBytes })
            .onConflictDoNothing();
          const [row] = await tx
            .insert(releaseDeltas)
            .values({
              releaseId: id,
              image: body.image,
              sourceVersion: body.sourceVersion,
              sourceRootHash: body.sourceRootHash,
              sourceSizeBytes: header.source.sizeBytes,
              targetRootHash: header.target.rootHash,
              digest: body.digest,
              sizeBytes: body.sizeBytes,
            })
            .onConflictDoNothing()
            .returning();
          if (row !== undefined)
            await audit(tx, c.get('actor'), 'release.delta.register', `release:${id}`, {
              deltaId: row.id,
              image: body.image,
              sourceVersion: body.sourceVersion,
              digest: body.digest,
            });
          return row;
        });
        if (created === undefined) {
          // Registered concurrently: the same delta is a repeat, another one a conflict.
          const raced = await findExisting();
          if (raced === undefined) throw new ServerError('ERR_INTERNAL', 'delta insert returned no row');
          if (sameDelta(raced, body)) return c.json(view(raced), 200);
          throw conflict(raced);
        }
        deps.logger.info(
          { releaseId: id, deltaId: created.id, image: body.image, sourceVersion: body.sourceVersion },
          'delta registered',
        );
        return c.json(view(created), 201);
      },
    )

    .openapi(
      createRoute({
        method: 'get',
        path: '/v1/admin/releases/{id}/deltas',
        tags: ['admin: releases'],
        summary: 'List the deltas registered for a release',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.read)] as const,
        request: { params: IdParam },
        responses: { 200: { description: 'The deltas', ...json(DeltaListSchema) }, ...errorResponses },
      }),
      async (c) => {
        const { id } = c.req.valid('param');
        await loadRelease(id);
        const rows = await db
          .select()
          .from(releaseDeltas)
          .where(eq(releaseDeltas.releaseId, id))
          .orderBy(asc(releaseDeltas.image), asc(releaseDeltas.sourceVersion), asc(releaseDeltas.id));
        return c.json({ items: rows.map(view) }, 200);
      },
    )

    .openapi(
      createRoute({
        method: 'delete',
        path: '/v1/admin/releases/{id}/deltas/{deltaId}',
        tags: ['admin: releases'],
        summary: 'Remove a delta: no longer offered; its blob stays until deleted itself',
        security: [{ apiKey: [] }],
        middleware: [requireRole(deps, ROLE_GROUPS.publish)] as const,
        request: { params: ReleaseDeltaParam },
        responses: { 200: { description: 'Removed', ...json(DeltaSchema) }, ...errorResponses },
      }),
      async (c) => {
        const { id, deltaId } = c.req.valid('param');
        const removed = await db.transaction(async (tx) => {
          const [row] = await tx
            .delete(releaseDeltas)
            .where(and(eq(releaseDeltas.id, deltaId), eq(releaseDeltas.releaseId, id)))
            .returning();
          if (row === undefined)
            throw new ServerError('ERR_NOT_FOUND', `release ${id} has no delta ${deltaId}`);
          await audit(tx, c.get('actor'), 'release.delta.delete', `release:${id}`, {
            deltaId,
            image: row.image,
            sourceVersion: row.sourceVersion,
            digest: row.digest,
          });
          return row;
        });
        return c.json(view(removed), 200);
      },
    );
}
