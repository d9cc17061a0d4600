// The admin calls `abota release push` makes, each a few lines over the typed client
// (../server-api): whether the product and each blob exist, the streamed blob PUT, the resumable
// upload session (create, find, parts, complete), the manifest and the delta registrations.
// Retry policy per call is stated here; the transport applies it.
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type { ReleaseSchema, UploadPartSchema, UploadSchema } from '@abota/api';
import { type AdminConnection, readJson } from '../server-api/client.js';
import { AdminApiError, isNotFound } from '../server-api/error.js';

export type Upload = ReturnType<typeof UploadSchema.parse>;
export type UploadPart = ReturnType<typeof UploadPartSchema.parse>;
export type Release = ReturnType<typeof ReleaseSchema.parse>;

/** What `POST /v1/admin/releases/{id}/deltas` registers (docs/CONTRACTS.md "Deltas end to end"). */
export interface DeltaRegistration {
  image: 'rootfs' | 'boot';
  sourceVersion: string;
  sourceRootHash: string;
  digest: string;
  sizeBytes: number;
}

interface Sending {
  signal?: AbortSignal | undefined;
  /** Bytes of the body sent in the current try (a retry starts again from 0). */
  onBytes?: (sentInThisTry: number) => void;
}

/** undefined when the server answered 404 (the thing is not there). */
async function unlessNotFound<T>(call: Promise<T>): Promise<T | undefined> {
  try {
    return await call;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** The product, or undefined when the server has none by that id. */
export async function findProduct(conn: AdminConnection, id: string, signal?: AbortSignal) {
  const call = conn.api({ signal }).v1.admin.products[':id'].$get({ param: { id: encodeURIComponent(id) } });
  return unlessNotFound(call.then((res) => readJson(res, (s) => s.ProductSchema)));
}

/** Size of the blob in the server's store (HEAD: no body), or undefined when it is not there. */
export async function remoteBlobSize(
  conn: AdminConnection,
  hex: string,
  signal?: AbortSignal,
): Promise<number | undefined> {
  const res = await unlessNotFound(
    conn.api({ signal, head: true }).v1.admin.blobs.sha256[':hex'].$get({ param: { hex } }),
  );
  if (res === undefined) return undefined;
  const size = Number(res.headers.get('content-length'));
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new AdminApiError(
      'ERR_SERVER_RESPONSE_INVALID',
      `HEAD blob ${hex}: no Content-Length in the answer`,
    );
  }
  return size;
}

/**
 * Stream a file to `PUT /v1/admin/blobs/sha256/<hex>` (the server checks digest and size while
 * storing). Memory stays bounded by the read stream's 1 MiB chunks. Each retry re-reads the
 * file from the start: this PUT has no partial resume (upload sessions do). No deadline: it may
 * take long; the caller's signal stops it.
 */
export async function putBlobFile(
  conn: AdminConnection,
  hex: string,
  path: string,
  sizeBytes: number,
  o: Sending = {},
): Promise<{ created: boolean }> {
  const upload = () => {
    let sent = 0;
    const file = createReadStream(path, { highWaterMark: 1 << 20 });
    file.on('data', (chunk) => {
      sent += (chunk as Buffer).length;
      o.onBytes?.(sent);
    });
    o.onBytes?.(0);
    return { body: Readable.toWeb(file) as ReadableStream<Uint8Array>, sizeBytes };
  };
  const res = await conn
    .api({ signal: o.signal, timeoutMs: null, upload })
    .v1.admin.blobs.sha256[':hex'].$put({ param: { hex } });
  const answer = await readJson(res, (s) => s.BlobPutResponseSchema);
  return { created: answer.created || res.status === 201 };
}

/**
 * `POST /v1/admin/uploads`. Repeating it after a lost answer at worst leaves an unused session,
 * which the server expires, so it is retried like an idempotent call.
 */
export async function createUpload(
  conn: AdminConnection,
  digest: string,
  sizeBytes: number,
  o: { partSizeBytes?: number | undefined; signal?: AbortSignal | undefined } = {},
): Promise<{ present: true } | { present: false; upload: Upload }> {
  const json = {
    digest,
    sizeBytes,
    ...(o.partSizeBytes === undefined ? {} : { partSizeBytes: o.partSizeBytes }),
  };
  const res = await conn.api({ signal: o.signal, idempotent: true }).v1.admin.uploads.$post({ json });
  if (res.status === 200) {
    await readJson(res, (s) => s.BlobPutResponseSchema);
    return { present: true };
  }
  return { present: false, upload: await readJson(res, (s) => s.UploadSchema) };
}

/** The session and the parts the server has, or undefined when it is gone (completed, aborted, expired). */
export async function getUpload(conn: AdminConnection, uploadId: string, signal?: AbortSignal) {
  const call = conn.api({ signal }).v1.admin.uploads[':id'].$get({ param: { id: uploadId } });
  return unlessNotFound(call.then((res) => readJson(res, (s) => s.UploadSchema)));
}

/** Open sessions for one digest, oldest first. */
export async function listUploads(
  conn: AdminConnection,
  digest: string,
  signal?: AbortSignal,
): Promise<Upload[]> {
  const res = await conn.api({ signal }).v1.admin.uploads.$get({ query: { digest } });
  return (await readJson(res, (s) => s.UploadListSchema)).items;
}

/**
 * Sends one part (held in memory: at most the session's part size) with its RFC 9530
 * Content-Digest; the server refuses bytes that do not match. Retries re-send the same bytes.
 */
export async function putUploadPart(
  conn: AdminConnection,
  uploadId: string,
  partNumber: number,
  bytes: Uint8Array,
  sha256Hex: string,
  o: Sending = {},
): Promise<UploadPart> {
  const upload = () => {
    let offset = 0;
    o.onBytes?.(0);
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (offset >= bytes.byteLength) {
          controller.close();
          return;
        }
        const chunk = bytes.subarray(offset, Math.min(offset + (256 << 10), bytes.byteLength));
        offset += chunk.byteLength;
        controller.enqueue(chunk);
        o.onBytes?.(offset);
      },
    });
    return { body, sizeBytes: bytes.byteLength };
  };
  const res = await conn
    .api({ signal: o.signal, timeoutMs: null, upload })
    .v1.admin.uploads[':id'].parts[':n'].$put({
      param: { id: uploadId, n: String(partNumber) },
      header: { 'content-digest': `sha-256=:${Buffer.from(sha256Hex, 'hex').toString('base64')}:` },
    });
  return readJson(res, (s) => s.UploadPartSchema);
}

