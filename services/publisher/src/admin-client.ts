// A small typed client for the update server's admin API (services/update-server README "Admin
// API"): blobs, releases, products with their trust roots, provisioning tokens, devices. Every
// non-2xx answer becomes an AdminApiError carrying the server's own `{ error: { code, message } }`;
// network failures, 5xx, 408 and 429 are retried with backoff on idempotent calls (each retry
// told on stderr with its delay); other 4xx, an unknown host name and a bad certificate never are.
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';

import { AdminApiError } from './server-api/error.js';
import { parseServerUrl } from './server-api/server-url.js';

export { AdminApiError, type AdminClientErrorCode } from './server-api/error.js';
export { parseServerUrl } from './server-api/server-url.js';

/** JSON answers of the admin API are small; anything larger is not one (size limit on network input). */
export const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
/** A JSON call that takes longer than this is treated as a network failure (and retried). */
const JSON_TIMEOUT_MS = 60_000;

export interface RetryPolicy {
  /** Total tries of one call, including the first. */
  attempts: number;
  /** Delay before the second try; doubled each time (± 25 % jitter), capped at `maxDelayMs`. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 500, maxDelayMs: 8000 };

export interface AdminClientOptions {
  /** Base URL, e.g. https://updates.example.com (a path prefix is kept). */
  serverUrl: string;
  apiKey: string;
  retry?: RetryPolicy;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /** Told about every retry before its delay (default: one line on stderr). */
  onRetry?: (notice: RetryNotice) => void;
}

export interface ProductInfo {
  id: string;
  description: string;
  trustRootVersion: number;
}

export interface ReleaseInfo {
  id: string;
  product: string;
  version: string;
  securityVersion: number;
  compatible: string[];
  expires: string;
  yanked: boolean;
  createdAt: string;
}

export interface ProvisioningTokenInfo {
  id: string;
  product: string;
  expiresAt: string;
  maxUses: number | null;
  uses: number;
  /** Only in the creation answer. */
  token?: string;
}

/** An upload session on the server (services/update-server README "Resumable uploads"). */
export interface UploadInfo {
  uploadId: string;
  digest: string;
  sizeBytes: number;
  partSizeBytes: number;
  partCount: number;
  parts: UploadPartInfo[];
  receivedBytes: number;
  expiresAt: string;
}

export interface UploadPartInfo {
  partNumber: number;
  sizeBytes: number;
  sha256: string;
}

/** What `POST /v1/admin/releases/{id}/deltas` registers (docs/CONTRACTS.md "Deltas end to end"). */
export interface DeltaRegistration {
  image: string;
  sourceVersion: string;
  sourceRootHash: string;
  digest: string;
  sizeBytes: number;
}

export interface DeviceInfo {
  id: string;
  product: string;
  hardware: string;
  tags: string[];
  currentVersion: string | null;
  bootedSlot: string | null;
  installState: string | null;
  lastSeenAt: string | null;
  registeredAt: string;
}

const sleep = (ms: number, signal: AbortSignal | undefined): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(interrupted());
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(interrupted());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

const interrupted = (): AdminApiError =>
  new AdminApiError('ERR_INTERRUPTED', 'interrupted; nothing more was sent');

/** Read at most MAX_RESPONSE_BYTES of a response body as text. */
async function readLimitedText(res: Response, what: string): Promise<string> {
  if (res.body === null) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > MAX_RESPONSE_BYTES) {
        throw new AdminApiError(
          'ERR_SERVER_RESPONSE_INVALID',
          `${what}: the answer exceeds ${MAX_RESPONSE_BYTES} bytes; is --server an abota update server?`,
        );
      }
      chunks.push(value);
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The server's `{ error: { code, message } }`, or a description of what came instead. */
async function errorFromResponse(res: Response, what: string): Promise<AdminApiError> {
  let text = '';
  try {
    text = await readLimitedText(res, what);
  } catch {
    // Fall through to the generic message below.
  }
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    const code = body.error?.code;
    const message = body.error?.message;
    if (typeof code === 'string' && /^ERR_[A-Z0-9_]{1,64}$/.test(code) && typeof message === 'string') {
      return new AdminApiError(code, `${what}: ${message.slice(0, 2000)}`, { status: res.status });
    }
  } catch {
    // Not JSON: fall through.
  }
  const code =
    res.status === 401
      ? 'ERR_UNAUTHENTICATED'
      : res.status === 403
        ? 'ERR_FORBIDDEN'
        : 'ERR_SERVER_RESPONSE_INVALID';
  return new AdminApiError(code, `${what}: HTTP ${res.status} without an abota error body`, {
    status: res.status,
  });
}

