// The device half of the update server HTTP API (docs/CONTRACTS.md "Update server HTTP API"):
// register, poll, report, and device-authenticated blob URLs. Outbound requests only; every
// response is size-bounded and schema-checked before use.
import { z } from 'zod';
import { ClientError } from '../errors.js';
import { type BackoffOptions, DEFAULT_BACKOFF, withRetry } from './backoff.js';
import { MAX_MANIFEST_JWS_BYTES, readBoundedJson } from './bounded-body.js';
import type { DeviceKey } from './device-auth.js';
import { networkError, redactUrl, statusError } from './download.js';
import { nodeHttpFetch } from './node-http.js';

const digestSchema = z.string().regex(/^sha256:[0-9a-f]{64}$/);

/** At most this many delta offers are considered; a longer list is ignored (full artifacts). */
export const MAX_DELTA_OFFERS = 16;

const pollResponseSchema = z.discriminatedUnion('status', [
  z.object({ status: z.literal('no-update'), pollAfterSeconds: z.number().nonnegative().optional() }),
  z.object({
    status: z.literal('update'),
    rolloutId: z.string().min(1).optional(),
    release: z.object({
      version: z.string().min(1),
      manifestJws: z.string().min(1).max(MAX_MANIFEST_JWS_BYTES),
    }),
    artifacts: z.record(digestSchema, z.string().min(1)),
    // Each entry is checked on its own (parseDeltaOffers): a bad delta never fails the poll.
    deltas: z.unknown().optional(),
    pollAfterSeconds: z.number().nonnegative().optional(),
  }),
]);

/**
 * docs/CONTRACTS.md `DeltaOffer`: a delta the device may apply instead of one image's artifact.
 * Untrusted: only a hint of what to download; every block it produces is verified against the
 * signed verity tree, and any failure falls back to the full artifact.
 */
const deltaOfferSchema = z
  .object({
    image: z.enum(['rootfs', 'boot']),
    digest: digestSchema,
    sizeBytes: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
    url: z.string().min(1).max(8192),
    sourceVersion: z.string().min(1).max(256),
    sourceRootHash: z.string().regex(/^(?:[0-9a-f]{2}){20,64}$/),
  })
  .strip();
export type DeltaOffer = z.infer<typeof deltaOfferSchema>;

type RawPollResponse = z.infer<typeof pollResponseSchema>;
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
    const r = deltaOfferSchema.safeParse(entry);
    if (!r.success) {
      const issue = r.error.issues[0];
      warn(
        `poll: delta offer ${index} ignored (${issue ? `${issue.path.join('.') || '(entry)'}: ${issue.message}` : 'schema'})`,
      );
      return;
    }
    let protocol: string;
    try {
      protocol = new URL(r.data.url, baseUrl).protocol;
    } catch {
      protocol = '';
    }
    if (protocol !== 'http:' && protocol !== 'https:') {
      warn(`poll: delta offer ${index} ignored (url: not an http(s) URL)`);
      return;
    }
    if (out.some((d) => d.image === r.data.image && d.sourceRootHash === r.data.sourceRootHash)) {
      warn(`poll: delta offer ${index} ignored (a second ${r.data.image} delta from the same source)`);
      return;
    }
    out.push(r.data);
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
  | 'rolled-back';

export interface DeviceReport {
  rolloutId?: string;
  version: string;
  state: ReportState;
  errorCode?: string;
  message?: string;
  progress?: number;
}

export interface PollRequest {
  version: string;
  bootedSlot: 'A' | 'B';
  installState?: string;
  hardware?: string;
  product?: string;
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
  /** Problems that do not fail a call (an unusable delta offer). */
  warn?: (message: string) => void;
}

export class UpdateServerClient {
  private deviceIdValue: string | undefined;
  private readonly doFetch: typeof fetch;
  private readonly clock: () => Date;
  private readonly backoff: BackoffOptions;

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
    const r = z.object({ deviceId: z.string().min(1).max(200) }).safeParse(json);
    if (!r.success) throw new ClientError('ERR_HTTP_BAD_RESPONSE', 'register: response has no deviceId');
    this.deviceIdValue = r.data.deviceId;
    return r.data.deviceId;
  }

  async poll(req: PollRequest): Promise<PollResponse> {
    const json = await this.postJson('/v1/device/poll', req, true, [200]);
    const r = pollResponseSchema.safeParse(json);
    if (!r.success) {
      const issue = r.error.issues[0];
      throw new ClientError(
        'ERR_HTTP_BAD_RESPONSE',
        `poll: unexpected response (${issue ? `${issue.path.join('.')}: ${issue.message}` : 'schema'})`,
      );
    }
    if (r.data.status === 'no-update') return r.data;
    const { deltas, ...offer } = r.data;
    return { ...offer, deltas: parseDeltaOffers(deltas, this.o.baseUrl, this.o.warn ?? (() => {})) };
  }

  async report(rep: DeviceReport): Promise<void> {
    await this.postJson('/v1/device/report', rep, true, [200, 202, 204]);
  }

  private async postJson(path: string, body: unknown, auth: boolean, okStatuses: number[]): Promise<unknown> {
    const url = this.resolveUrl(path);
    const what = `POST ${redactUrl(url)}`;
    return withRetry(
      async () => {
        let res: Response;
        try {
          res = await this.doFetch(url, {
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              ...(auth ? { authorization: `Bearer ${await this.jwt()}` } : {}),
            },
            body: JSON.stringify(body),
            redirect: 'error',
            ...(this.o.signal ? { signal: this.o.signal } : {}),
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
          const err = statusError(res.status, what);
          throw new ClientError(err.code, `${err.message}${detail}`);
        }
        if (res.status === 204) return {};
        return readBoundedJson(res, what);
      },
      this.backoff,
      this.o.signal,
    );
  }
}
