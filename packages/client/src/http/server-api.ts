// The device half of the update server HTTP API (docs/CONTRACTS.md "Update server HTTP API"):
// register, poll, report, and device-authenticated blob URLs. Outbound requests only; every
// response is size-bounded and schema-checked before use.
import * as v from 'valibot';
import { ClientError } from '../errors.js';
import { type BackoffOptions, DEFAULT_BACKOFF, withRetry } from './backoff.js';
import { MAX_MANIFEST_JWS_BYTES, readBoundedJson } from './bounded-body.js';
import type { DeviceKey } from './device-auth.js';
import { networkError, redactUrl, statusError } from './download.js';
import { describeIssue } from '../schema-issues.js';
import { nodeHttpFetch } from './node-http.js';

const digestSchema = v.pipe(
  v.string(),
  v.regex(/^sha256:[0-9a-f]{64}$/, 'expected sha256:<64 lower-case hex>'),
);
const nonEmpty = v.pipe(v.string(), v.minLength(1));
const pollAfterSecondsSchema = v.optional(v.pipe(v.number(), v.minValue(0)));

/** At most this many delta offers are considered; a longer list is ignored (full artifacts). */
export const MAX_DELTA_OFFERS = 16;

/** At most this many roots in one offer (the server sends at most 16). */
export const MAX_ROOTS_PER_OFFER = 64;

const pollResponseSchema = v.variant('status', [
  v.object({ status: v.literal('no-update'), pollAfterSeconds: pollAfterSecondsSchema }),
  v.object({
    status: v.literal('update'),
    rolloutId: v.optional(nonEmpty),
    release: v.object({
      version: nonEmpty,
      manifestJws: v.pipe(v.string(), v.minLength(1), v.maxLength(MAX_MANIFEST_JWS_BYTES)),
    }),
    artifacts: v.record(digestSchema, nonEmpty),
    // The product's roots after the device's (PollRequest.trustRootVersion), oldest first; the
    // agent walks them before verifying the manifest (TUF §5.3), so they need no trust here.
    roots: v.optional(
      v.pipe(
        v.array(v.pipe(v.string(), v.minLength(1), v.maxLength(MAX_MANIFEST_JWS_BYTES))),
        v.maxLength(MAX_ROOTS_PER_OFFER),
      ),
    ),
    // Each entry is checked on its own (parseDeltaOffers): a bad delta never fails the poll.
    deltas: v.optional(v.unknown()),
    // The rollout's permission to install an older version; never below the securityVersion
    // floor, which the device checks itself (docs/trust-model.md).
    allowDowngrade: v.optional(v.boolean()),
    // The stage's health bake window after commit (agent-bake.ts); absent: none.
    health: v.optional(
      v.object({ bakeSeconds: v.pipe(v.number(), v.safeInteger(), v.minValue(1), v.maxValue(30 * 86_400)) }),
    ),
    pollAfterSeconds: pollAfterSecondsSchema,
  }),
]);

/**
 * docs/CONTRACTS.md `DeltaOffer`: a delta the device may apply instead of one image's artifact.
 * Untrusted: only a hint of what to download; every block it produces is verified against the
 * signed verity tree, and any failure falls back to the full artifact.
 */
const deltaOfferSchema = v.object({
  image: v.picklist(['rootfs', 'boot']),
  digest: digestSchema,
  sizeBytes: v.pipe(v.number(), v.safeInteger(), v.minValue(1)),
  url: v.pipe(v.string(), v.minLength(1), v.maxLength(8192)),
  sourceVersion: v.pipe(v.string(), v.minLength(1), v.maxLength(256)),
  sourceRootHash: v.pipe(v.string(), v.regex(/^(?:[0-9a-f]{2}){20,64}$/, 'expected 40..128 lower-case hex')),
});
export type DeltaOffer = v.InferOutput<typeof deltaOfferSchema>;

const registerResponseSchema = v.object({ deviceId: v.pipe(v.string(), v.minLength(1), v.maxLength(200)) });