/** 5xx, 408 Request Timeout and 429 Too Many Requests may succeed later; any other 4xx never will. */
function isRetryableStatus(status: number): boolean {
  return (status >= 500 && status <= 599) || status === 408 || status === 429;
}

/**
 * Network failures a retry cannot fix: the name does not exist (EAI_AGAIN, a DNS server that did
 * not answer, is retried), or the server's TLS certificate is not valid for it.
 */
const PERMANENT_NETWORK_CAUSES = new Set([
  'ENOTFOUND',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
]);

/** One retry about to happen, for the person watching (stderr by default). */
export interface RetryNotice {
  what: string;
  /** The try that failed (1-based) and the total allowed. */
  attempt: number;
  attempts: number;
  delayMs: number;
  reason: string;
}

function printRetry(n: RetryNotice): void {
  process.stderr.write(
    `abota: ${n.reason}; retrying in ${(n.delayMs / 1000).toFixed(1)} s (try ${n.attempt + 1} of ${n.attempts})\n`,
  );
}

interface CallOptions {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  /** Extra request headers (e.g. Content-Digest of an upload part). */
  headers?: Record<string, string>;
  /** A JSON body, or a function making a fresh streamed body per try. */
  json?: unknown;
  stream?: () => { body: ReadableStream<Uint8Array>; sizeBytes: number };
  /** Safe to repeat after a network failure or 5xx (HEAD/GET, content-addressed PUT, idempotent POST). */
  idempotent: boolean;
  /** Statuses that are answers rather than failures (e.g. 404 on HEAD). */
  expect: readonly number[];
  signal?: AbortSignal | undefined;
  /** A whole-call timeout; blob uploads have none (they may take long), only the caller's signal. */
  timeoutMs?: number;
}

export class AdminClient {
  readonly serverUrl: URL;
  private readonly apiKey: string;
  private readonly retry: RetryPolicy;
  private readonly fetchImpl: typeof fetch;
  private readonly onRetry: (notice: RetryNotice) => void;
  /** Retries done so far (for reports). */
  retriesDone = 0;

  constructor(options: AdminClientOptions) {
    this.serverUrl = parseServerUrl(options.serverUrl);
    if (!options.apiKey.startsWith('abk_')) {
      throw new AdminApiError('ERR_API_KEY_MISSING', 'the API key must be an abota admin key (abk_...)');
    }
    this.apiKey = options.apiKey;
    this.retry = options.retry ?? DEFAULT_RETRY;
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
    this.onRetry = options.onRetry ?? printRetry;
  }

  private url(path: string): string {
    const base = this.serverUrl.href.endsWith('/') ? this.serverUrl.href.slice(0, -1) : this.serverUrl.href;
    return `${base}${path}`;
  }

