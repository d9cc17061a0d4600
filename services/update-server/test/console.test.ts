// The console's HTTP contract without a browser (PGlite, in-process app): the session cookie and
// its server-side life (hashed id, expiry, sign-out, revoked key), CSRF and same-origin refusals,
// the static assets' caching and the JavaScript budget. The browser tests are test/console/.
import { createHash } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shippedBytes } from '../src/console/assets.js';
import { pageScripts } from '../src/console/layout.js';
import { SESSION_SECONDS } from '../src/console/session.js';
import { consoleSessions, devices } from '../src/db/schema.js';
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

  it('the JavaScript of the heaviest page (fleet: console.js + uPlot) stays under 100 KB compressed', () => {
    const fleet = shippedBytes(pageScripts({ scripts: ['uplot.js'] }));
    expect(fleet).toBeGreaterThan(10_000);
    expect(fleet).toBeLessThan(100 * 1024);
  });

  it('pages carry a strict CSP and are not cached', async () => {
    const { cookie } = await signIn(h.adminKey);
    const res = await h.app.request('/console/audit', { headers: { cookie } });
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(res.headers.get('cache-control')).toBe('no-store');
  });
});

async function productId(): Promise<string> {
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
