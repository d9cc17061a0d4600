// The typed admin client: hono/client (`hc`) typed by the server's own routes (a type-only import
// of @abota/update-server/api), over the transport that adds the key, retries, deadlines, size caps
// and upload bodies. Answers are checked at this trust boundary with the zod schemas the server
// validates with (`readJson`; their home is @abota/api, so the CLI does not install the server),
// so no request or response shape is written twice: a route change that breaks a caller fails
// `npm run typecheck`.
import type { ServerRoutes } from '@abota/update-server/api';
import { hc } from 'hono/client';
import { AdminApiError } from './error.js';
import { parseServerUrl } from './server-url.js';
import {
  type CallPolicy,
  DEFAULT_RETRY,
  printRetry,
  type RetryNotice,
  type RetryPolicy,
  Transport,
} from './transport.js';

export type ServerClient = ReturnType<typeof hc<ServerRoutes>>;

export interface AdminConnectionOptions {
  /** Base URL, e.g. https://updates.example.com (a path prefix is kept). */
  serverUrl: string;
  apiKey: string;
  retry?: RetryPolicy;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /** Told about every retry before its delay (default: one line on stderr). */
  onRetry?: (notice: RetryNotice) => void;
}

export class AdminConnection {
  readonly serverUrl: URL;
  private readonly transport: Transport;

  constructor(options: AdminConnectionOptions) {
    this.serverUrl = parseServerUrl(options.serverUrl);
    if (!options.apiKey.startsWith('abk_')) {
      throw new AdminApiError('ERR_API_KEY_MISSING', 'the API key must be an abota admin key (abk_...)');
    }
    this.transport = new Transport({
      serverUrl: this.serverUrl,
      apiKey: options.apiKey,
      retry: options.retry ?? DEFAULT_RETRY,
      fetch: options.fetch ?? ((input, init) => fetch(input, init)),
      onRetry: options.onRetry ?? printRetry,
    });
  }

  /** Retries done so far (for reports). */
  get retriesDone(): number {
    return this.transport.retriesDone;
  }

  /** The typed client whose calls are made under `policy` (retries, deadline, upload body). */
  api(policy: CallPolicy = {}): ServerClient {
    return hc<ServerRoutes>(this.serverUrl.href, {
      fetch: (input: Parameters<typeof fetch>[0], init?: RequestInit) =>
        this.transport.send(input instanceof Request ? input.url : String(input), init ?? {}, policy),
    });
  }
}

/** The server's API schemas (@abota/api, zod): loaded on the first call that needs them. */
export type ApiSchemas = typeof import('@abota/api');
let schemas: Promise<ApiSchemas> | undefined;
/**
 * Loaded lazily: zod and the schemas cost ~20 MB and a few hundred ms at start-up, which
 * `abota --help` and the commands that never talk to a server should not pay.
 */
export const apiSchemas = (): Promise<ApiSchemas> => {
  schemas ??= import('@abota/api');
  return schemas;
};

/** What readJson needs of a zod schema (the server's, from @abota/api). */
export interface ResponseSchema<T> {
  safeParse(
    value: unknown,
  ):
    | { success: true; data: T }
    | { success: false; error: { issues: readonly { path: readonly PropertyKey[]; message: string }[] } };
}

/** The answer's JSON checked against the server's schema for it, `pick(schemas)` (unknown until then). */
export async function readJson<T>(
  res: { url: string; status: number; text(): Promise<string> },
  pick: (schemas: ApiSchemas) => ResponseSchema<T>,
): Promise<T> {
  const schema = pick(await apiSchemas());
  const what = `the answer of ${new URL(res.url || 'http://server/').pathname}`;
  const text = await res.text();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new AdminApiError('ERR_SERVER_RESPONSE_INVALID', `${what} is not JSON`, { status: res.status });
  }
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const where = issue === undefined || issue.path.length === 0 ? '(body)' : issue.path.map(String).join('.');
  throw new AdminApiError(
    'ERR_SERVER_RESPONSE_INVALID',
    `${what} does not have the documented shape (${where}: ${issue?.message ?? 'invalid'})`,
    { status: res.status },
  );
}

// ---- the CLI's way to connect: server from --server or $ABOTA_SERVER, key from the environment ----

/** Environment variable holding the admin API key unless --api-key-env names another. */
export const API_KEY_ENV = 'ABOTA_API_KEY';
/** Environment variable naming the server when --server is not given. */
export const SERVER_ENV = 'ABOTA_SERVER';

/** The flags every server-talking command shares. */
export interface ServerFlags {
  server?: string;
  apiKeyEnv?: string;
  json?: boolean;
}

/**
 * The API key is read from the environment only — never a flag value, which would land in shell
 * history and in `ps` output.
 */
export function connectFromEnvironment(
  flags: ServerFlags,
  env: NodeJS.ProcessEnv = process.env,
): AdminConnection {
  const server = flags.server ?? env[SERVER_ENV];
  if (server === undefined || server === '') {
    throw new AdminApiError('ERR_USAGE', `no update server: pass --server <url> or set ${SERVER_ENV}`);
  }
  const variable = flags.apiKeyEnv ?? API_KEY_ENV;
  const apiKey = env[variable];
  if (apiKey === undefined || apiKey === '') {
    throw new AdminApiError(
      'ERR_API_KEY_MISSING',
      `no API key: set ${variable} to an admin API key (abk_...; created with \`abota apikey create\` or printed once by the server's first start)`,
    );
  }
  if (!apiKey.startsWith('abk_')) {
    throw new AdminApiError(
      'ERR_API_KEY_MISSING',
      `$${variable} does not hold an abota API key (expected abk_...)`,
    );
  }
  return new AdminConnection({ serverUrl: server, apiKey });
}
