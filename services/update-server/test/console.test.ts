// The console's HTTP contract without a browser (PGlite, in-process app): the session cookie and
// its server-side life (hashed id, expiry, sign-out, revoked key), the sign-in rate limits, CSRF
// and same-origin refusals, the admin-only credential pages, the static assets' caching and the
// JavaScript budget. The browser tests are test/console/.
import { createHash } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shippedBytes } from '../src/console/assets.js';
import { pageScripts } from '../src/console/layout.js';
import { SESSION_SECONDS } from '../src/console/session.js';
import { DEFAULT_APP_CONFIG } from '../src/config.js';
import { auditLog, consoleSessions, devices, provisioningTokens } from '../src/db/schema.js';
import {
  createHarness,
  type Harness,
  openTestBlobStore,
  openTestDatabase,
  type TestBlobStore,
  type TestDatabase,
} from './harness.js';

let db: TestDatabase;
let blobs: TestBlobStore;
let h: Harness;

beforeAll(async () => {
  db = await openTestDatabase('pglite');
  blobs = await openTestBlobStore('fs');
  h = await createHarness(db.database, blobs.blobs);
});
afterAll(async () => {
  await db?.dispose();
  await blobs?.dispose();
});

const form = (fields: Record<string, string>) => new URLSearchParams(fields);

async function signIn(key: string, headers: Record<string, string> = {}) {
  const res = await h.app.request('/console/sign-in', { method: 'POST', body: form({ key }), headers });
  const setCookie = res.headers.get('set-cookie') ?? '';
  return { res, setCookie, cookie: setCookie.split(';')[0] ?? '' };
}

async function csrfOf(cookie: string): Promise<string> {
  const html = await (await h.app.request('/console/fleet', { headers: { cookie } })).text();
  const m = /name="_csrf" value="([^"]+)"/.exec(html);
  if (m === null) throw new Error('no CSRF field on the fleet page');
  return m[1]!;
}

async function newKey(role: string): Promise<{ id: string; key: string }> {
  const res = await h.request('/v1/admin/api-keys', {
    method: 'POST',
    key: h.adminKey,
    json: { name: role, role },
  });
  return (await res.json()) as { id: string; key: string };
}

describe('console sessions', () => {
  it('an admin key becomes an HttpOnly, SameSite=Strict cookie; only its SHA-256 is stored', async () => {
    const { res, setCookie, cookie } = await signIn(h.adminKey);
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/console/fleet');
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Strict/);
    expect(setCookie).toMatch(/Path=\/console/);
    expect(setCookie).toContain(`Max-Age=${SESSION_SECONDS}`);
    expect(setCookie).not.toMatch(/Secure/);
    const token = cookie.split('=')[1]!;
    const rows = await db.database.db.select().from(consoleSessions);
    expect(rows.map((r) => r.tokenHash)).toContain(createHash('sha256').update(token).digest('hex'));
    expect(JSON.stringify(rows)).not.toContain(token);
    expect((await h.app.request('/console/fleet', { headers: { cookie } })).status).toBe(200);
  });

  it('the cookie is Secure over https (behind a proxy that says so)', async () => {
    const { setCookie } = await signIn(h.adminKey, { 'x-forwarded-proto': 'https' });
    expect(setCookie).toMatch(/; Secure/);
  });

  it('a wrong or empty key is refused with 401 and a message saying what to do', async () => {
    const wrong = await signIn('abk_nope');
    expect(wrong.res.status).toBe(401);
    expect(wrong.setCookie).toBe('');
    expect(await wrong.res.text()).toContain('That API key is unknown or revoked');
    const empty = await signIn('');
    expect(empty.res.status).toBe(401);
    expect(await empty.res.text()).toContain('Enter an admin API key');
  });

  it('sessions expire: after the session time the cookie leads back to sign-in', async () => {
    const { cookie } = await signIn(h.adminKey);
    h.clock.advanceSeconds(SESSION_SECONDS + 1);
    const res = await h.app.request('/console/fleet', { headers: { cookie } });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/console/sign-in?next=%2Fconsole%2Ffleet');
  });

  it('revoking the API key ends its console sessions at once', async () => {
    const op = await newKey('operator');
    const { cookie } = await signIn(op.key);
    expect((await h.app.request('/console/fleet', { headers: { cookie } })).status).toBe(200);
    await h.request(`/v1/admin/api-keys/${op.id}/revoke`, { method: 'POST', key: h.adminKey });
    expect((await h.app.request('/console/fleet', { headers: { cookie } })).status).toBe(303);
  });

  it('sign-in follows only console paths (no open redirect)', async () => {
    for (const next of [
      '//evil.example/',
      'https://evil.example/',
      '/console//evil.example',
      '/v1/admin/devices',
    ]) {
      const res = await h.app.request('/console/sign-in', {
        method: 'POST',
        body: form({ key: h.adminKey, next }),
      });
      expect(res.headers.get('location')).toBe('/console/fleet');
    }
    const ok = await h.app.request('/console/sign-in', {
      method: 'POST',
      body: form({ key: h.adminKey, next: '/console/audit?action=console.' }),
    });
    expect(ok.headers.get('location')).toBe('/console/audit?action=console.');
  });
});

