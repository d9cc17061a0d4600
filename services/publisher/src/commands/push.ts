// `abota release push DIR`: publish a release directory (docs/CONTRACTS.md "Release manifest") to
// an update server. Local completeness first (every blob the signed manifest names, right size,
// sha256 of those about to be sent), then each blob HEAD → skip when present, else a streamed PUT,
// then the manifest JWS. Skipping present blobs is what makes an interrupted push resumable: the
// re-run sends only what is missing. The server verifies the signature against the product's
// trust root; nothing here trusts the manifest beyond reading which blobs it names.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MAX_JWS_BYTES, parseGeneralJws, parseManifest, type ReleaseManifest } from '@abota/manifest';
import type { Command } from 'commander';
import { AdminApiError, type AdminClient, clientFromEnvironment, type ServerFlags } from '../admin-client.js';
import { printJson, startProgress } from '../output.js';
import { ReleaseError } from '../release/errors.js';
import { blobRelativePath, MANIFEST_JWS, readSmallFile, sha256File } from '../release/release-dir.js';

const MIB = 1024 * 1024;

export interface PushBlob {
  digest: string;
  sizeBytes: number;
  /** What the manifest uses it for, e.g. images.rootfs.artifact. */
  role: string;
  action: 'uploaded' | 'present';
}

export interface PushSummary {
  server: string;
  product: string;
  version: string;
  releaseId: string;
  /** false when the server already had this exact release (a re-run of a finished push). */
  created: boolean;
  blobs: PushBlob[];
  uploadedBytes: number;
  skippedBytes: number;
  /** Calls repeated after a network failure or a 5xx. */
  retries: number;
  durationsMs: { check: number; upload: number; total: number };
}

export interface PushOptions {
  dir: string;
  client: AdminClient;
  signal?: AbortSignal;
  /** Bytes sent of the blobs that need uploading (a retried blob counts from its start again). */
  onProgress?: (sentBytes: number, totalBytes: number) => void;
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
  const wanted = manifestBlobs(manifest);

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
  const product = await client.getProduct(manifest.product, signal);
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
    const remoteSize = await client.headBlob(blob.digest.slice('sha256:'.length), signal);
    plan.push({ ...blob, action: remoteSize === blob.sizeBytes ? 'present' : 'uploaded' });
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

  // 4. Upload, one blob at a time (each is a stream of 1 MiB chunks; memory does not grow with size).
  const totalBytes = toUpload.reduce((n, b) => n + b.sizeBytes, 0);
  let doneBytes = 0;
  for (const blob of toUpload) {
    await client.putBlobFile(blob.digest.slice('sha256:'.length), local.get(blob.digest)!, blob.sizeBytes, {
      signal,
      onBytes: (sent) => o.onProgress?.(doneBytes + sent, totalBytes),
    });
    doneBytes += blob.sizeBytes;
    o.onProgress?.(doneBytes, totalBytes);
  }
  const uploaded = performance.now();

  // 5. The manifest last: the server requires every referenced blob to be present.
  const { release, created } = await client.pushRelease(jwsText, signal);
  const done = performance.now();
  return {
    server: client.serverUrl.origin,
    product: release.product,
    version: release.version,
    releaseId: release.id,
    created,
    blobs: plan,
    uploadedBytes: totalBytes,
    skippedBytes: plan.filter((b) => b.action === 'present').reduce((n, b) => n + b.sizeBytes, 0),
    retries: client.retriesDone,
    durationsMs: {
      check: Math.round(checked - started),
      upload: Math.round(uploaded - checked),
      total: Math.round(done - started),
    },
  };
}

function humanMiB(bytes: number): string {
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

function printPushSummary(s: PushSummary): void {
  const uploaded = s.blobs.filter((b) => b.action === 'uploaded').length;
  const lines = [
    `${s.created ? 'pushed' : 'already on the server:'} ${s.product} ${s.version} → ${s.server} (release id ${s.releaseId})`,
    `  blobs: ${uploaded} uploaded (${humanMiB(s.uploadedBytes)}), ${s.blobs.length - uploaded} already present (${humanMiB(s.skippedBytes)})`,
    `  ${s.durationsMs.total} ms${s.retries > 0 ? `, ${s.retries} retried call(s)` : ''}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** Adds `push` to the `release` group that registerReleaseCommands created. */
export function registerPushCommand(release: Command): void {
  release
    .command('push')
    .description(
      'upload a release directory to an update server: blobs the server lacks (HEAD, then streamed PUT), then the signed manifest; re-running resumes',
    )
    .argument('<release-dir>')
    .option('--server <url>', 'update server base URL (default: $ABOTA_SERVER)')
    .option('--api-key-env <VAR>', 'environment variable holding the API key (default ABOTA_API_KEY)')
    .option('--json', 'print one JSON summary')
    .action(async (dir: string, flags: ServerFlags) => {
      const json = flags.json === true;
      const client = clientFromEnvironment(flags);
      let bar: ReturnType<typeof startProgress> | undefined;
      // Ctrl-C / SIGTERM: stop sending; blobs already stored stay, so a re-run resumes from there.
      const interrupt = new AbortController();
      const onSignal = (): void => interrupt.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      let summary: PushSummary;
      try {
        summary = await pushReleaseDir({
          dir,
          client,
          signal: interrupt.signal,
          onProgress: (sent, total) => {
            bar ??= startProgress('release push (MiB)', Math.ceil(total / MIB), { json });
            bar.update(Math.floor(sent / MIB));
          },
        });
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        bar?.stop();
      }
      if (json) printJson({ ok: true, ...summary });
      else printPushSummary(summary);
    });
}
