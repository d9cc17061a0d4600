// The device half of the update server HTTP API (docs/CONTRACTS.md "Update server HTTP API"):
// register, poll, report, and device-authenticated blob URLs. Outbound requests only; every
// response is size-bounded and schema-checked before use.
import { z } from 'zod';
import { ClientError } from '../errors.js';
import { type BackoffOptions, DEFAULT_BACKOFF, withRetry } from './backoff.js';
import { MAX_MANIFEST_JWS_BYTES, readBoundedJson } from './bounded-body.js';
import type { DeviceKey } from './device-auth.js';
import { networkError, redactUrl, statusError } from './download.js';

const digestSchema = z.string().regex(/^sha256:[0-9a-f]{64}$/);

export const pollResponseSchema = z.discriminatedUnion('status', [
  z.object({ status: z.literal('no-update'), pollAfterSeconds: z.number().nonnegative().optional() }),
  z.object({
    status: z.literal('update'),
    rolloutId: z.string().min(1).optional(),
    release: z.object({
      version: z.string().min(1),
      manifestJws: z.string().min(1).max(MAX_MANIFEST_JWS_BYTES),
    }),
    artifacts: z.record(digestSchema, z.string().min(1)),
    delta: z
      .object({
        digest: digestSchema,
        sizeBytes: z.number().int().nonnegative(),
        url: z.string(),
        sourceRootHash: z.string(),
      })
      .optional(),
    pollAfterSeconds: z.number().nonnegative().optional(),
  }),
]);
export type PollResponse = z.infer<typeof pollResponseSchema>;
export type UpdateOffer = Extract<PollResponse, { status: 'update' }>;

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
}

export class UpdateServerClient {
  private deviceIdValue: string | undefined;
  private readonly doFetch: typeof fetch;
  private readonly clock: () => Date;
  private readonly backoff: BackoffOptions;

  constructor(private readonly o: UpdateServerClientOptions) {
    this.deviceIdValue = o.deviceId;
    this.doFetch = o.fetch ?? fetch;
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
    return r.data;
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