  private async call(o: CallOptions): Promise<Response> {
    const what = `${o.method} ${o.path}`;
    for (let attempt = 1; ; attempt++) {
      if (o.signal?.aborted) throw interrupted();
      const headers: Record<string, string> = {
        ...o.headers,
        authorization: `Bearer ${this.apiKey}`,
        accept: 'application/json',
      };
      const init: RequestInit & { duplex?: 'half' } = { method: o.method, headers, redirect: 'error' };
      if (o.json !== undefined) {
        headers['content-type'] = 'application/json';
        init.body = JSON.stringify(o.json);
      } else if (o.stream !== undefined) {
        const { body, sizeBytes } = o.stream();
        headers['content-type'] = 'application/octet-stream';
        headers['content-length'] = String(sizeBytes);
        init.body = body;
        init.duplex = 'half';
      }
      const signals = [
        o.signal,
        o.timeoutMs === undefined ? undefined : AbortSignal.timeout(o.timeoutMs),
      ].filter((s): s is AbortSignal => s !== undefined);
      if (signals.length > 0) init.signal = AbortSignal.any(signals);
      let failure: AdminApiError;
      try {
        const res = await this.fetchImpl(this.url(o.path), init);
        if ((res.status >= 200 && res.status < 300) || o.expect.includes(res.status)) return res;
        failure = await errorFromResponse(res, what);
        if (!isRetryableStatus(res.status) || !o.idempotent) throw failure;
      } catch (err) {
        if (err instanceof AdminApiError) throw err;
        if (o.signal?.aborted) throw interrupted();
        const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
        const detail =
          typeof cause?.code === 'string'
            ? cause.code
            : typeof cause?.message === 'string'
              ? cause.message
              : err instanceof Error
                ? err.message
                : String(err);
        const permanent = PERMANENT_NETWORK_CAUSES.has(detail);
        failure = new AdminApiError(
          'ERR_SERVER_UNREACHABLE',
          `${what} to ${this.serverUrl.origin}: ${detail}${permanent ? ' (retrying cannot help: check --server)' : ''}`,
          {
            cause: err,
          },
        );
        if (!o.idempotent || permanent) throw failure;
      }
      if (attempt >= this.retry.attempts) {
        throw new AdminApiError(failure.code, `${failure.message} (gave up after ${attempt} tries)`, {
          ...(failure.status === undefined ? {} : { status: failure.status }),
          cause: failure,
        });
      }
      const delay =
        Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1)) *
        (0.75 + Math.random() * 0.5);
      this.retriesDone++;
      this.onRetry({ what, attempt, attempts: this.retry.attempts, delayMs: delay, reason: failure.message });
      await sleep(delay, o.signal);
    }
  }

  private async callJson(o: CallOptions): Promise<{ status: number; body: unknown }> {
    const res = await this.call({ timeoutMs: JSON_TIMEOUT_MS, ...o });
    const what = `${o.method} ${o.path}`;
    const text = await readLimitedText(res, what);
    try {
      return { status: res.status, body: JSON.parse(text) as unknown };
    } catch {
      throw new AdminApiError('ERR_SERVER_RESPONSE_INVALID', `${what}: the answer is not JSON`, {
        status: res.status,
      });
    }
  }

  /**
   * A JSON admin call for commands without a typed method here (the rollout commands). GETs
   * are retried like every safe call; POSTs are not (pause/abort must not be replayed blindly).
   */
  async requestJson<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const res = await this.callJson({
      method,
      path,
      ...(body === undefined ? {} : { json: body }),
      idempotent: method === 'GET',
      expect: [],
    });
    return res.body as T;
  }

  /** Size of the blob in the server's store, or undefined when it is not there. */
  async headBlob(sha256Hex: string, signal?: AbortSignal): Promise<number | undefined> {
    const res = await this.call({
      method: 'HEAD',
      path: `/v1/admin/blobs/sha256/${sha256Hex}`,
      idempotent: true,
      expect: [404],
      signal,
      timeoutMs: JSON_TIMEOUT_MS,
    });
    if (res.status === 404) return undefined;
    const size = Number(res.headers.get('content-length'));
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new AdminApiError(
        'ERR_SERVER_RESPONSE_INVALID',
        `HEAD blob ${sha256Hex}: no Content-Length in the answer`,
      );
    }
    return size;
  }

  /**
   * Stream a file to `PUT /v1/admin/blobs/sha256/<hex>` (the server checks digest and size while
   * storing). Memory stays bounded by the read stream's 1 MiB chunks. Each retry re-reads the
   * file from the start: the server has no partial-upload resume.
   */
  async putBlobFile(
    sha256Hex: string,
    path: string,
    sizeBytes: number,
    o: { signal?: AbortSignal | undefined; onBytes?: (sentInThisTry: number) => void } = {},
  ): Promise<{ created: boolean }> {
    const res = await this.call({
      method: 'PUT',
      path: `/v1/admin/blobs/sha256/${sha256Hex}`,
      idempotent: true,
      expect: [],
      signal: o.signal,
      stream: () => {
        let sent = 0;
        const file = createReadStream(path, { highWaterMark: 1 << 20 });
        file.on('data', (chunk) => {
          sent += (chunk as Buffer).length;
          o.onBytes?.(sent);
        });
        o.onBytes?.(0);
        return { body: Readable.toWeb(file) as ReadableStream<Uint8Array>, sizeBytes };
      },
    });
    const text = await readLimitedText(res, `PUT blob ${sha256Hex}`);
    let created: unknown;
    try {
      created = (JSON.parse(text || '{}') as { created?: unknown } | null)?.created;
    } catch {
      throw new AdminApiError(
        'ERR_SERVER_RESPONSE_INVALID',
        `PUT blob ${sha256Hex}: the answer is not JSON`,
        {
          status: res.status,
        },
      );
    }
    return { created: created === true || res.status === 201 };
  }

  // ---- resumable uploads: one blob in parts (POST/GET /v1/admin/uploads...) ----

  /**
   * Starts an upload session for a blob, or learns that the server already has it. Repeating it
   * after a lost answer at worst leaves an unused session, which the server expires.
   */
  async createUpload(
    digest: string,
    sizeBytes: number,
    o: { partSizeBytes?: number | undefined; signal?: AbortSignal | undefined } = {},
  ): Promise<{ present: true } | { present: false; upload: UploadInfo }> {
    const { status, body } = await this.callJson({
      method: 'POST',
      path: '/v1/admin/uploads',
      json: {
        digest,
        sizeBytes,
        ...(o.partSizeBytes === undefined ? {} : { partSizeBytes: o.partSizeBytes }),
      },
      idempotent: true,
      expect: [],
      signal: o.signal,
    });
    if (status === 200) return { present: true };
    return { present: false, upload: asUpload(body) };
  }

  /** The session and the parts the server has, or undefined when it is gone (completed, aborted, expired). */
  async getUpload(uploadId: string, signal?: AbortSignal): Promise<UploadInfo | undefined> {
    const { status, body } = await this.callJson({
      method: 'GET',
      path: `/v1/admin/uploads/${encodeURIComponent(uploadId)}`,
      idempotent: true,
      expect: [404],
      signal,
    });
    return status === 404 ? undefined : asUpload(body);
  }

  /** Open sessions for one digest, oldest first. */
  async listUploads(digest: string, signal?: AbortSignal): Promise<UploadInfo[]> {
    const { body } = await this.callJson({
      method: 'GET',
      path: `/v1/admin/uploads?digest=${encodeURIComponent(digest)}`,
      idempotent: true,
      expect: [],
      signal,
    });
    return itemsOf(body, 'upload list').map(asUpload);
  }

  /**
   * Sends one part (held in memory: at most the session's part size) with its RFC 9530
   * Content-Digest; the server refuses bytes that do not match. Retries re-send the same bytes.
   */
  async putUploadPart(
    uploadId: string,
    partNumber: number,
    bytes: Uint8Array,
    sha256Hex: string,
    o: { signal?: AbortSignal | undefined; onBytes?: (sentInThisTry: number) => void } = {},
  ): Promise<UploadPartInfo> {
    const res = await this.call({
      method: 'PUT',
      path: `/v1/admin/uploads/${encodeURIComponent(uploadId)}/parts/${partNumber}`,
      headers: { 'content-digest': `sha-256=:${Buffer.from(sha256Hex, 'hex').toString('base64')}:` },
      idempotent: true,
      expect: [],
      signal: o.signal,
      stream: () => {
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
      },
    });
    const text = await readLimitedText(res, `PUT part ${partNumber} of upload ${uploadId}`);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new AdminApiError(
        'ERR_SERVER_RESPONSE_INVALID',
        `PUT part ${partNumber}: the answer is not JSON`,
        {
          status: res.status,
        },
      );
    }
    return asUploadPart(value);
  }

  /** Assembles and verifies the blob on the server; `created: false` when it was already stored. */
  async completeUpload(
    uploadId: string,
    signal?: AbortSignal,
  ): Promise<{ digest: string; sizeBytes: number; created: boolean }> {
    const { status, body } = await this.callJson({
      method: 'POST',
      path: `/v1/admin/uploads/${encodeURIComponent(uploadId)}/complete`,
      // A retry after a lost answer finds the session gone (ERR_UPLOAD_NOT_FOUND); the caller then
      // checks the blob itself.
      idempotent: true,
      expect: [],
      signal,
    });
    const r = record(body, 'upload completion');
    return {
      digest: str(r, 'digest', 'upload completion'),
      sizeBytes: int(r, 'sizeBytes', 'upload completion'),
      created: status === 201,
    };
  }

  async abortUpload(uploadId: string, signal?: AbortSignal): Promise<void> {
    await this.call({
      method: 'DELETE',
      path: `/v1/admin/uploads/${encodeURIComponent(uploadId)}`,
      idempotent: true,
      expect: [],
      signal,
      timeoutMs: JSON_TIMEOUT_MS,
    });
  }

  /**
   * `POST /v1/admin/releases/{id}/deltas` (docs/CONTRACTS.md "Deltas end to end"): 201 registered,
   * 200 when that exact delta already was (so a re-run of a push is harmless, and so is a retry).
   */
  async registerDelta(
    releaseId: string,
    delta: DeltaRegistration,
    signal?: AbortSignal,
  ): Promise<{ id: string; created: boolean }> {
    const { status, body } = await this.callJson({
      method: 'POST',
      path: `/v1/admin/releases/${encodeURIComponent(releaseId)}/deltas`,
      json: delta,
      idempotent: true,
      expect: [],
      signal,
    });
    return {
      id: str(record(body, 'delta registration'), 'id', 'delta registration'),
      created: status === 201,
    };
  }

  /** `POST /v1/admin/releases`: the server verifies the JWS against the product's trust root. */
  async pushRelease(
    manifestJws: string,
    signal?: AbortSignal,
  ): Promise<{ release: ReleaseInfo; created: boolean }> {
    // Idempotent on the server: the same JWS again answers 200 with the existing release.
    const { status, body } = await this.callJson({
      method: 'POST',
      path: '/v1/admin/releases',
      json: { manifestJws },
      idempotent: true,
      expect: [],
      signal,
    });
    return { release: asRelease(body), created: status === 201 };
  }

  async listReleases(product?: string): Promise<ReleaseInfo[]> {
    const query = product === undefined ? '' : `?product=${encodeURIComponent(product)}`;
    const { body } = await this.callJson({
      method: 'GET',
      path: `/v1/admin/releases${query}`,
      idempotent: true,
      expect: [],
    });
    return itemsOf(body, 'releases').map(asRelease);
  }

  /** The product, or undefined when the server has none by that id. */
  async getProduct(id: string, signal?: AbortSignal): Promise<ProductInfo | undefined> {
    const { status, body } = await this.callJson({
      method: 'GET',
      path: `/v1/admin/products/${encodeURIComponent(id)}`,
      idempotent: true,
      expect: [404],
      signal,
    });
    return status === 404 ? undefined : asProduct(body);
  }

  async createProduct(id: string, trustRoot: unknown, description?: string): Promise<ProductInfo> {
    const { body } = await this.callJson({
      method: 'POST',
      path: '/v1/admin/products',
      json: { id, trustRoot, ...(description === undefined ? {} : { description }) },
      // Not repeated: a retry after a lost answer would report ERR_CONFLICT for our own creation.
      idempotent: false,
      expect: [],
    });
    return asProduct(body);
  }

  async setTrustRoot(id: string, trustRoot: unknown): Promise<ProductInfo> {
    const { body } = await this.callJson({
      method: 'PUT',
      path: `/v1/admin/products/${encodeURIComponent(id)}/trust-root`,
      json: { trustRoot },
      idempotent: false,
      expect: [],
    });
    return asProduct(body);
  }

  async createProvisioningToken(o: {
    product: string;
    expiresInSeconds: number;
    maxUses?: number;
    description?: string;
  }): Promise<ProvisioningTokenInfo & { token: string }> {
    const { body } = await this.callJson({
      method: 'POST',
      path: '/v1/admin/provisioning-tokens',
      json: o,
      // Never repeated: two tokens would exist and only one be shown.
      idempotent: false,
      expect: [],
    });
    const info = asToken(body);
    if (info.token === undefined) {
      throw new AdminApiError(
        'ERR_SERVER_RESPONSE_INVALID',
        'POST /v1/admin/provisioning-tokens: no token in the answer',
      );
    }
    return { ...info, token: info.token };
  }

  /** One page of devices (the server's cursor pagination). */
  async listDevices(o: {
    product?: string;
    hardware?: string;
    tag?: string;
    version?: string;
    limit?: number;
    cursor?: string;
  }): Promise<{ items: DeviceInfo[]; nextCursor: string | null }> {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(o)) if (v !== undefined) params.set(k, String(v));
    const query = params.size === 0 ? '' : `?${params.toString()}`;
    const { body } = await this.callJson({
      method: 'GET',
      path: `/v1/admin/devices${query}`,
      idempotent: true,
      expect: [],
    });
    const next = (body as { nextCursor?: unknown }).nextCursor;
    return {
      items: itemsOf(body, 'devices').map(asDevice),
      nextCursor: typeof next === 'string' ? next : null,
    };
  }
}