type RawPollResponse = v.InferOutput<typeof pollResponseSchema>;
export type UpdateOffer = Omit<Extract<RawPollResponse, { status: 'update' }>, 'deltas'> & {
  /** The usable entries of the response's `deltas` (empty when it had none). */
  deltas: DeltaOffer[];
};
export type PollResponse = Extract<RawPollResponse, { status: 'no-update' }> | UpdateOffer;

/**
 * The valid entries of a poll response's `deltas`. An entry with an unknown image, a malformed
 * digest, root hash or size, or a URL that is not http(s) is dropped with a warning; so is a list
 * longer than MAX_DELTA_OFFERS, or a `deltas` that is not a list. The install then uses the
 * full artifact for that image.
 */
export function parseDeltaOffers(
  raw: unknown,
  baseUrl: string,
  warn: (message: string) => void,
): DeltaOffer[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    warn('poll: `deltas` is not a list; no delta is used (full artifacts)');
    return [];
  }
  if (raw.length > MAX_DELTA_OFFERS) {
    warn(`poll: ${raw.length} delta offers, more than ${MAX_DELTA_OFFERS}; none is used (full artifacts)`);
    return [];
  }
  const out: DeltaOffer[] = [];
  raw.forEach((entry, index) => {
    const r = v.safeParse(deltaOfferSchema, entry);
    if (!r.success) {
      warn(`poll: delta offer ${index} ignored (${describeIssue(r.issues[0], '(entry)')})`);
      return;
    }
    let protocol: string;
    try {
      protocol = new URL(r.output.url, baseUrl).protocol;
    } catch {
      protocol = '';
    }
    if (protocol !== 'http:' && protocol !== 'https:') {
      warn(`poll: delta offer ${index} ignored (url: not an http(s) URL)`);
      return;
    }
    if (out.some((d) => d.image === r.output.image && d.sourceRootHash === r.output.sourceRootHash)) {
      warn(`poll: delta offer ${index} ignored (a second ${r.output.image} delta from the same source)`);
      return;
    }
    out.push(r.output);
  });
  return out;
}

export type ReportState =
  | 'downloading'
  | 'installing'
  | 'installed'
  | 'rebooting'
  | 'committed'
  | 'failed'
  | 'rolled-back'
  /** A fault of the device itself (config, boot control, slot devices), not of the release. */
  | 'device-error'
  /** During the bake window after commit (agent-bake.ts): health checks pass / fail (or a crash loop). */
  | 'healthy'
  | 'unhealthy';

export interface DeviceReport {
  rolloutId?: string;
  version: string;
  state: ReportState;
  /** The slot the device runs now; with `committed`, the slot it committed. */
  bootedSlot?: 'A' | 'B';
  errorCode?: string;
  message?: string;
  progress?: number;
  /** With `healthy`: seconds the device has stayed healthy since it committed. */
  healthySeconds?: number;
}

export interface PollRequest {
  version: string;
  bootedSlot: 'A' | 'B';
  installState?: string;
  hardware?: string;
  product?: string;
  /** The version of the device's current trust root: an offer then carries the later roots. */
  trustRootVersion?: number;
}

export interface UpdateServerClientOptions {
  baseUrl: string;
  audience: string;
  tokenLifetimeSeconds: number;
  key: DeviceKey;
  deviceId?: string;
  fetch?: typeof fetch;
  clock?: () => Date;
  backoff?: BackoffOptions;
  signal?: AbortSignal;
  /**
   * Deadline of each request attempt, from sending it to the last byte of the answer
   * (ERR_HTTP_TIMEOUT, retried with backoff). Default DEFAULT_REQUEST_TIMEOUT_MS.
   */
  requestTimeoutMs?: number;
  /** Problems that do not fail a call (an unusable delta offer). */
  warn?: (message: string) => void;
}

