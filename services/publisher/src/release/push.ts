// `abota release push DIR`: publish a release directory (docs/CONTRACTS.md "Release manifest") to
// an update server. Local completeness first (every blob the signed manifest and deltas.json name,
// right size, sha256 of those about to be sent), then each blob HEAD → skip when present, else a
// streamed PUT — or, above a size threshold, the parts of a resumable upload session
// (push-upload.ts) — then the manifest JWS, then the deltas' registrations (push-deltas.ts).
// Skipping present blobs and present parts is what makes an interrupted push resumable: the re-run
// sends only what is missing. The server verifies the signature against the product's trust root;
// nothing here trusts the manifest beyond reading which blobs it names.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MAX_JWS_BYTES, parseGeneralJws, parseManifest, type ReleaseManifest } from '@abota/manifest';
import type { AdminConnection } from '../server-api/client.js';
import { AdminApiError } from '../server-api/error.js';
import { ReleaseError } from './errors.js';
import { blobRelativePath, MANIFEST_JWS, readSmallFile, sha256File } from './release-dir.js';
import { findProduct, pushManifest, putBlobFile, remoteBlobSize } from './push-calls.js';
import { type PushDelta, readReleaseDeltas, registerReleaseDeltas } from './push-deltas.js';
import { PushStateFile, uploadBlobInParts } from './push-upload.js';

const MIB = 1024 * 1024;
/** Blobs larger than this go through a resumable upload session instead of one PUT. */
export const DEFAULT_SESSION_THRESHOLD_BYTES = 32 * MIB;

export interface PushBlob {
  digest: string;
  sizeBytes: number;
  /** What the release uses it for, e.g. images.rootfs.artifact, deltas.rootfs.from.1.0.0. */
  role: string;
  action: 'uploaded' | 'present';
  /** `put`: one streamed PUT; `parts`: a resumable upload session. Absent when present. */
  method?: 'put' | 'parts';
  /** Bytes sent in this run. */
  uploadedBytes: number;
  /** Bytes of an upload session that the server had from an earlier, interrupted run. */
  resumedBytes: number;
  /** The upload session used (method `parts`). */
  uploadId?: string;
}

export interface PushSummary {
  server: string;
  product: string;
  version: string;
  releaseId: string;
  /** false when the server already had this exact release (a re-run of a finished push). */
  created: boolean;
  blobs: PushBlob[];
  /** Deltas registered for the release (deltas.json), in its order. */
  deltas: PushDelta[];
  uploadedBytes: number;
  /** Bytes of interrupted upload sessions that did not need sending again. */
  resumedBytes: number;
  skippedBytes: number;
  /** Calls repeated after a network failure or a 5xx. */
  retries: number;
  durationsMs: { check: number; upload: number; total: number };
}

export interface PushOptions {
  dir: string;
  client: AdminConnection;
  signal?: AbortSignal;
  /**
   * Bytes of the blobs that need uploading that the server has: sent now or resumed (a retried
   * PUT counts from its start again).
   */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** Blobs larger than this use an upload session (default 32 MiB). */
  sessionThresholdBytes?: number;
  /** Part size to ask the server for (default: the server's, 8 MiB). */
  partSizeBytes?: number;
}

/** The blobs the manifest references (artifact and hash tree of each image), one per digest. */
export function manifestBlobs(
  manifest: ReleaseManifest,
): { digest: string; sizeBytes: number; role: string }[] {
  const byDigest = new Map<string, { digest: string; sizeBytes: number; role: string }>();
  for (const [slot, image] of Object.entries(manifest.images)) {
    if (image === undefined) continue;
    for (const [role, ref] of [
      [`images.${slot}.artifact`, image.artifact],
      [`images.${slot}.verity.hashTree`, image.verity.hashTree],
    ] as const) {
      if (!byDigest.has(ref.digest))
        byDigest.set(ref.digest, { digest: ref.digest, sizeBytes: ref.sizeBytes, role });
    }
  }
  return [...byDigest.values()];
}

/** manifest.jws as sent (verbatim) and the manifest it carries (shape-checked, not verified). */
async function readSignedManifest(dir: string): Promise<{ jwsText: string; manifest: ReleaseManifest }> {
  const path = join(dir, MANIFEST_JWS);
  const jwsText = await readSmallFile(path, MAX_JWS_BYTES, 'signed manifest');
  const jws = parseGeneralJws(jwsText, path);
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(jws.payload, 'base64url').toString('utf8'));
  } catch (err) {
    throw new ReleaseError('ERR_RELEASE_DIR_INVALID', `${path}: the payload is not base64url-encoded JSON`, {
      cause: err,
    });
  }
  return { jwsText, manifest: parseManifest(payload) };
}

