// Console sessions: an admin API key is exchanged once for a random session id sent as an
// HttpOnly, SameSite=Strict cookie (Secure over https). The database keeps only the SHA-256 of
// the id (console_sessions); a session ends at its expiry, at sign-out (revoked server-side) and
// with its API key. The CSRF token of a session is derived from its id (an HMAC-like hash, never
// stored): a page of another origin can neither read the cookie nor compute the token.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { and, eq, gt, isNull } from 'drizzle-orm';
import type { Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { ApiKeyRole, AppDeps, AuthedApiKey } from '../context.js';
import { apiKeys, consoleSessions } from '../db/schema.js';
import { hashSecret } from '../auth/secrets.js';

export const SESSION_COOKIE = 'abota_console';
/** How long a console session lives (absolute, not sliding): a working day. */
export const SESSION_SECONDS = 8 * 3600;

export interface ConsoleSession {
  id: string;
  key: AuthedApiKey;
  expiresAt: Date;
  /** The per-session CSRF token every state-changing form carries (hidden field `_csrf`). */
  csrf: string;
}

const csrfOf = (token: string): string =>
  createHash('sha256').update(`abota-console-csrf\0${token}`, 'utf8').digest('base64url');

/** https as the browser sees it (directly, or behind a proxy that says so). */
export const isHttps = (c: Context): boolean =>
  new URL(c.req.url).protocol === 'https:' || c.req.header('x-forwarded-proto') === 'https';

export async function createSession(deps: AppDeps, c: Context, key: AuthedApiKey): Promise<ConsoleSession> {
  const token = `acs_${randomBytes(32).toString('base64url')}`;
  const expiresAt = new Date(deps.clock.now().getTime() + SESSION_SECONDS * 1000);
  const [row] = await deps.db
    .insert(consoleSessions)
    .values({ tokenHash: hashSecret(token), apiKeyId: key.id, expiresAt })
    .returning({ id: consoleSessions.id });
  setCookie(c, SESSION_COOKIE, token, {
    path: '/console',
    httpOnly: true,
    sameSite: 'Strict',
    secure: isHttps(c),
    maxAge: SESSION_SECONDS,
    expires: expiresAt,
  });
  return { id: row!.id, key, expiresAt, csrf: csrfOf(token) };
}

/** The request's live session (cookie → unexpired, unrevoked session of an unrevoked key). */
export async function readSession(deps: AppDeps, c: Context): Promise<ConsoleSession | undefined> {
  const token = getCookie(c, SESSION_COOKIE);
  if (token === undefined || !token.startsWith('acs_') || token.length > 100) return undefined;
  const [row] = await deps.db
    .select({
      id: consoleSessions.id,
      expiresAt: consoleSessions.expiresAt,
      keyId: apiKeys.id,
      name: apiKeys.name,
      role: apiKeys.role,
    })
    .from(consoleSessions)
    .innerJoin(apiKeys, eq(apiKeys.id, consoleSessions.apiKeyId))
    .where(
      and(
        eq(consoleSessions.tokenHash, hashSecret(token)),
        isNull(consoleSessions.revokedAt),
        gt(consoleSessions.expiresAt, deps.clock.now()),
        isNull(apiKeys.revokedAt),
      ),
    )
    .limit(1);
  if (row === undefined) return undefined;
  return {
    id: row.id,
    key: { id: row.keyId, name: row.name, role: row.role as ApiKeyRole },
    expiresAt: row.expiresAt,
    csrf: csrfOf(token),
  };
}

/** Sign-out: the session is revoked in the database (a copied cookie is dead too). */
export async function endSession(deps: AppDeps, c: Context, session: ConsoleSession): Promise<void> {
  await deps.db
    .update(consoleSessions)
    .set({ revokedAt: deps.clock.now() })
    .where(eq(consoleSessions.id, session.id));
  deleteCookie(c, SESSION_COOKIE, { path: '/console', secure: isHttps(c) });
}

export function csrfMatches(session: ConsoleSession, sent: unknown): boolean {
  if (typeof sent !== 'string') return false;
  const a = Buffer.from(sent, 'utf8');
  const b = Buffer.from(session.csrf, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * A state-changing request must come from a page of this origin: `Sec-Fetch-Site` (sent by every
 * current browser) must say same-origin and `Origin`, when sent, must be this host. Clients that
 * send neither (curl, scripts) are not browsers riding a cookie; they still need the CSRF token.
 * Returns why the request is refused, or undefined.
 */
export function crossOriginReason(c: Context): string | undefined {
  const site = c.req.header('sec-fetch-site');
  if (site !== undefined && site !== 'same-origin')
    return `the form was sent from another site (Sec-Fetch-Site: ${site})`;
  const origin = c.req.header('origin');
  if (origin !== undefined) {
    let host: string | undefined;
    try {
      host = new URL(origin).host;
    } catch {
      host = undefined;
    }
    if (host === undefined || host !== c.req.header('host'))
      return `the form was sent from another origin (${origin.slice(0, 100)})`;
  }
  return undefined;
}
