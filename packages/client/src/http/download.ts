// Resumable blob download: streams bytes [startByte, totalBytes) of a URL, re-requesting with
// `Range: bytes=<offset>-` after a dropped connection, an idle stall or a 5xx, with backoff and
// jitter between attempts. Never yields more than `totalBytes` (the size in the signed manifest).
// Requests go through node:http/https (node-http.ts, not undici's fetch: README "Memory"); an
// injected `fetch` is used as is (tests, custom transports).
import { ClientError } from '../errors.js';
import {
  type BackoffOptions,
  DEFAULT_BACKOFF,
  abortError,
  backoffDelayMs,
  isTransient,
  MAX_IN_OPERATION_RETRY_AFTER_MS,
  parseRetryAfter,
  retryDelayMs,
  sleep,
} from './backoff.js';
import { httpGet, nodeHttpFetch } from './node-http.js';
import type { TokenBucket } from './token-bucket.js';

export interface DownloadOptions {
  url: string;
  /** First byte wanted (resume point). */
  startByte: number;
  /** Exact size of the whole blob, from the signed manifest; the download never reads past it. */
  totalBytes: number;
  /** Request headers, asked for again on every attempt (a fresh device JWT each time). */
  headers?: () => Promise<Record<string, string>>;
  /** Send the requests through this fetch instead of node:http/https. */
  fetch?: typeof fetch;
  bucket?: TokenBucket;
  backoff?: BackoffOptions;
  /** A response that delivers nothing for this long is abandoned and resumed. */
  idleTimeoutMs?: number;
  /**
   * Slow retrieval (like curl --speed-limit/--speed-time): an attempt that delivers fewer than
   * `minBytesPerSecond` on average over any `windowMs` is abandoned (ERR_HTTP_TOO_SLOW, retried
   * from where it stopped, counted as a failed try even though bytes arrived), and the whole
   * download must end within its budget: windowMs + 2 × the remaining bytes at the minimum rate.
   */
  minRate?: { bytesPerSecond: number; windowMs: number };
  /** Told of every chunk received. */
  onChunk?: () => void;
  signal?: AbortSignal;
  /** Told before each retry's delay (default: the backoff options' onRetry). */
  onRetry?: (e: unknown, failedTry: number, delayMs: number) => void;
}

/**
 * Classify a non-2xx status: 408/429/5xx are worth retrying, the rest are final. A 429 or 503
 * carries the server's Retry-After (bounded), which the retry and the daemon loop honour.
 */
export function statusError(
  status: number,
  what: string,
  retryAfter?: string | null,
  detail = '',
): ClientError {
  const transient = status === 408 || status === 429 || status >= 500;
  const retryAfterMs =
    status === 429 || status === 503 ? parseRetryAfter(retryAfter ?? undefined) : undefined;
  return new ClientError(
    transient ? 'ERR_HTTP_UNAVAILABLE' : 'ERR_HTTP_STATUS',
    `${what}: HTTP ${status}${detail}${retryAfterMs === undefined ? '' : ` (retry after ${Math.ceil(retryAfterMs / 1000)} s)`}`,
    retryAfterMs === undefined ? undefined : { retryAfterMs },
  );
}

/** Socket and TLS failures that a retry cannot fix (the name does not exist, the certificate is not valid). */
const PERMANENT_CAUSES: Readonly<Record<string, 'ERR_HTTP_NAME_NOT_FOUND' | 'ERR_HTTP_TLS'>> = {
  ENOTFOUND: 'ERR_HTTP_NAME_NOT_FOUND',
  ERR_TLS_CERT_ALTNAME_INVALID: 'ERR_HTTP_TLS',
  CERT_HAS_EXPIRED: 'ERR_HTTP_TLS',
  CERT_NOT_YET_VALID: 'ERR_HTTP_TLS',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'ERR_HTTP_TLS',
  SELF_SIGNED_CERT_IN_CHAIN: 'ERR_HTTP_TLS',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'ERR_HTTP_TLS',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'ERR_HTTP_TLS',
};

