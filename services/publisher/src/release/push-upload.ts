// Resumable upload of one large blob for `release push` (issue #4): the blob goes to the server as
// numbered parts of an upload session (services/update-server "Resumable uploads"). A re-run finds
// the session again — by the id kept in the release directory's `.push-state.json`, else by asking
// the server for open sessions of the digest — and sends only the parts the server lacks (or holds
// with other bytes). One part is in memory at a time (the session's part size, ≤ 64 MiB).
import { createHash } from 'node:crypto';
import { open, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AdminConnection } from '../server-api/client.js';
import { AdminApiError } from '../server-api/error.js';
import {
  completeUpload,
  createUpload,
  getUpload,
  listUploads,
  putUploadPart,
  remoteBlobSize,
  type Upload,
} from './push-calls.js';

export const PUSH_STATE_FILE = '.push-state.json';
const MAX_STATE_BYTES = 1024 * 1024;

/**
 * `.push-state.json`: open upload sessions of this release directory per server, so a re-run
 * resumes them. Only a hint: a missing, stale or unreadable file costs a lookup on the server.
 */
interface PushState {
  schemaVersion: 1;
  /** server URL → digest → upload id */
  uploads: Record<string, Record<string, string>>;
}

export class PushStateFile {
  readonly path: string;
  readonly #server: string;
  #state: PushState = { schemaVersion: 1, uploads: {} };

  constructor(dir: string, serverUrl: URL) {
    this.path = join(dir, PUSH_STATE_FILE);
    this.#server = serverUrl.href;
  }

  async load(): Promise<void> {
    try {
      const handle = await open(this.path, 'r');
      let text: string;
      try {
        if ((await handle.stat()).size > MAX_STATE_BYTES) return;
        text = await handle.readFile('utf8');
      } finally {
        await handle.close();
      }
      const value = JSON.parse(text) as unknown;
      if (typeof value !== 'object' || value === null) return;
      const uploads = (value as { uploads?: unknown }).uploads;
      if (
        (value as { schemaVersion?: unknown }).schemaVersion !== 1 ||
        typeof uploads !== 'object' ||
        uploads === null
      )
        return;
      const clean: PushState['uploads'] = {};
      for (const [server, byDigest] of Object.entries(uploads as Record<string, unknown>)) {
        if (typeof byDigest !== 'object' || byDigest === null) continue;
        const entries = Object.entries(byDigest as Record<string, unknown>).filter(
          (e): e is [string, string] =>
            /^sha256:[0-9a-f]{64}$/.test(e[0]) && typeof e[1] === 'string' && /^[0-9a-f]{32}$/.test(e[1]),
        );
        if (entries.length > 0) clean[server] = Object.fromEntries(entries);
      }
      this.#state = { schemaVersion: 1, uploads: clean };
    } catch {
      // No file, or not ours to understand: start from nothing (the server can still be asked).
    }
  }

  uploadIdFor(digest: string): string | undefined {
    return this.#state.uploads[this.#server]?.[digest];
  }

  async set(digest: string, uploadId: string | undefined): Promise<void> {
    const mine = { ...this.#state.uploads[this.#server] };
    if (uploadId === undefined) delete mine[digest];
    else mine[digest] = uploadId;
    if (Object.keys(mine).length === 0) delete this.#state.uploads[this.#server];
    else this.#state.uploads[this.#server] = mine;
    await this.#save();
  }

  /** Temp + rename so a crash never leaves half a file; best effort (a read-only release dir is fine). */
  async #save(): Promise<void> {
    try {
      if (Object.keys(this.#state.uploads).length === 0) {
        await rm(this.path, { force: true });
        return;
      }
      const temp = `${this.path}.tmp-${process.pid}`;
      await writeFile(temp, `${JSON.stringify(this.#state, null, 2)}\n`);
      await rename(temp, this.path);
    } catch {
      // The server-side lookup by digest still finds the session.
    }
  }
}

export interface SessionUploadResult {
  uploadId: string | undefined;
  /** Bytes sent in this run. */
  uploadedBytes: number;
  /** Bytes the server already had from an earlier run (parts skipped). */
  resumedBytes: number;
  /** Parts sent in this run. */
  partsSent: number[];
  /** The server had the whole blob already (stored meanwhile by another push). */
  alreadyStored: boolean;
}

export interface SessionUploadOptions {
  client: AdminConnection;
  state: PushStateFile;
  digest: string;
  sizeBytes: number;
  path: string;
  /** Requested part size; the server's default (8 MiB) when undefined. */
  partSizeBytes: number | undefined;
  signal: AbortSignal | undefined;
  /** Bytes of this blob the server has now: resumed parts + parts sent. */
  onBytes: (doneBytes: number) => void;
}

const isCode = (err: unknown, code: string): boolean => err instanceof AdminApiError && err.code === code;
/** The server's answer for a path it has no route for (an older server). */
const isNoRoute = (err: unknown): boolean =>
  isCode(err, 'ERR_NOT_FOUND') && /no route/.test((err as AdminApiError).message);

/** An open session for this blob: the remembered one, else the server's most advanced one. */
async function findSession(o: SessionUploadOptions): Promise<Upload | undefined> {
  const matches = (u: Upload | undefined): u is Upload =>
    u !== undefined && u.digest === o.digest && u.sizeBytes === o.sizeBytes;
  const remembered = o.state.uploadIdFor(o.digest);
  if (remembered !== undefined) {
    const upload = await getUpload(o.client, remembered, o.signal);
    if (matches(upload)) return upload;
  }
  let listed: Upload[];
  try {
    listed = await listUploads(o.client, o.digest, o.signal);
  } catch (err) {
    // A server without upload sessions: createUpload says so too, and the caller falls back to PUT.
    if (isNoRoute(err)) return undefined;
    throw err;
  }
  const open = listed.filter(matches);
  open.sort((a, b) => b.receivedBytes - a.receivedBytes);
  return open[0];
}

async function readPart(path: string, offset: number, sizeBytes: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(sizeBytes);
    let filled = 0;
    while (filled < sizeBytes) {
      const { bytesRead } = await handle.read(buffer, filled, sizeBytes - filled, offset + filled);
      if (bytesRead === 0)
        throw new Error(
          `${path} ended at byte ${offset + filled}; expected ${sizeBytes} bytes from ${offset}`,
        );
      filled += bytesRead;
    }
    return buffer;
  } finally {
    await handle.close();
  }
}