export async function pushReleaseDir(o: PushOptions): Promise<PushSummary> {
  const started = performance.now();
  const { client, signal } = o;
  const { jwsText, manifest } = await readSignedManifest(o.dir);
  const deltas = await readReleaseDeltas(o.dir);
  const wanted = manifestBlobs(manifest);
  for (const delta of deltas) {
    if (!wanted.some((b) => b.digest === delta.digest)) {
      wanted.push({
        digest: delta.digest,
        sizeBytes: delta.sizeBytes,
        role: `deltas.${delta.image}.from.${delta.sourceVersion}`,
      });
    }
  }

  // 1. The directory is complete: every blob present with the manifest's size (cheap, all of them).
  const local = new Map<string, string>();
  for (const blob of wanted) {
    const path = join(o.dir, blobRelativePath(blob.digest));
    const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') {
        throw new ReleaseError(
          'ERR_RELEASE_BLOB_MISSING',
          `${blob.role} ${blob.digest} is not in ${o.dir} (expected ${path}); the release directory is incomplete — rebuild it or copy the blob back`,
        );
      }
      throw err;
    });
    if (info.size !== blob.sizeBytes) {
      throw new ReleaseError(
        'ERR_RELEASE_BLOB_SIZE_MISMATCH',
        `${path} (${blob.role}) is ${info.size} bytes; the manifest says ${blob.sizeBytes}`,
      );
    }
    local.set(blob.digest, path);
  }

  // 2. The product exists on the server (else nothing can be pushed: its trust root verifies releases).
  const product = await findProduct(client, manifest.product, signal);
  if (product === undefined) {
    throw new AdminApiError(
      'ERR_PRODUCT_NOT_FOUND',
      `product "${manifest.product}" does not exist on ${client.serverUrl.origin}; create it first with: abota product create ${manifest.product} --root ${join(o.dir, 'root.json')}`,
    );
  }

  // 3. Which blobs the server lacks; the sha256 of exactly those is checked before sending them
  //    (the server would refuse a mismatch too, but only after the whole upload).
  const plan: PushBlob[] = [];
  for (const blob of wanted) {
    const remoteSize = await remoteBlobSize(client, blob.digest.slice('sha256:'.length), signal);
    plan.push({
      ...blob,
      action: remoteSize === blob.sizeBytes ? 'present' : 'uploaded',
      uploadedBytes: 0,
      resumedBytes: 0,
    });
  }
  // Smallest first: an interrupted push then leaves as many blobs stored as it can.
  const toUpload = plan.filter((b) => b.action === 'uploaded').sort((a, b) => a.sizeBytes - b.sizeBytes);
  for (const blob of toUpload) {
    if (signal?.aborted)
      throw new AdminApiError('ERR_INTERRUPTED', 'interrupted before uploading; nothing was sent');
    const path = local.get(blob.digest)!;
    const { sha256 } = await sha256File(path);
    if (`sha256:${sha256}` !== blob.digest) {
      throw new ReleaseError(
        'ERR_RELEASE_BLOB_DIGEST_MISMATCH',
        `${path} (${blob.role}) has sha256 ${sha256}, the manifest says ${blob.digest}; the file is corrupt — rebuild the release`,
      );
    }
  }
  const checked = performance.now();

  // 4. Upload, one blob at a time: small ones as one streamed PUT (1 MiB chunks), large ones as
  //    the parts of an upload session (one part in memory). Memory does not grow with blob size.
  const totalBytes = toUpload.reduce((n, b) => n + b.sizeBytes, 0);
  const threshold = o.sessionThresholdBytes ?? DEFAULT_SESSION_THRESHOLD_BYTES;
  const state = new PushStateFile(o.dir, client.serverUrl);
  await state.load();
  let doneBytes = 0;
  for (const blob of toUpload) {
    const hex = blob.digest.slice('sha256:'.length);
    const path = local.get(blob.digest)!;
    const inParts =
      blob.sizeBytes > threshold
        ? await uploadBlobInParts({
            client,
            state,
            digest: blob.digest,
            sizeBytes: blob.sizeBytes,
            path,
            partSizeBytes: o.partSizeBytes,
            signal,
            onBytes: (done) => o.onProgress?.(doneBytes + done, totalBytes),
          })
        : undefined;
    if (inParts !== undefined) {
      blob.method = 'parts';
      blob.uploadedBytes = inParts.uploadedBytes;
      blob.resumedBytes = inParts.resumedBytes;
      if (inParts.uploadId !== undefined) blob.uploadId = inParts.uploadId;
      if (inParts.alreadyStored) blob.action = 'present';
    } else {
      await putBlobFile(client, hex, path, blob.sizeBytes, {
        signal,
        onBytes: (sent) => o.onProgress?.(doneBytes + sent, totalBytes),
      });
      blob.method = 'put';
      blob.uploadedBytes = blob.sizeBytes;
    }
    doneBytes += blob.sizeBytes;
    o.onProgress?.(doneBytes, totalBytes);
  }
  const uploaded = performance.now();

  // 5. The manifest last: the server requires every referenced blob to be present.
  const { release, created } = await pushManifest(client, jwsText, signal);
  // 6. The deltas, which the server checks against the release's images (so: after it).
  const registered = await registerReleaseDeltas(client, release.id, deltas, signal);
  const done = performance.now();
  return {
    server: client.serverUrl.origin,
    product: release.product,
    version: release.version,
    releaseId: release.id,
    created,
    blobs: plan,
    deltas: registered,
    uploadedBytes: plan.reduce((n, b) => n + b.uploadedBytes, 0),
    resumedBytes: plan.reduce((n, b) => n + b.resumedBytes, 0),
    skippedBytes: plan.filter((b) => b.action === 'present').reduce((n, b) => n + b.sizeBytes, 0),
    retries: client.retriesDone,
    durationsMs: {
      check: Math.round(checked - started),
      upload: Math.round(uploaded - checked),
      total: Math.round(done - started),
    },
  };
}