export function networkError(e: unknown, what: string): ClientError {
  if (e instanceof ClientError) return e;
  // node:http rejects with the socket error itself; fetch wraps it as `cause`.
  const own = (e as { code?: unknown }).code;
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  const detail =
    (typeof own === 'string' ? own : undefined) ?? cause?.code ?? cause?.message ?? (e as Error).message;
  const permanent = PERMANENT_CAUSES[detail];
  if (permanent !== undefined)
    return new ClientError(permanent, `${what}: ${detail} (retrying cannot help: check server.url)`, {
      cause: e,
    });
  return new ClientError('ERR_HTTP_NETWORK', `${what}: ${detail}`, { cause: e });
}

const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/;

/** One GET as downloadRange sees it, whichever client carried it (redirects already followed). */
interface BlobResponse {
  status: number;
  header(name: string): string | undefined;
  body: AsyncIterable<Uint8Array>;
  /** Stop the transfer (the connection is closed, not drained). */
  discard(): void;
}

type GetBlob = (
  url: string,
  headers: Record<string, string>,
  signal: AbortSignal,
  what: string,
) => Promise<BlobResponse>;

export async function* downloadRange(o: DownloadOptions): AsyncGenerator<Uint8Array, void, undefined> {
  // nodeHttpFetch (the agent bin's fetch) is node:http already: stream straight from it.
  const get = o.fetch === undefined || o.fetch === nodeHttpFetch ? getWithNodeHttp : getWithFetch(o.fetch);
  const backoff = o.backoff ?? DEFAULT_BACKOFF;
  const wait = backoff.sleep ?? sleep;
  const idleTimeoutMs = o.idleTimeoutMs ?? 60_000;
  const what = `download ${redactUrl(o.url)}`;
  let offset = o.startByte;
  let failures = 0;
  const budgetMs =
    o.minRate === undefined
      ? undefined
      : o.minRate.windowMs + (2000 * (o.totalBytes - o.startByte)) / o.minRate.bytesPerSecond;
  const deadline = budgetMs === undefined ? undefined : performance.now() + budgetMs;
  const overBudget = (): ClientError =>
    new ClientError(
      'ERR_HTTP_TOO_SLOW',
      `${what}: ${offset} of ${o.totalBytes} bytes after ${Math.round(budgetMs! / 1000)} s, the budget for this size at ${o.minRate!.bytesPerSecond} bytes/s`,
    );
  while (offset < o.totalBytes) {
    if (o.signal?.aborted) throw abortError(o.signal);
    const attemptAbort = new AbortController();
    const onOuterAbort = (): void => attemptAbort.abort(o.signal?.reason);
    o.signal?.addEventListener('abort', onOuterAbort, { once: true });
    let idle: NodeJS.Timeout | undefined;
    const armIdle = (): void => {
      clearTimeout(idle);
      idle = setTimeout(
        () =>
          attemptAbort.abort(new ClientError('ERR_HTTP_NETWORK', `${what}: no data for ${idleTimeoutMs} ms`)),
        idleTimeoutMs,
      );
    };
    const progressBefore = offset;
    // Minimum average rate per window, and the whole download's budget.
    let windowStart = offset;
    const rateTimer =
      o.minRate === undefined
        ? undefined
        : setInterval(() => {
            const got = offset - windowStart;
            windowStart = offset;
            const min = (o.minRate!.bytesPerSecond * o.minRate!.windowMs) / 1000;
            if (got < min)
              attemptAbort.abort(
                new ClientError(
                  'ERR_HTTP_TOO_SLOW',
                  `${what}: ${got} bytes in ${o.minRate!.windowMs} ms, below the minimum of ${o.minRate!.bytesPerSecond} bytes/s`,
                ),
              );
          }, o.minRate.windowMs);
    const budgetTimer =
      deadline === undefined
        ? undefined
        : setTimeout(() => attemptAbort.abort(overBudget()), Math.max(0, deadline - performance.now()));
    try {
      armIdle();
      let res: BlobResponse;
      try {
        res = await get(
          o.url,
          { ...(await o.headers?.()), range: `bytes=${offset}-${o.totalBytes - 1}` },
          attemptAbort.signal,
          what,
        );
      } catch (e) {
        throw networkError(attemptAbort.signal.reason ?? e, what);
      }
      try {
        let skip = 0;
        if (res.status === 206) {
          const range = res.header('content-range');
          const m = CONTENT_RANGE.exec(range ?? '');
          if (m === null || Number(m[1]) !== offset || (m[3] !== '*' && Number(m[3]) !== o.totalBytes)) {
            throw new ClientError(
              'ERR_HTTP_BAD_RESPONSE',
              `${what}: asked for bytes ${offset}-${o.totalBytes - 1} of ${o.totalBytes}, got Content-Range "${range}"`,
            );
          }
        } else if (res.status === 200) {
          // A server that ignores Range sends the whole blob: drop what we already have.
          skip = offset;
          const len = res.header('content-length');
          if (len !== undefined && Number(len) !== o.totalBytes) {
            throw new ClientError(
              'ERR_HTTP_BAD_RESPONSE',
              `${what}: blob is ${len} bytes, the signed manifest says ${o.totalBytes}`,
            );
          }
        } else {
          throw statusError(res.status, what, res.header('retry-after'));
        }
        const chunks = res.body[Symbol.asyncIterator]();
        for (;;) {
          let r: IteratorResult<Uint8Array>;
          try {
            r = await chunks.next();
          } catch (e) {
            throw networkError(attemptAbort.signal.reason ?? e, what);
          }
          if (r.done) break;
          armIdle();
          o.onChunk?.();
          let chunk = r.value;
          if (skip > 0) {
            const n = Math.min(skip, chunk.byteLength);
            skip -= n;
            chunk = chunk.subarray(n);
            if (chunk.byteLength === 0) continue;
          }
          if (offset + chunk.byteLength > o.totalBytes) {
            throw new ClientError(
              'ERR_HTTP_TOO_LARGE',
              `${what}: server sent more than the ${o.totalBytes} bytes the signed manifest states`,
            );
          }
          if (o.bucket !== undefined) await o.bucket.take(chunk.byteLength, o.signal);
          offset += chunk.byteLength;
          yield chunk;
        }
      } finally {
        res.discard();
      }
      if (offset < o.totalBytes) {
        // An aborted attempt (idle timeout) may end the body quietly rather than with an error.
        const reason = attemptAbort.signal.reason as unknown;
        if (reason !== undefined) throw networkError(reason, what);
        throw new ClientError(
          'ERR_HTTP_NETWORK',
          `${what}: connection ended at byte ${offset} of ${o.totalBytes}`,
        );
      }
    } catch (e) {
      if (o.signal?.aborted) throw abortError(o.signal);
      if (!isTransient(e)) throw e;
      if (deadline !== undefined && performance.now() >= deadline) throw overBudget();
      // Progress resets the count: a flaky link that keeps delivering is not a failure — unless
      // it delivers too slowly (slow retrieval), which counts whatever arrived.
      const tooSlow = (e as { code?: unknown }).code === 'ERR_HTTP_TOO_SLOW';
      failures = offset > progressBefore && !tooSlow ? 1 : failures + 1;
      if (failures >= backoff.maxAttempts) throw e;
      const delayMs = retryDelayMs(
        e,
        backoffDelayMs(failures - 1, backoff, backoff.random),
        MAX_IN_OPERATION_RETRY_AFTER_MS,
        backoff.random,
      );
      (o.onRetry ?? backoff.onRetry)?.(e, failures, delayMs);
      await wait(delayMs, o.signal);
    } finally {
      clearTimeout(idle);
      clearInterval(rateTimer);
      clearTimeout(budgetTimer);
      o.signal?.removeEventListener('abort', onOuterAbort);
    }
  }
}

/** An injected fetch: it follows redirects itself (and drops Authorization across origins). */
function getWithFetch(doFetch: typeof fetch): GetBlob {
  return async (url, headers, signal) => {
    const res = await doFetch(url, { headers, signal, redirect: 'follow' });
    const body = res.body;
    return {
      status: res.status,
      header: (name) => res.headers.get(name) ?? undefined,
      body: body ?? noChunks(),
      discard: () => void body?.cancel().catch(() => {}),
    };
  };
}

async function* noChunks(): AsyncGenerator<Uint8Array> {}

/** node:http: ranges are byte offsets of the blob itself, so no content coding may be applied. */
const getWithNodeHttp: GetBlob = async (url, headers, signal, what) => {
  const res = await httpGet(url, { 'accept-encoding': 'identity', ...headers }, signal, what);
  return { status: res.status, header: res.header, body: res.body, discard: () => res.body.destroy() };
};

/** Presigned URLs carry credentials in the query string: never log them. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}${u.search === '' ? '' : '?…'}`;
  } catch {
    return '(invalid URL)';
  }
}