describe('console sign-in rate limits', () => {
  // A server of its own: small limits, so the other tests keep signing in.
  let rdb: TestDatabase;
  let r: Harness;
  beforeAll(async () => {
    rdb = await openTestDatabase('pglite');
    r = await createHarness(rdb.database, blobs.blobs, {
      rateLimits: {
        ...DEFAULT_APP_CONFIG.rateLimits,
        signInPerSource: { burst: 3, periodSeconds: 60 },
        signInTotal: { burst: 5, periodSeconds: 60 },
      },
    });
  });
  afterAll(() => rdb?.dispose());

  /** A sign-in as the server sees it from a peer (@hono/node-server's c.env.incoming). */
  const attempt = (key: string, remoteAddress?: string) =>
    r.app.request(
      '/console/sign-in',
      { method: 'POST', body: form({ key }) },
      remoteAddress === undefined ? undefined : { incoming: { socket: { remoteAddress } } },
    );

  it('refuses a source past its attempts with 429, Retry-After and a message on the page; failures are audited without the key', async () => {
    const wrong = 'abk_wrong-guess-0123456789';
    for (let i = 0; i < 3; i++) expect((await attempt(wrong, '192.0.2.7')).status).toBe(401);
    // Now even the right key is not looked at from that address.
    const limited = await attempt(r.adminKey, '192.0.2.7');
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBe(20);
    expect(limited.headers.get('set-cookie')).toBeNull();
    const page = await limited.text();
    expect(page).toContain('Too many sign-in attempts from your address. Wait 20 s, then try again.');
    expect(page).toContain('role="alert"');
    // Another address still signs in.
    const other = await attempt(r.adminKey, '198.51.100.9');
    expect(other.status).toBe(303);
    expect(other.headers.get('set-cookie')).toContain('abota_console=');

    const failed = await rdb.database.db
      .select()
      .from(auditLog)
      .where(eq(auditLog.action, 'console.sign-in-failed'));
    expect(failed).toHaveLength(3);
    expect(failed[0]).toMatchObject({
      actor: 'address:192.0.2.7',
      target: 'console',
      details: { reason: 'unknown or revoked key' },
    });
    expect(JSON.stringify(failed)).not.toContain('wrong-guess');
    expect(r.logs.join('\n')).toContain('console sign-in refused');
    expect(r.logs.join('\n')).not.toContain('wrong-guess');
  });

  it('caps the attempts of all sources together (and of loopback peers, which have no address of their own)', async () => {
    // 4 of 5 taken above; one more anywhere, then everyone waits.
    expect((await attempt('abk_x', '203.0.113.1')).status).toBe(401);
    const res = await attempt(r.adminKey, '203.0.113.2');
    expect(res.status).toBe(429);
    expect(await res.text()).toContain('Too many sign-in attempts on this server');
    const loopback = await attempt(r.adminKey, '127.0.0.1');
    expect(loopback.status).toBe(429);
    expect(Number(loopback.headers.get('retry-after'))).toBeGreaterThan(0);
    const metrics = await r.request('/metrics', { key: r.adminKey });
    expect(await metrics.text()).toMatch(/abota_rate_limited_total\{limit="sign-in-total"\} 2/);
  });
});

