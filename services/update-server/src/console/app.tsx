// The web console at /console: server-rendered pages (hono/jsx) over the server's own database
// and admin API. This router owns what every page shares — sign-in/out, the session check, the
// CSRF and same-origin checks of every POST, security headers, static files, error pages — and
// mounts the page modules listed in pages.ts. Actions call the admin API in-process as the
// session's key (`deps.api`), so the API's role checks decide what the console may do.
import { Hono } from 'hono';
import type { Child } from 'hono/jsx';
import type { Context } from 'hono';
import { CONSOLE_CALLER, findApiKey } from '../auth/api-keys.js';
import type { AppDeps } from '../context.js';
import { peerAddress, sourceAddress } from '../rate-limit.js';
import { audit } from '../routes/admin/common.js';
import { serveAsset } from './assets.js';
import { Document, renderPage } from './layout.js';
import { CONSOLE_PAGES } from './pages.js';
import {
  type ConsoleSession,
  createSession,
  crossOriginReason,
  csrfMatches,
  endSession,
  readSession,
} from './session.js';
import { signInRefusalMessage, takeSignInAttempt } from './sign-in-limit.js';
import type { ApiCaller, ApiResult, ConsoleApp, ConsoleEnv, ConsoleDeps, NavEntry } from './types.js';

/** How the console reaches the admin API: the whole app's `request` (app.ts passes it). */
export type InProcessRequest = (
  path: string,
  init: RequestInit,
  env: Record<PropertyKey, unknown>,
) => Response | Promise<Response>;

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
};

/** Only console paths are followed after sign-in (no open redirect). */
const safeNext = (next: unknown): string =>
  typeof next === 'string' && /^\/console(\/[^/\\]|$)/.test(next) && !next.includes('//')
    ? next
    : '/console/fleet';