/** A poll, report or registration that has not fully answered after this long is abandoned. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

export class UpdateServerClient {
  private deviceIdValue: string | undefined;
  private readonly doFetch: typeof fetch;
  private readonly clock: () => Date;
  private readonly backoff: BackoffOptions;
  /**
   * Conditional polls: the ETag of the last answer, kept only while that answer was no-update.
   * A 304 then means "no update" again; after an offer the next poll is unconditional, so a
   * 304 never has to stand for an offer this client may not hold any more.
   */
  private noUpdateEtag: string | undefined;
  private noUpdatePollAfter: number | undefined;

  constructor(private readonly o: UpdateServerClientOptions) {
    this.deviceIdValue = o.deviceId;
    this.doFetch = o.fetch ?? nodeHttpFetch;
    this.clock = o.clock ?? (() => new Date());
    this.backoff = o.backoff ?? DEFAULT_BACKOFF;
  }

  get deviceId(): string | undefined {
    return this.deviceIdValue;
  }

  /** Absolute URL for a server-relative path (`/v1/device/blobs/...`) or an absolute one. */
  resolveUrl(url: string): string {
    return new URL(url, this.o.baseUrl).toString();
  }

  /** Authorization for a URL: only ever sent to the update server's own origin, never to a CDN. */
  async headersFor(url: string): Promise<Record<string, string>> {
    if (new URL(url).origin !== new URL(this.o.baseUrl).origin) return {};
    return { authorization: `Bearer ${await this.jwt()}` };
  }

  private async jwt(): Promise<string> {
    if (this.deviceIdValue === undefined) {
      throw new ClientError(
        'ERR_NOT_REGISTERED',
        'this device has no device id yet: run `abota-agent register --token T`',
      );
    }
    return this.o.key.signJwt({
      deviceId: this.deviceIdValue,
      audience: this.o.audience,
      lifetimeSeconds: this.o.tokenLifetimeSeconds,
      now: this.clock(),
    });
  }

  async register(o: {
    token: string;
    product: string;
    hardware: string;
    attributes?: Record<string, string>;
  }): Promise<string> {
    const body = {
      token: o.token,
      publicKeyJwk: this.o.key.publicJwk,
      product: o.product,
      hardware: o.hardware,
      ...(o.attributes ? { attributes: o.attributes } : {}),
    };
    const json = await this.postJson('/v1/device/register', body, false, [200, 201]);
    const r = v.safeParse(registerResponseSchema, json);
    if (!r.success) throw new ClientError('ERR_HTTP_BAD_RESPONSE', 'register: response has no deviceId');
    this.deviceIdValue = r.output.deviceId;
    return r.output.deviceId;
  }

  async poll(req: PollRequest): Promise<PollResponse> {
    const sent = this.noUpdateEtag;
    const res = await this.post(
      '/v1/device/poll',
      req,
      true,
      sent !== undefined ? [200, 304] : [200],
      sent !== undefined ? { 'if-none-match': sent } : {},
    );
    if (res.status === 304) {
      // Unchanged since the last answer, which was no-update. The server's fresh (jittered)
      // delay when it sends one, else the last answer's.
      const after = pollAfterHeader(res.headers.get(POLL_AFTER_HEADER)) ?? this.noUpdatePollAfter;
      return { status: 'no-update', ...(after !== undefined ? { pollAfterSeconds: after } : {}) };
    }
    const r = v.safeParse(pollResponseSchema, res.json);
    if (!r.success) {
      throw new ClientError(
        'ERR_HTTP_BAD_RESPONSE',
        `poll: unexpected response (${describeIssue(r.issues[0])})`,
      );
    }
    if (r.output.status === 'no-update') {
      this.noUpdateEtag = validEtag(res.headers.get('etag'));
      this.noUpdatePollAfter = r.output.pollAfterSeconds;
      return r.output;
    }
    this.noUpdateEtag = undefined;
    this.noUpdatePollAfter = undefined;
    const { deltas, ...offer } = r.output;
    return { ...offer, deltas: parseDeltaOffers(deltas, this.o.baseUrl, this.o.warn ?? (() => {})) };
  }

  async report(rep: DeviceReport): Promise<void> {
    await this.postJson('/v1/device/report', rep, true, [200, 202, 204]);
  }

  private async postJson(path: string, body: unknown, auth: boolean, okStatuses: number[]): Promise<unknown> {
    return (await this.post(path, body, auth, okStatuses, {})).json;
  }

  private async post(
    path: string,
    body: unknown,
    auth: boolean,
    okStatuses: number[],
    headers: Record<string, string>,
  ): Promise<Answer> {
    const url = this.resolveUrl(path);
    const what = `POST ${redactUrl(url)}`;
    const timeoutMs = this.o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    return withRetry(
      () =>
        withDeadline(timeoutMs, what, this.o.signal, (signal) =>
          this.attempt(url, what, body, auth, okStatuses, headers, signal),
        ),
      this.backoff,
      this.o.signal,
    );
  }

  private async attempt(
    url: string,
    what: string,
    body: unknown,
    auth: boolean,
    okStatuses: number[],
    extraHeaders: Record<string, string>,
    signal: AbortSignal,
  ): Promise<Answer> {
    let res: Response;
    try {
      res = await this.doFetch(url, {
        method: 'POST',
        headers: {
          ...extraHeaders,
          'content-type': 'application/json',
          ...(auth ? { authorization: `Bearer ${await this.jwt()}` } : {}),
        },
        body: JSON.stringify(body),
        redirect: 'error',
        signal,
      });
    } catch (e) {
      throw networkError(e, what);
    }
    if (!okStatuses.includes(res.status)) {
      let detail = '';
      try {
        const j = (await readBoundedJson(res, what)) as { error?: { code?: unknown; message?: unknown } };
        if (j?.error) detail = `: ${String(j.error.code)} ${String(j.error.message)}`;
      } catch {
        // the status alone is the message
      }
      throw statusError(res.status, what, res.headers.get('retry-after'), detail);
    }
    if (res.status === 204 || res.status === 304) {
      await res.body?.cancel().catch(() => {});
      return { status: res.status, headers: res.headers, json: {} };
    }
    return { status: res.status, headers: res.headers, json: await readBoundedJson(res, what) };
  }
}

