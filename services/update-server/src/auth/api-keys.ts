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

export function requireRole(deps: AppDeps, allowed: readonly ApiKeyRole[]): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const token = bearerToken(c.req.header('authorization'));
    if (token === undefined) {
      throw new ServerError(
        'ERR_UNAUTHENTICATED',
        'admin API calls need "Authorization: Bearer abk_..." (an API key)',
      );
    }
    const key = await findApiKey(deps, token);
    if (key === undefined) throw new ServerError('ERR_UNAUTHENTICATED', 'the API key is unknown or revoked');
    if (!allowed.includes(key.role)) {
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