export function consoleRoutes(deps: AppDeps, request: InProcessRequest): Hono {
  const api: ApiCaller = async <T,>(
    session: ConsoleSession,
    method: string,
    path: string,
    body?: unknown,
  ): Promise<ApiResult<T>> => {
    const res = await request(
      path,
      {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      },
      { [CONSOLE_CALLER]: session.key },
    );
    const text = await res.text();
    const parsed = text === '' ? undefined : (JSON.parse(text) as unknown);
    const error = (parsed as { error?: { code: string; message: string } } | undefined)?.error;
    return {
      ok: res.ok,
      status: res.status,
      body: parsed as T,
      ...(res.ok || error === undefined ? {} : { error }),
    };
  };
  const cdeps: ConsoleDeps = { ...deps, api };
  const nav: NavEntry[] = CONSOLE_PAGES.flatMap((p) => (p.nav === undefined ? [] : [p.nav])).sort(
    (a, b) => a.order - b.order,
  );

  const app: ConsoleApp = new Hono<ConsoleEnv>();

  app.use('/console/*', async (c, next) => {
    await next();
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.res.headers.set(k, v);
    if (!c.req.path.startsWith('/console/static/')) c.res.headers.set('cache-control', 'no-store');
  });
  app.use('/console', async (c, next) => {
    await next();
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.res.headers.set(k, v);
  });

  app.get('/console/static/:name', (c) => serveAsset(c, c.req.param('name')));
  app.get('/console', (c) => c.redirect('/console/fleet', 303));

  app.get('/console/sign-in', async (c) => {
    if ((await readSession(deps, c)) !== undefined) return c.redirect(safeNext(c.req.query('next')), 303);
    return signInPage(c, { next: c.req.query('next') });
  });

  app.post('/console/sign-in', async (c) => {
    const refused = crossOriginReason(c);
    if (refused !== undefined) return refusal(c, 403, 'ERR_FORBIDDEN', refused);
    const form = await c.req.parseBody();
    const next = typeof form['next'] === 'string' ? form['next'] : undefined;
    // Counted before the key is looked up; a refused attempt is not audited (the limit is what
    // keeps a flood out of the audit log), only counted in abota_rate_limited_total.
    const limited = takeSignInAttempt(deps.limits, sourceAddress(c));
    if (limited !== undefined) {
      deps.metrics.rateLimited.inc({ limit: limited.limit });
      c.header('retry-after', String(limited.retryAfterSeconds));
      return signInPage(c, { next, status: 429, error: signInRefusalMessage(limited) });
    }
    const given = typeof form['key'] === 'string' ? form['key'].trim() : '';
    const key = given === '' ? undefined : await findApiKey(deps, given);
    if (key === undefined) {
      // Audited and logged with the address, never with what was typed.
      const address = peerAddress(c) ?? 'in-process';
      const reason = given === '' ? 'no key' : 'unknown or revoked key';
      await audit(deps.db, `address:${address}`, 'console.sign-in-failed', 'console', { reason });
      deps.logger.warn({ address, reason }, 'console sign-in refused');
      return signInPage(c, {
        next,
        status: 401,
        error:
          given === ''
            ? 'Enter an admin API key (abk_...).'
            : 'That API key is unknown or revoked. Check the key (abk_...) or ask an admin for a new one.',
      });
    }
    await createSession(deps, c, key);
    await audit(deps.db, `apikey:${key.id}`, 'console.sign-in', `api-key:${key.id}`, {
      role: key.role,
    });
    return c.redirect(safeNext(next), 303);
  });

  // Everything else needs a live session; every POST also a same-origin page and the CSRF token.
  app.use('/console/*', async (c, next) => {
    const session = await readSession(deps, c);
    if (session === undefined) {
      if (c.req.method === 'GET' || c.req.method === 'HEAD') {
        const back = c.req.path + (new URL(c.req.url).search || '');
        return c.redirect(`/console/sign-in?next=${encodeURIComponent(back)}`, 303);
      }
      return refusal(c, 401, 'ERR_UNAUTHENTICATED', 'Your console session has ended. Sign in again.');
    }
    c.set('session', session);
    c.set('nav', nav);
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD') {
      const refused = crossOriginReason(c);
      if (refused !== undefined) return refusal(c, 403, 'ERR_FORBIDDEN', refused);
      const form = await c.req.parseBody();
      if (!csrfMatches(session, form['_csrf'])) {
        return refusal(
          c,
          403,
          'ERR_FORBIDDEN',
          'The form carried no valid CSRF token (reload the page and try again).',
        );
      }
    }
    await next();
  });

  app.post('/console/sign-out', async (c) => {
    const session = c.get('session');
    await endSession(deps, c, session);
    await audit(deps.db, `apikey:${session.key.id}`, 'console.sign-out', `api-key:${session.key.id}`);
    return c.redirect('/console/sign-in', 303);
  });

  for (const page of CONSOLE_PAGES) page.register(app, cdeps);

  app.all('/console/*', (c) =>
    renderPage(
      c,
      { title: 'Not found', status: 404 },
      <p>
        No console page at <code>{c.req.path}</code>. <a href="/console/fleet">Go to the fleet</a>.
      </p>,
    ),
  );
  return app as unknown as Hono;
}

/** A refusal before any session page can be drawn (no session, cross-origin, bad token). */
function refusal(c: Context, status: 401 | 403, code: string, message: string): Response | Promise<Response> {
  return c.html(
    <Document title="Refused" scripts={[]} styles={[]}>
      <main id="main">
        <h1>Refused</h1>
        <p role="alert" class="error">
          <strong>{code}</strong>: {message}
        </p>
        <p>
          <a href="/console/sign-in">Sign in</a>
        </p>
      </main>
    </Document>,
    status,
  );
}

function signInPage(
  c: Context,
  o: { next?: string | undefined; error?: string; status?: 200 | 401 | 429 },
): Response | Promise<Response> {
  const body: Child = (
    <Document title="Sign in" scripts={['console.js']} styles={[]}>
      <main id="main" class="sign-in">
        <h1>abota console</h1>
        <form method="post" action="/console/sign-in">
          {o.error === undefined ? null : (
            <p role="alert" class="error" id="sign-in-error">
              {o.error}
            </p>
          )}
          <label for="key">Admin API key</label>
          <input
            id="key"
            name="key"
            type="password"
            autocomplete="off"
            required
            placeholder="abk_..."
            aria-describedby={o.error === undefined ? 'key-help' : 'sign-in-error key-help'}
            autofocus
          />
          <p id="key-help" class="help">
            The key is exchanged for a session cookie (8 hours) and not kept in the browser.
          </p>
          <input type="hidden" name="next" value={safeNext(o.next)} />
          <button type="submit">Sign in</button>
        </form>
      </main>
    </Document>
  );
  return c.html(body, o.status ?? 200);
}
