// The agent's HTTP client: node:http/https instead of the global fetch. Node's fetch is undici,
// which compiles its WebAssembly HTTP parser on the first request — a 15–25 MiB RSS spike, and
// no fetch at all under `--jitless` (no WebAssembly), which the agent's systemd unit sets to stay
// small (README "Memory"). `httpGet` streams blobs; `nodeHttpFetch` is the subset of fetch the
// update-server API client uses, so the agent can run without undici. node:https is loaded
// only for an https: URL: on Node 24, loading node:tls starts parsing Node's bundled root
// certificates at once (+5 MiB RSS), which an agent on plain http (a lab, a proxy) never needs.
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { ClientError } from '../errors.js';

// node:http as its CommonJS object, not an ESM import: on Node 24 the ESM namespace of
// node:http reads every export, and its lazy WebSocket/CloseEvent/MessageEvent getters load
// undici, node:tls and node:http2 — +11.7 MiB RSS at start for nothing the agent uses.
const { request: httpRequest } = process.getBuiltinModule('node:http');
let httpsRequest: typeof httpRequest | undefined;

function requestFunction(url: URL): typeof httpRequest {
  if (url.protocol !== 'https:') return httpRequest;
  httpsRequest ??= process.getBuiltinModule('node:https').request;
  return httpsRequest;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** Enough for server → presigned URL (one hop) with room for a CDN in between. */
export const MAX_REDIRECTS = 5;
/** Request headers that must not follow a redirect to another origin (fetch §4.4 step 13). */
const CREDENTIAL_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie']);

export interface HttpResponse {
  status: number;
  header(name: string): string | undefined;
  body: IncomingMessage;
}

/**
 * GET that follows redirects the way fetch does for a GET: credentials go only to the origin
 * they were made for — a 302 to a presigned S3/CDN URL loses the device JWT (the URL carries
 * its own), and it does not come back on a later hop to the first origin.
 * `what` names the request in messages (no query strings: they may hold credentials).
 */
export async function httpGet(
  url: string,
  headers: Record<string, string>,
  signal: AbortSignal | undefined,
  what: string,
): Promise<HttpResponse> {
  let target = new URL(url);
  let sent = headers;
  for (let hop = 0; ; hop++) {
    const res = await requestOnce(target, { method: 'GET', headers: sent }, signal);
    const status = res.statusCode ?? 0;
    if (!REDIRECT_STATUSES.has(status)) return wrap(res);
    res.destroy();
    const location = res.headers.location;
    if (location === undefined) {
      throw new ClientError(
        'ERR_HTTP_BAD_RESPONSE',
        `${what}: HTTP ${status} redirect without a Location header`,
      );
    }
    if (hop >= MAX_REDIRECTS) {
      throw new ClientError('ERR_HTTP_BAD_RESPONSE', `${what}: more than ${MAX_REDIRECTS} redirects`);
    }
    let next: URL;
    try {
      next = new URL(location, target);
    } catch {
      throw new ClientError('ERR_HTTP_BAD_RESPONSE', `${what}: HTTP ${status} to an invalid Location`);
    }
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      throw new ClientError('ERR_HTTP_BAD_RESPONSE', `${what}: HTTP ${status} to a ${next.protocol} URL`);
    }
    if (next.origin !== target.origin) {
      sent = Object.fromEntries(
        Object.entries(sent).filter(([name]) => !CREDENTIAL_HEADERS.has(name.toLowerCase())),
      );
    }
    target = next;
  }
}

/**
 * fetch over node:http/https for the update-server API (`UpdateServerClient`, `Agent.open`'s
 * `fetch` option): string or absent bodies, `redirect: 'error'` (a redirect is a network error,
 * as with fetch) or `'follow'` for GETs (httpGet's rules). The response has what the API
 * client reads — `status`, `ok`, `headers.get`, `body` (a web ReadableStream) — plus `text()`
 * and `json()`; nothing else of Response.
 */
export const nodeHttpFetch = (async (input: string | URL | Request, init: RequestInit = {}) => {
  const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
  const method = (init.method ?? 'GET').toUpperCase();
  const headers = plainHeaders(init.headers);
  const signal = init.signal ?? undefined;
  const what = `${method} ${url.origin}${url.pathname}`;
  if (init.body !== undefined && init.body !== null && typeof init.body !== 'string') {
    throw new TypeError(`nodeHttpFetch: ${what}: only string bodies are supported`);
  }
  let res: HttpResponse;
  if (method === 'GET' && init.redirect !== 'error' && init.redirect !== 'manual') {
    res = await httpGet(url.href, headers, signal, what);
  } else {
    res = wrap(await requestOnce(url, { method, headers, body: init.body ?? undefined }, signal));
    if (REDIRECT_STATUSES.has(res.status) && init.redirect !== 'manual') {
      res.body.destroy();
      throw new TypeError(`fetch failed: ${what}: redirected (HTTP ${res.status}) with redirect: "error"`);
    }
  }
  const body = Readable.toWeb(res.body) as ReadableStream<Uint8Array>;
  const bytes = async (): Promise<Buffer> => {
    const parts: Uint8Array[] = [];
    for await (const chunk of body) parts.push(chunk);
    return Buffer.concat(parts);
  };
  return {
    status: res.status,
    ok: res.status >= 200 && res.status < 300,
    url: url.href,
    headers: { get: (name: string) => res.header(name.toLowerCase()) ?? null },
    body,
    text: async () => (await bytes()).toString('utf8'),
    json: async () => JSON.parse((await bytes()).toString('utf8')) as unknown,
  } as unknown as Response;
}) as typeof fetch;

function plainHeaders(h: RequestInit['headers']): Record<string, string> {
  if (h === undefined) return {};
  if (Array.isArray(h)) return Object.fromEntries(h);
  // A Headers object, recognised without touching the global `Headers` (that would load undici).
  if (typeof (h as Partial<Headers>).forEach === 'function') {
    const out: Record<string, string> = {};
    (h as Headers).forEach((value, name) => {
      out[name] = value;
    });
    return out;
  }
  return { ...(h as Record<string, string>) };
}

function wrap(res: IncomingMessage): HttpResponse {
  return {
    status: res.statusCode ?? 0,
    header: (name) => {
      const v = res.headers[name];
      return Array.isArray(v) ? v.join(', ') : v;
    },
    body: res,
  };
}

function requestOnce(
  url: URL,
  o: { method: string; headers: Record<string, string>; body?: string | undefined },
  signal: AbortSignal | undefined,
): Promise<IncomingMessage> {
  const request = requestFunction(url);
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: o.method,
      headers:
        o.body === undefined ? o.headers : { ...o.headers, 'content-length': Buffer.byteLength(o.body) },
      ...(signal ? { signal } : {}),
    });
    req.on('response', resolve);
    // Also after the response: errors then end the body stream, which its reader sees.
    req.on('error', reject);
    req.end(o.body);
  });
}
