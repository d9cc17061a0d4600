// Admin authentication: `Authorization: Bearer abk_...` API keys, stored as SHA-256, each with
// one role. `admin` may do everything; the others are listed per route (see ROLE_GROUPS).
import { and, eq, isNull } from 'drizzle-orm';
import type { MiddlewareHandler } from 'hono';
import type { ApiKeyRole, AppDeps, AppEnv, AuthedApiKey } from '../context.js';
import { apiKeys } from '../db/schema.js';
import { ServerError } from '../errors.js';
import { bearerToken, generateSecret, hashSecret } from './secrets.js';

/** Who may call what: admins always; each group names the other roles allowed. */
export const ROLE_GROUPS = {
  read: ['admin', 'publisher', 'operator', 'viewer'],
  publish: ['admin', 'publisher'],
  operate: ['admin', 'operator'],
  admin: ['admin'],
} as const satisfies Record<string, readonly ApiKeyRole[]>;

export async function findApiKey(deps: AppDeps, key: string): Promise<AuthedApiKey | undefined> {
  if (!key.startsWith('abk_') || key.length > 200) return undefined;
  const [row] = await deps.db
    .select({ id: apiKeys.id, name: apiKeys.name, role: apiKeys.role })
    .from(apiKeys)
    .where(and(eq(apiKeys.keyHash, hashSecret(key)), isNull(apiKeys.revokedAt)))
    .limit(1);
  return row === undefined ? undefined : { id: row.id, name: row.name, role: row.role as ApiKeyRole };
}

/**
 * The web console (src/console) calls the admin API in-process (`app.request(path, init, env)`)
 * as the API key its session was made from: that key rides in the request's env under this
 * symbol, which no HTTP request can carry, and goes through the same role check as a bearer key.
 */
export const CONSOLE_CALLER = Symbol('abota.console.caller');
export interface ConsoleCallerEnv {
  [CONSOLE_CALLER]: AuthedApiKey;
}

/** May a key of this role do what the group allows (ROLE_GROUPS)? The one permission check. */
export const roleAllows = (role: ApiKeyRole, allowed: readonly ApiKeyRole[]): boolean =>
  allowed.includes(role);

export function requireRole(deps: AppDeps, allowed: readonly ApiKeyRole[]): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const inProcess = (c.env as Partial<ConsoleCallerEnv> | undefined)?.[CONSOLE_CALLER];
    const token = inProcess === undefined ? bearerToken(c.req.header('authorization')) : undefined;
    if (inProcess === undefined && token === undefined) {
      throw new ServerError(
        'ERR_UNAUTHENTICATED',
        'admin API calls need "Authorization: Bearer abk_..." (an API key)',
      );
    }
    const key = inProcess ?? (token === undefined ? undefined : await findApiKey(deps, token));
    if (key === undefined) throw new ServerError('ERR_UNAUTHENTICATED', 'the API key is unknown or revoked');
    if (!roleAllows(key.role, allowed)) {
      throw new ServerError(
        'ERR_FORBIDDEN',
        `role "${key.role}" may not do this; needs one of: ${allowed.join(', ')}`,
      );
    }
    c.set('apiKey', key);
    c.set('actor', `apikey:${key.id}`);
    await next();
  };
}

/**
 * Makes sure an admin key exists. With `configuredKey` (ABOTA_ADMIN_KEY) that key is registered
 * (idempotently); otherwise, when the database holds no usable key at all, a new one is created
 * and returned so the caller can print it once. Returns undefined when nothing was created.
 */
export async function bootstrapAdminKey(
  deps: Pick<AppDeps, 'db'>,
  configuredKey: string | undefined,
): Promise<string | undefined> {
  if (configuredKey !== undefined) {
    await deps.db
      .insert(apiKeys)
      .values({ keyHash: hashSecret(configuredKey), name: 'bootstrap (ABOTA_ADMIN_KEY)', role: 'admin' })
      .onConflictDoNothing();
    return undefined;
  }
  const existing = await deps.db
    .select({ id: apiKeys.id })
    .from(apiKeys)
    .where(isNull(apiKeys.revokedAt))
    .limit(1);
  if (existing.length > 0) return undefined;
  const key = generateSecret('abk');
  await deps.db
    .insert(apiKeys)
    .values({ keyHash: hashSecret(key), name: 'bootstrap (generated)', role: 'admin' });
  return key;
}