interface Answer {
  status: number;
  headers: Headers;
  json: unknown;
}

/** The header a 304 poll answer carries the next poll delay in (the body it replaces had it). */
export const POLL_AFTER_HEADER = 'abota-poll-after-seconds';

/** An entity tag worth sending back: quoted, bounded, printable (RFC 9110 §8.8.3). */
function validEtag(raw: string | null): string | undefined {
  return raw !== null && /^(W\/)?"[\x21\x23-\x7e]{1,128}"$/.test(raw) ? raw : undefined;
}

function pollAfterHeader(raw: string | null): number | undefined {
  if (raw === null || !/^\d{1,9}$/.test(raw)) return undefined;
  return Number(raw);
}

/**
 * Run one request attempt under a deadline: its signal aborts the transfer, and the attempt
 * fails with ERR_HTTP_TIMEOUT when the deadline passes first, whatever the transport does with
 * the signal (an answer that never comes, or a body that trickles).
 */
export async function withDeadline<T>(
  timeoutMs: number,
  what: string,
  outer: AbortSignal | undefined,
  run: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const deadline = new AbortController();
  const timeout = new ClientError('ERR_HTTP_TIMEOUT', `${what}: no complete answer within ${timeoutMs} ms`);
  const timer = setTimeout(() => deadline.abort(timeout), timeoutMs);
  const signal = outer === undefined ? deadline.signal : AbortSignal.any([outer, deadline.signal]);
  const expired = new Promise<never>((_, reject) => {
    deadline.signal.addEventListener('abort', () => reject(timeout), { once: true });
  });
  try {
    return await Promise.race([
      run(signal).catch((e: unknown) => {
        throw deadline.signal.aborted && outer?.aborted !== true ? timeout : e;
      }),
      expired,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