describe('console CSRF', () => {
  it('a POST without the session token, or from another origin, is refused with 403 and changes nothing', async () => {
    const { cookie } = await signIn(h.adminKey);
    const csrf = await csrfOf(cookie);
    const [device] = await db.database.db
      .insert(devices)
      .values({
        product: await productId(),
        hardware: 'hw',
        publicKeyJwk: { kty: 'OKP', crv: 'Ed25519', x: 'x' },
      })
      .returning();
    const path = `/console/devices/${device!.id}/decommission`;
    const cases: [string, Record<string, string>, Record<string, string>][] = [
      ['no token', {}, { 'sec-fetch-site': 'same-origin' }],
      ['wrong token', { _csrf: 'x'.repeat(csrf.length) }, { 'sec-fetch-site': 'same-origin' }],
      ['other origin', { _csrf: csrf }, { origin: 'http://evil.example', host: 'localhost' }],
      ['other site', { _csrf: csrf }, { 'sec-fetch-site': 'cross-site' }],
      ['same site, other origin', { _csrf: csrf }, { 'sec-fetch-site': 'same-site' }],
    ];
    for (const [what, fields, headers] of cases) {
      const res = await h.app.request(path, {
        method: 'POST',
        body: form(fields),
        headers: { cookie, ...headers },
      });
      expect(res.status, what).toBe(403);
    }
    const [after] = await db.database.db.select().from(devices).where(eq(devices.id, device!.id));
    expect(after!.decommissionedAt).toBeNull();
    // The same request from the console's own page goes through (and is audited by the API).
    const ok = await h.app.request(path, {
      method: 'POST',
      body: form({ _csrf: csrf }),
      headers: { cookie, 'sec-fetch-site': 'same-origin', origin: 'http://localhost', host: 'localhost' },
    });
    expect(ok.status).toBe(303);
    const [done] = await db.database.db.select().from(devices).where(eq(devices.id, device!.id));
    expect(done!.decommissionedAt).not.toBeNull();
  });

  it('a POST without a session is refused with 401', async () => {
    const res = await h.app.request('/console/sign-out', { method: 'POST', body: form({}) });
    expect(res.status).toBe(401);
  });
});