// ---- narrowing the server's answers (unknown at the trust boundary) ----

function invalid(what: string): AdminApiError {
  return new AdminApiError(
    'ERR_SERVER_RESPONSE_INVALID',
    `the server's ${what} answer does not have the documented shape`,
  );
}

function record(value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalid(what);
  return value as Record<string, unknown>;
}

function str(o: Record<string, unknown>, key: string, what: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw invalid(what);
  return v;
}

function strOrNull(o: Record<string, unknown>, key: string, what: string): string | null {
  const v = o[key];
  if (v !== null && typeof v !== 'string') throw invalid(what);
  return v;
}

function int(o: Record<string, unknown>, key: string, what: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw invalid(what);
  return v;
}

function itemsOf(body: unknown, what: string): unknown[] {
  const items = record(body, what)['items'];
  if (!Array.isArray(items)) throw invalid(what);
  return items;
}

function asProduct(value: unknown): ProductInfo {
  const o = record(value, 'product');
  return {
    id: str(o, 'id', 'product'),
    description: str(o, 'description', 'product'),
    trustRootVersion: int(o, 'trustRootVersion', 'product'),
  };
}

function asRelease(value: unknown): ReleaseInfo {
  const o = record(value, 'release');
  const compatible = o['compatible'];
  if (
    !Array.isArray(compatible) ||
    !compatible.every((c) => typeof c === 'string') ||
    typeof o['yanked'] !== 'boolean'
  ) {
    throw invalid('release');
  }
  return {
    id: str(o, 'id', 'release'),
    product: str(o, 'product', 'release'),
    version: str(o, 'version', 'release'),
    securityVersion: int(o, 'securityVersion', 'release'),
    compatible: compatible as string[],
    expires: str(o, 'expires', 'release'),
    yanked: o['yanked'],
    createdAt: str(o, 'createdAt', 'release'),
  };
}

