// Resumable blob download: streams bytes [startByte, totalBytes) of a URL, re-requesting with
// `Range: bytes=<offset>-` after a dropped connection, an idle stall or a 5xx, with backoff and
// jitter between attempts. Never yields more than `totalBytes` (the size in the signed manifest).
import { ClientError } from '../errors.js';
import {
  type BackoffOptions,
  DEFAULT_BACKOFF,
  abortError,
  backoffDelayMs,
  isTransient,
  sleep,
} from './backoff.js';
import type { TokenBucket } from './token-bucket.js';

export interface DownloadOptions {
  url: string;
  /** First byte wanted (resume point). */
  startByte: number;
  /** Exact size of the whole blob, from the signed manifest; the download never reads past it. */
  totalBytes: number;
  /** Request headers, asked for again on every attempt (a fresh device JWT each time). */
  headers?: () => Promise<Record<string, string>>;
  fetch?: typeof fetch;
  bucket?: TokenBucket;
  backoff?: BackoffOptions;
  /** A response that delivers nothing for this long is abandoned and resumed. */
  idleTimeoutMs?: number;
  signal?: AbortSignal;
  onRetry?: (e: unknown, attempt: number, delayMs: number) => void;
}

/** Classify a non-2xx status: 408/429/5xx are worth retrying, the rest are final. */
export function statusError(status: number, what: string): ClientError {
  const transient = status === 408 || status === 429 || status >= 500;
  return new ClientError(transient ? 'ERR_HTTP_UNAVAILABLE' : 'ERR_HTTP_STATUS', `${what}: HTTP ${status}`);
}

export function networkError(e: unknown, what: string): ClientError {
  if (e instanceof ClientError) return e;
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  const detail = cause?.code ?? cause?.message ?? (e as Error).message;
  return new ClientError('ERR_HTTP_NETWORK', `${what}: ${detail}`, { cause: e });
}

const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/;

export async function* downloadRange(o: DownloadOptions): AsyncGenerator<Uint8Array, void, undefined> {
  const doFetch = o.fetch ?? fetch;
  const backoff = o.backoff ?? DEFAULT_BACKOFF;
  const wait = backoff.sleep ?? sleep;
  const idleTimeoutMs = o.idleTimeoutMs ?? 60_000;
  const what = `download ${redactUrl(o.url)}`;
  let offset = o.startByte;
  let failures = 0;
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
    try {
      armIdle();
      let res: Response;
      try {
        res = await doFetch(o.url, {
          headers: { ...(await o.headers?.()), range: `bytes=${offset}-${o.totalBytes - 1}` },
          signal: attemptAbort.signal,
          redirect: 'follow',
        });
      } catch (e) {
        throw networkError(attemptAbort.signal.reason ?? e, what);
      }
      let skip = 0;
      if (res.status === 206) {
        const m = CONTENT_RANGE.exec(res.headers.get('content-range') ?? '');
        if (m === null || Number(m[1]) !== offset || (m[3] !== '*' && Number(m[3]) !== o.totalBytes)) {
          await res.body?.cancel().catch(() => {});
          throw new ClientError(
            'ERR_HTTP_BAD_RESPONSE',
            `${what}: asked for bytes ${offset}-${o.totalBytes - 1} of ${o.totalBytes}, got Content-Range "${res.headers.get('content-range')}"`,
          );
        }
      } else if (res.status === 200) {
        // A server that ignores Range sends the whole blob: drop what we already have.
        skip = offset;
        const len = res.headers.get('content-length');
        if (len !== null && Number(len) !== o.totalBytes) {
          await res.body?.cancel().catch(() => {});
          throw new ClientError(
            'ERR_HTTP_BAD_RESPONSE',
            `${what}: blob is ${len} bytes, the signed manifest says ${o.totalBytes}`,
          );
        }
      } else {
        await res.body?.cancel().catch(() => {});
        throw statusError(res.status, what);
      }
      if (res.body === null) throw new ClientError('ERR_HTTP_NETWORK', `${what}: response without a body`);
      const reader = res.body.getReader();
      try {
        for (;;) {
          let r: Awaited<ReturnType<typeof reader.read>>;
          try {
            r = await reader.read();
          } catch (e) {
            throw networkError(attemptAbort.signal.reason ?? e, what);
          }
          if (r.done) break;
          armIdle();
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
        await reader.cancel().catch(() => {});
      }
      if (offset < o.totalBytes) {
        throw new ClientError(
          'ERR_HTTP_NETWORK',
          `${what}: connection ended at byte ${offset} of ${o.totalBytes}`,
        );
      }
    } catch (e) {
      if (o.signal?.aborted) throw abortError(o.signal);
      if (!isTransient(e)) throw e;
      // Progress resets the budget: a slow, flaky link that keeps delivering is not a failure.
      failures = offset > progressBefore ? 1 : failures + 1;
      if (failures >= backoff.maxAttempts) throw e;
      const delayMs = backoffDelayMs(failures - 1, backoff, backoff.random);
      o.onRetry?.(e, failures, delayMs);
      await wait(delayMs, o.signal);
    } finally {
      clearTimeout(idle);
      o.signal?.removeEventListener('abort', onOuterAbort);
    }
  }
}

/** Presigned URLs carry credentials in the query string: never log them. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}${u.search === '' ? '' : '?…'}`;
  } catch {
    return '(invalid URL)';
  }
}