/**
 * Uploads one blob through a session, resuming one when there is one. Returns undefined when the
 * server does not offer upload sessions (an older server): the caller falls back to one PUT.
 */
export async function uploadBlobInParts(o: SessionUploadOptions): Promise<SessionUploadResult | undefined> {
  const { client, digest } = o;
  const partsSent: number[] = [];
  let uploadedBytes = 0;
  let resumedBytes = 0;
  // A session can vanish under us (expired, or completed by a concurrent push): start over once.
  for (let round = 1; ; round++) {
    let upload = await findSession(o);
    if (upload === undefined) {
      let created: Awaited<ReturnType<typeof createUpload>>;
      try {
        created = await createUpload(client, digest, o.sizeBytes, {
          partSizeBytes: o.partSizeBytes,
          signal: o.signal,
        });
      } catch (err) {
        if (isNoRoute(err)) return undefined;
        throw err;
      }
      if (created.present) {
        await o.state.set(digest, undefined);
        return { uploadId: undefined, uploadedBytes, resumedBytes: 0, partsSent, alreadyStored: true };
      }
      upload = created.upload;
    }
    await o.state.set(digest, upload.uploadId);
    const have = new Map(upload.parts.map((p) => [p.partNumber, p]));
    resumedBytes = 0;
    let done = 0;
    o.onBytes(0);
    try {
      for (let n = 1; n <= upload.partCount; n++) {
        if (o.signal?.aborted)
          throw new AdminApiError(
            'ERR_INTERRUPTED',
            'interrupted; the parts sent so far are kept on the server',
          );
        const offset = (n - 1) * upload.partSizeBytes;
        const size = Math.min(upload.partSizeBytes, o.sizeBytes - offset);
        const bytes = await readPart(o.path, offset, size);
        const sha256 = createHash('sha256').update(bytes).digest('hex');
        const stored = have.get(n);
        if (stored !== undefined && stored.sizeBytes === size && stored.sha256 === sha256) {
          // The server has exactly these bytes from an earlier run (or from this run's first round).
          if (!partsSent.includes(n)) resumedBytes += size;
          done += size;
          o.onBytes(done);
          continue;
        }
        const before = done;
        await putUploadPart(client, upload.uploadId, n, bytes, sha256, {
          signal: o.signal,
          onBytes: (sent) => o.onBytes(before + sent),
        });
        partsSent.push(n);
        uploadedBytes += size;
        done += size;
        o.onBytes(done);
      }
      try {
        await completeUpload(client, upload.uploadId, o.signal);
      } catch (err) {
        // The answer to an earlier try of this call was lost, or another push completed the blob.
        if (!isCode(err, 'ERR_UPLOAD_NOT_FOUND')) throw err;
        const size = await remoteBlobSize(client, digest.slice('sha256:'.length), o.signal);
        if (size !== o.sizeBytes) throw err;
      }
      await o.state.set(digest, undefined);
      return { uploadId: upload.uploadId, uploadedBytes, resumedBytes, partsSent, alreadyStored: false };
    } catch (err) {
      const gone = isCode(err, 'ERR_UPLOAD_NOT_FOUND') || isCode(err, 'ERR_UPLOAD_INCOMPLETE');
      if (!gone || round >= 2) {
        // A refused whole (digest mismatch) ended the session on the server: forget it.
        if (isCode(err, 'ERR_BLOB_DIGEST_MISMATCH')) await o.state.set(digest, undefined);
        throw err;
      }
      // Look again: an expired session is replaced by a new one; an incomplete one gets its gaps filled.
      if (isCode(err, 'ERR_UPLOAD_NOT_FOUND')) await o.state.set(digest, undefined);
    }
  }
}