describe('console credential pages (admin only)', () => {
  const post = (path: string, cookie: string, fields: Record<string, string>) =>
    h.app.request(path, {
      method: 'POST',
      body: form(fields),
      headers: { cookie, 'sec-fetch-site': 'same-origin' },
    });

  it('an admin creates a provisioning token with bounded uses and expiry (shown once) and revokes it', async () => {
    const product = await productId();
    const { cookie } = await signIn(h.adminKey);
    const csrf = await csrfOf(cookie);
    const created = await post('/console/tokens', cookie, {
      _csrf: csrf,
      product,
      maxUses: '5',
      expiresInSeconds: '3600',
      description: 'line 3',
    });
    expect(created.status).toBe(201);
    const html = await created.text();
    const token = /<code id="new-token">(abp_[^<]+)<\/code>/.exec(html)?.[1];
    expect(token).toBeDefined();
    const [row] = await db.database.db
      .select()
      .from(provisioningTokens)
      .where(eq(provisioningTokens.description, 'line 3'));
    expect(row).toMatchObject({ product, maxUses: 5, uses: 0, revokedAt: null });
    expect(row!.expiresAt.getTime() - h.clock.now().getTime()).toBe(3600_000);
    // Listed with its uses left, never again with the token.
    const list = await (await h.app.request('/console/tokens', { headers: { cookie } })).text();
    expect(list).toContain('5 of 5');
    expect(list).not.toContain(token!);
    const revoked = await post(`/console/tokens/${row!.id}/revoke`, cookie, { _csrf: csrf });
    expect(revoked.status).toBe(303);
    const [after] = await db.database.db
      .select()
      .from(provisioningTokens)
      .where(eq(provisioningTokens.id, row!.id));
    expect(after!.revokedAt).not.toBeNull();
    // Bad input: the API's validation, with its code.
    const bad = await post('/console/tokens', cookie, {
      _csrf: csrf,
      product,
      maxUses: '0',
      expiresInSeconds: '3600',
    });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain('ERR_VALIDATION');
  });

  it('operators and viewers get no Tokens or API keys link, and their POSTs are refused 403 with a valid session and CSRF token', async () => {
    const product = await productId();
    for (const role of ['operator', 'viewer', 'publisher']) {
      const { key } = await newKey(role);
      const { cookie } = await signIn(key);
      const csrf = await csrfOf(cookie);
      const fleet = await (await h.app.request('/console/fleet', { headers: { cookie } })).text();
      expect(fleet, role).not.toContain('href="/console/tokens"');
      expect(fleet, role).not.toContain('href="/console/keys"');
      expect((await h.app.request('/console/tokens', { headers: { cookie } })).status, role).toBe(403);
      const before = (await db.database.db.select().from(provisioningTokens)).length;
      const res = await post('/console/tokens', cookie, {
        _csrf: csrf,
        product,
        maxUses: '1000',
        expiresInSeconds: '86400',
      });
      expect(res.status, role).toBe(403);
      expect(await res.text(), role).toContain(`role &quot;${role}&quot; may not use this console page`);
      expect((await db.database.db.select().from(provisioningTokens)).length, role).toBe(before);
      const keys = await post('/console/keys', cookie, { _csrf: csrf, name: 'sneaky', role: 'admin' });
      expect(keys.status, role).toBe(403);
    }
  });
});

describe('console assets', () => {
  it('hashed URLs are cached for a year, compressed, and revalidate by ETag', async () => {
    const { cookie } = await signIn(h.adminKey);
    const html = await (await h.app.request('/console/fleet', { headers: { cookie } })).text();
    const url = /src="(\/console\/static\/uplot\.js\?v=[0-9a-f]+)"/.exec(html)?.[1];
    expect(url).toBeDefined();
    const res = await h.app.request(url!, { headers: { 'accept-encoding': 'gzip' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(res.headers.get('content-encoding')).toBe('gzip');
    const again = await h.app.request(url!, { headers: { 'if-none-match': res.headers.get('etag')! } });
    expect(again.status).toBe(304);
    expect((await h.app.request('/console/static/nope.js')).status).toBe(404);
  });

  it('the JavaScript of the heaviest page (a rollout: console.js + rollouts.js + uPlot) stays under 100 KB compressed', () => {
    const rollout = shippedBytes(pageScripts({ scripts: ['uplot.js', 'rollouts.js'] }));
    expect(rollout).toBeGreaterThan(shippedBytes(pageScripts({ scripts: ['uplot.js'] })));
    expect(rollout).toBeLessThan(100 * 1024);
  });

  it('pages carry a strict CSP and are not cached', async () => {
    const { cookie } = await signIn(h.adminKey);
    const res = await h.app.request('/console/audit', { headers: { cookie } });
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(res.headers.get('cache-control')).toBe('no-store');
  });
});

/** The test product, created on first use. */
let product: Promise<string> | undefined;
function productId(): Promise<string> {
  product ??= createTestProduct();
  return product;
}

async function createTestProduct(): Promise<string> {
  const { makeProduct } = await import('./harness.js');
  const p = await makeProduct('console-test');
  const res = await h.request('/v1/admin/products', {
    method: 'POST',
    key: h.adminKey,
    json: { id: p.product, trustRoot: p.signedRoot },
  });
  if (res.status !== 201) throw new Error(`product create: ${res.status} ${await res.text()}`);
  return p.product;
}