/** Assembles and verifies the blob on the server; `created: false` when it was already stored. */
export async function completeUpload(conn: AdminConnection, uploadId: string, signal?: AbortSignal) {
  // A retry after a lost answer finds the session gone (ERR_UPLOAD_NOT_FOUND); the caller then
  // checks the blob itself.
  const res = await conn
    .api({ signal, idempotent: true })
    .v1.admin.uploads[':id'].complete.$post({ param: { id: uploadId } });
  const done = await readJson(res, (s) => s.BlobPutResponseSchema);
  return { digest: done.digest, sizeBytes: done.sizeBytes, created: res.status === 201 };
}

/** `POST /v1/admin/releases`: the server verifies the JWS against the product's trust root. */
export async function pushManifest(
  conn: AdminConnection,
  manifestJws: string,
  signal?: AbortSignal,
): Promise<{ release: Release; created: boolean }> {
  // Idempotent on the server: the same JWS again answers 200 with the existing release.
  const res = await conn.api({ signal, idempotent: true }).v1.admin.releases.$post({ json: { manifestJws } });
  return { release: await readJson(res, (s) => s.ReleaseSchema), created: res.status === 201 };
}

/**
 * `POST /v1/admin/releases/{id}/deltas`: 201 registered, 200 when that exact delta already was
 * (so a re-run of a push is harmless, and so is a retry).
 */
export async function registerDelta(
  conn: AdminConnection,
  releaseId: string,
  delta: DeltaRegistration,
  signal?: AbortSignal,
): Promise<{ id: string; created: boolean }> {
  const res = await conn
    .api({ signal, idempotent: true })
    .v1.admin.releases[':id'].deltas.$post({ param: { id: releaseId }, json: delta });
  return { id: (await readJson(res, (s) => s.DeltaSchema)).id, created: res.status === 201 };
}
