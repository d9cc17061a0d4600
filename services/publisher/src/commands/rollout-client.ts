// The rollout calls of the admin API (services/update-server README "Rollouts"), on the same
// rules as ../admin-client.ts — its server URL check (https, or http on loopback only), API key
// from the environment, AdminApiError with the server's own code — plus a timeout and a response
// size cap. Rollout calls are not retried: pause/abort must not be replayed blindly, and a status
// view simply asks again.
import {
  AdminApiError,
  API_KEY_ENV,
  MAX_RESPONSE_BYTES,
  parseServerUrl,
  SERVER_ENV,
  type ServerFlags,
} from '../admin-client.js';

const TIMEOUT_MS = 30_000;

export class RolloutApi {
  readonly base: URL;
  readonly #apiKey: string;

  constructor(serverUrl: string, apiKey: string) {
    this.base = parseServerUrl(serverUrl);
    this.#apiKey = apiKey;
  }

  /** From --server / $ABOTA_SERVER and the key in $ABOTA_API_KEY (or --api-key-env), as the other server commands. */
  static fromEnvironment(flags: ServerFlags, env: NodeJS.ProcessEnv = process.env): RolloutApi {
    const server = flags.server ?? env[SERVER_ENV];
    if (server === undefined || server === '')
      throw new AdminApiError('ERR_USAGE', `no update server: pass --server <url> or set ${SERVER_ENV}`);
    const variable = flags.apiKeyEnv ?? API_KEY_ENV;
    const apiKey = env[variable];
    if (apiKey === undefined || apiKey === '')
      throw new AdminApiError(
        'ERR_API_KEY_MISSING',
        `no API key: set ${variable} to an operator or admin API key (abk_...)`,
      );
    if (!apiKey.startsWith('abk_'))
      throw new AdminApiError(
        'ERR_API_KEY_MISSING',
        `$${variable} does not hold an abota API key (expected abk_...)`,
      );
    return new RolloutApi(server, apiKey);
  }

  async request<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const what = `${method} ${path}`;
    const url = new URL(path, this.base);
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.#apiKey}`,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        redirect: 'error',
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (error) {
      const cause = (
        error as { cause?: { code?: unknown; message?: unknown; errors?: { code?: unknown }[] } }
      ).cause;
      const why =
        typeof cause?.code === 'string'
          ? cause.code
          : typeof cause?.errors?.[0]?.code === 'string'
            ? cause.errors[0].code
            : typeof cause?.message === 'string' && cause.message !== ''
              ? cause.message
              : error instanceof Error
                ? error.message
                : String(error);
      throw new AdminApiError('ERR_SERVER_UNREACHABLE', `${what} to ${url.origin}: ${why}`, { cause: error });
    }
    const text = await readCapped(res, what);
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      throw new AdminApiError(
        'ERR_SERVER_RESPONSE_INVALID',
        `${what}: HTTP ${res.status} with a body that is not JSON; is --server an abota update server?`,
        { status: res.status },
      );
    }
    if (!res.ok) {
      const err = (parsed as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
      const code =
        typeof err?.code === 'string' && /^ERR_[A-Z0-9_]{1,64}$/.test(err.code)
          ? err.code
          : 'ERR_SERVER_RESPONSE_INVALID';
      const message = typeof err?.message === 'string' ? err.message.slice(0, 2000) : `HTTP ${res.status}`;
      throw new AdminApiError(code, message, { status: res.status });
    }
    return parsed as T;
  }
}

async function readCapped(res: Response, what: string): Promise<string> {
  if (res.body === null) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += chunk.byteLength;
    if (size > MAX_RESPONSE_BYTES) {
      await res.body.cancel().catch(() => {});
      throw new AdminApiError(
        'ERR_SERVER_RESPONSE_INVALID',
        `${what}: the answer exceeds ${MAX_RESPONSE_BYTES} bytes`,
      );
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// ---- the shapes the CLI reads (services/update-server src/rollout/schemas.ts) ----

export interface StageView {
  percent: number;
  minBakeSeconds?: number;
  minCommitted?: number;
  maxFailurePercent?: number;
  minSample?: number;
  maxConcurrent?: number;
}

export interface RolloutView {
  id: string;
  releaseId: string;
  releaseVersion: string;
  product: string;
  name: string;
  kind: 'normal' | 'rollback';
  selector: Record<string, unknown>;
  state: 'draft' | 'active' | 'paused' | 'completed' | 'aborted';
  stateReason: string | null;
  allowDowngrade: boolean;
  stages: StageView[];
  currentStage: number;
  maintenanceWindow: { timezone: string; start: string; end: string; days?: number[] } | null;
  startedAt: string | null;
  stageStartedAt: string;
  createdAt: string;
  updatedAt: string;
}

export type Counts = Partial<Record<string, number>>;

export interface StageStatusView {
  stage: number;
  percent: number;
  minBakeSeconds: number;
  phase: 'done' | 'current' | 'pending';
  targeted: number;
  counts: Counts;
  committed: number;
  failures: number;
  inFlight: number;
  notOffered: number;
  failurePercent: number;
  maxFailurePercent: number;
}

export interface RolloutStatusDocument {
  rollout: RolloutView;
  status: {
    state: RolloutView['state'];
    stateReason: string | null;
    currentStage: number;
    stageCount: number;
    timeInStageSeconds: number | null;
    overall: {
      targeted: number;
      counts: Counts;
      committed: number;
      failures: number;
      inFlight: number;
      notOffered: number;
      failurePercent: number;
    };
    stages: StageStatusView[];
    next: { action: string; reason: string; notBefore: string | null };
  };
  at: string;
}

export interface ReleaseView {
  id: string;
  product: string;
  version: string;
}
