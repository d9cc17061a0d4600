// The fetch under the typed client (hono/client `hc` calls it for every request): the API key,
// one deadline per call, retries with backoff and jitter for what is safe to repeat, a size cap
// on every answer, redirects refused, and a fresh streamed body per try for uploads. Every
// non-2xx answer becomes an AdminApiError carrying the server's `{ error: { code, message } }`;
// network failures, 5xx, 408 and 429 are retried with backoff on idempotent calls (each retry
// told on stderr with its delay); other 4xx, an unknown host name and a bad certificate never are.
import { setTimeout as delay } from 'node:timers/promises';
import { AdminApiError } from './error.js';

/** JSON answers of the admin API are small; anything larger is not one (size limit on network input). */
export const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
/** A JSON call that takes longer than this is treated as a network failure (and retried). */
export const JSON_TIMEOUT_MS = 60_000;

export interface RetryPolicy {
  /** Total tries of one call, including the first. */
  attempts: number;
  /** Delay before the second try; doubled each time (± 25 % jitter), capped at `maxDelayMs`. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 500, maxDelayMs: 8000 };

/** How one call is made; the typed client carries it to the transport. */
export interface CallPolicy {
  /**
   * Safe to repeat after a network failure or 5xx. Default: every method but POST (HEAD/GET,
   * content-addressed PUT, DELETE); a POST the server answers idempotently says so here.
   */
  idempotent?: boolean;
  signal?: AbortSignal | undefined;
  /** Whole-call deadline; default JSON_TIMEOUT_MS; null for uploads, which may take long. */
  timeoutMs?: number | null;
  /** A fresh streamed request body per try (blob and part uploads), and its exact size. */
  upload?: () => { body: ReadableStream<Uint8Array>; sizeBytes: number };
  /** Extra request headers (e.g. Content-Digest of an upload part). */
  headers?: Record<string, string>;
  /** Send a GET route's request as HEAD (hono answers HEAD with the GET route; hc has no $head). */
  head?: boolean;
}

/** One retry about to happen, for the person watching (stderr by default). */
export interface RetryNotice {
  what: string;
  /** The try that failed (1-based) and the total allowed. */
  attempt: number;
  attempts: number;
  delayMs: number;
  reason: string;
}

export function printRetry(n: RetryNotice): void {
  process.stderr.write(
    `abota: ${n.reason}; retrying in ${(n.delayMs / 1000).toFixed(1)} s (try ${n.attempt + 1} of ${n.attempts})\n`,
  );
}

export interface TransportOptions {
  serverUrl: URL;
  apiKey: string;
  retry: RetryPolicy;
  fetch: typeof fetch;
  /** Told about every retry before its delay. */
  onRetry: (notice: RetryNotice) => void;
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

const interrupted = (): AdminApiError =>
  new AdminApiError('ERR_INTERRUPTED', 'interrupted; nothing more was sent');

/** Wait `ms`; an abort rejects with ERR_INTERRUPTED at once (Node's abortable timer underneath). */
const sleep = (ms: number, signal: AbortSignal | undefined): Promise<void> =>
  delay(ms, undefined, signal === undefined ? undefined : { signal }).catch((error: unknown) => {
    throw signal?.aborted ? interrupted() : error;
  });

/** The body of an answer, failing once it passes `maxBytes` (so no caller reads an unbounded answer). */
function capped(
  body: ReadableStream<Uint8Array>,
  maxBytes: number,
  what: string,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let total = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) {
        controller.close();
        return;
      }
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        controller.error(
          new AdminApiError(
            'ERR_SERVER_RESPONSE_INVALID',
            `${what}: the answer exceeds ${maxBytes} bytes; is --server an abota update server?`,
          ),
        );
        return;
      }
      controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
}

/** The server's `{ error: { code, message } }`, or a description of what came instead. */
async function errorFromResponse(res: Response, what: string): Promise<AdminApiError> {
  const text = await res.text().catch(() => '');
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

export class Transport {
  /** Retries done so far (for reports). */
  retriesDone = 0;

  constructor(private readonly options: TransportOptions) {}

  /** One call as hono/client hands it over (URL and init), made under `policy`. */
  async send(url: string, init: RequestInit, policy: CallPolicy): Promise<Response> {
    const method = policy.head === true ? 'HEAD' : (init.method ?? 'GET');
    const target = new URL(url);
    const what = `${method} ${target.pathname}${target.search}`;
    const idempotent = policy.idempotent ?? method !== 'POST';
    const { retry } = this.options;
    for (let attempt = 1; ; attempt++) {
      if (policy.signal?.aborted) throw interrupted();
      let failure: AdminApiError;
      try {
        const res = await this.options.fetch(url, this.requestInit(method, init, policy));
        const body =
          res.body === null || [204, 205, 304].includes(res.status)
            ? null
            : capped(res.body, MAX_RESPONSE_BYTES, what);
        const answer = new Response(body, { status: res.status, headers: res.headers });
        if (res.status >= 200 && res.status < 300) return answer;
        failure = await errorFromResponse(answer, what);
        if (!isRetryableStatus(res.status) || !idempotent) throw failure;
      } catch (err) {
        if (err instanceof AdminApiError) throw err;
        if (policy.signal?.aborted) throw interrupted();
        const { error, permanent } = this.unreachable(what, err);
        failure = error;
        if (!idempotent || permanent) throw failure;
      }
      if (attempt >= retry.attempts) {
        throw new AdminApiError(failure.code, `${failure.message} (gave up after ${attempt} tries)`, {
          ...(failure.status === undefined ? {} : { status: failure.status }),
          cause: failure,
        });
      }
      const delay =
        Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** (attempt - 1)) * (0.75 + Math.random() * 0.5);
      this.retriesDone++;
      this.options.onRetry({
        what,
        attempt,
        attempts: retry.attempts,
        delayMs: delay,
        reason: failure.message,
      });
      await sleep(delay, policy.signal);
    }
  }

  private requestInit(
    method: string,
    init: RequestInit,
    policy: CallPolicy,
  ): RequestInit & { duplex?: 'half' } {
    const headers = new Headers(init.headers);
    for (const [name, value] of Object.entries(policy.headers ?? {})) headers.set(name, value);
    headers.set('authorization', `Bearer ${this.options.apiKey}`);
    headers.set('accept', 'application/json');
    const out: RequestInit & { duplex?: 'half' } = { method, headers, redirect: 'error' };
    if (policy.upload !== undefined) {
      const { body, sizeBytes } = policy.upload();
      headers.set('content-type', 'application/octet-stream');
      headers.set('content-length', String(sizeBytes));
      out.body = body;
      out.duplex = 'half';
    } else if (init.body !== undefined && init.body !== null && method !== 'HEAD') {
      out.body = init.body;
    }
    const timeoutMs = policy.timeoutMs === undefined ? JSON_TIMEOUT_MS : policy.timeoutMs;
    const signals = [policy.signal, timeoutMs === null ? undefined : AbortSignal.timeout(timeoutMs)].filter(
      (s): s is AbortSignal => s !== undefined,
    );
    if (signals.length > 0) out.signal = AbortSignal.any(signals);
    return out;
  }

  private unreachable(what: string, err: unknown): { error: AdminApiError; permanent: boolean } {
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
    const error = new AdminApiError(
      'ERR_SERVER_UNREACHABLE',
      `${what} to ${this.options.serverUrl.origin}: ${detail}${permanent ? ' (retrying cannot help: check --server)' : ''}`,
      { cause: err },
    );
    return { error, permanent };
  }
}