function asToken(value: unknown): ProvisioningTokenInfo {
  const o = record(value, 'provisioning token');
  const maxUses = o['maxUses'];
  if (maxUses !== null && (typeof maxUses !== 'number' || !Number.isSafeInteger(maxUses)))
    throw invalid('provisioning token');
  const token = o['token'];
  if (token !== undefined && typeof token !== 'string') throw invalid('provisioning token');
  return {
    id: str(o, 'id', 'provisioning token'),
    product: str(o, 'product', 'provisioning token'),
    expiresAt: str(o, 'expiresAt', 'provisioning token'),
    maxUses,
    uses: int(o, 'uses', 'provisioning token'),
    ...(token === undefined ? {} : { token }),
  };
}

function asUploadPart(value: unknown): UploadPartInfo {
  const o = record(value, 'upload part');
  const sha256 = str(o, 'sha256', 'upload part');
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw invalid('upload part');
  return {
    partNumber: int(o, 'partNumber', 'upload part'),
    sizeBytes: int(o, 'sizeBytes', 'upload part'),
    sha256,
  };
}

function asUpload(value: unknown): UploadInfo {
  const o = record(value, 'upload');
  const parts = o['parts'];
  if (!Array.isArray(parts)) throw invalid('upload');
  const uploadId = str(o, 'uploadId', 'upload');
  // The id goes into URL paths of later calls: only the documented shape.
  if (!/^[0-9a-f]{32}$/.test(uploadId)) throw invalid('upload');
  return {
    uploadId,
    digest: str(o, 'digest', 'upload'),
    sizeBytes: int(o, 'sizeBytes', 'upload'),
    partSizeBytes: int(o, 'partSizeBytes', 'upload'),
    partCount: int(o, 'partCount', 'upload'),
    parts: parts.map(asUploadPart),
    receivedBytes: int(o, 'receivedBytes', 'upload'),
    expiresAt: str(o, 'expiresAt', 'upload'),
  };
}

function asDevice(value: unknown): DeviceInfo {
  const o = record(value, 'device');
  const tags = o['tags'];
  if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string')) throw invalid('device');
  return {
    id: str(o, 'id', 'device'),
    product: str(o, 'product', 'device'),
    hardware: str(o, 'hardware', 'device'),
    tags: tags as string[],
    currentVersion: strOrNull(o, 'currentVersion', 'device'),
    bootedSlot: strOrNull(o, 'bootedSlot', 'device'),
    installState: strOrNull(o, 'installState', 'device'),
    lastSeenAt: strOrNull(o, 'lastSeenAt', 'device'),
    registeredAt: str(o, 'registeredAt', 'device'),
  };
}

// ---- the CLI's way to make a client: server from --server or $ABOTA_SERVER, key from the environment ----

import { API_KEY_ENV, SERVER_ENV, type ServerFlags } from './server-api/client.js';

export { API_KEY_ENV, SERVER_ENV, type ServerFlags } from './server-api/client.js';

/**
 * The API key is read from the environment only — never a flag value, which would land in shell
 * history and in `ps` output.
 */
export function clientFromEnvironment(flags: ServerFlags, env: NodeJS.ProcessEnv = process.env): AdminClient {
  const server = flags.server ?? env[SERVER_ENV];
  if (server === undefined || server === '') {
    throw new AdminApiError('ERR_USAGE', `no update server: pass --server <url> or set ${SERVER_ENV}`);
  }
  const variable = flags.apiKeyEnv ?? API_KEY_ENV;
  const apiKey = env[variable];
  if (apiKey === undefined || apiKey === '') {
    throw new AdminApiError(
      'ERR_API_KEY_MISSING',
      `no API key: set ${variable} to an admin API key (abk_...; created with POST /v1/admin/api-keys or printed once by the server's first start)`,
    );
  }
  if (!apiKey.startsWith('abk_')) {
    throw new AdminApiError(
      'ERR_API_KEY_MISSING',
      `$${variable} does not hold an abota API key (expected abk_...)`,
    );
  }
  return new AdminClient({ serverUrl: server, apiKey });
}
