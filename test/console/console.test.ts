// biome-ignore-all lint/performance/useDomNodeTextContent: these are Playwright locators, whose innerText() is the rendered text a user reads, not DOM nodes
// The web console in a real headless Chromium (Debian's `chromium`, playwright-core) against a real
// abota-server with a simulated fleet (fixture.ts): sign-in and its rate limit, fleet, device
// history, releases, provisioning tokens, audit, roles, CSRF, keyboard reachability, no console
// errors; screenshots of each page land in
// test/test-results/console/.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { rm } from 'node:fs/promises';
import { describeWithTool, makeTempDir } from '@abota/testkit';
import { DEFAULT_APP_CONFIG } from '@abota/update-server';
import { LabServer } from '@abota/update-server/lab';
import type { Page } from 'playwright-core';
import { PRODUCT } from '../fixtures/fleet.js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  type ConsoleBrowser,
  type ConsoleFleet,
  type ContextPage,
  javascriptBytes,
  launchChromium,
  screenshot,
  signIn,
  startConsoleFleet,
  tabTo,
  unreachableByTab,
  type WatchedPage,
} from './fixture.js';

describeWithTool('chromium', 'chromium', 'the web console in Chromium', (chromiumPath) => {
  let cf: ConsoleFleet;
  let chrome: ConsoleBrowser;
  let admin: ContextPage;

  const device = (i: number) => cf.vms[i]!.deviceId;
  const api = async (path: string, key: string, init: RequestInit = {}) =>
    fetch(`${cf.url}${path}`, { ...init, headers: { authorization: `Bearer ${key}`, ...init.headers } });
  const deviceRow = async (id: string) =>
    (await (await api(`/v1/admin/devices/${id}`, cf.keys.admin)).json()) as {
      tags: string[];
      decommissionedAt: string | null;
    };
  const auditActions = async () => {
    const page = await admin.context.newPage();
    await page.goto(`${cf.url}/console/audit`);
    const text = await page.locator('table.audit tbody').innerText();
    await page.close();
    return text;
  };
  const tokenCount = async () =>
    ((await (await api('/v1/admin/provisioning-tokens', cf.keys.admin)).json()) as { items: unknown[] }).items
      .length;
  /** No console error or page error so far on this page; clears the list. */
  const clean = (w: WatchedPage) => {
    expect(w.problems).toEqual([]);
    w.problems.length = 0;
  };
  const keyboardReachable = async (page: Page) => expect(await unreachableByTab(page)).toEqual([]);

  beforeAll(async () => {
    cf = await startConsoleFleet({ devices: 4 });
    chrome = await launchChromium(chromiumPath);
    admin = await chrome.open();
  }, 300_000);

  afterAll(async () => {
    await chrome?.close();
    await cf?.close();
  });

  it('refuses a wrong key with a clear message, then signs in with the admin key (HttpOnly, SameSite=Strict cookie)', async () => {
    const { page } = admin;
    await page.goto(`${cf.url}/console/fleet`);
    expect(new URL(page.url()).pathname).toBe('/console/sign-in');
    await screenshot(page, 'sign-in');
    await keyboardReachable(page);
    await page.getByLabel('Admin API key').fill('abk_not-a-real-key');
    const [refused] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/console/sign-in') && r.request().method() === 'POST'),
      page.getByRole('button', { name: 'Sign in' }).click(),
    ]);
    expect(refused.status()).toBe(401);
    await expect
      .poll(() => page.getByRole('alert').innerText())
      .toContain('That API key is unknown or revoked');
    // The browser logs the 401 document itself; nothing else.
    expect(admin.problems.filter((p) => !p.includes('status of 401'))).toEqual([]);
    admin.problems.length = 0;

    // Keyboard only: type the key, Enter.
    await page.getByLabel('Admin API key').fill(cf.keys.admin);
    await page.keyboard.press('Enter');
    await page.waitForURL(`${cf.url}/console/fleet`);
    const [cookie] = await admin.context.cookies(cf.url + '/console');
    expect(cookie).toMatchObject({
      name: 'abota_console',
      httpOnly: true,
      sameSite: 'Strict',
      path: '/console',
    });
    expect(cookie!.expires).toBeGreaterThan(Date.now() / 1000);
    clean(admin);
  });

  it('fleet: lists the simulated devices with version, state and slot; filters and search narrow the list; the version chart draws', async () => {
    const { page } = admin;
    await page.goto(`${cf.url}/console/fleet`);
    const rows = page.locator('table.devices tbody tr');
    await expect.poll(() => rows.count()).toBe(4);
    const table = await page.locator('table.devices').innerText();
    for (let i = 0; i < 4; i++) expect(table).toContain(device(i));
    expect(await page.locator('[data-total]').innerText()).toBe('4');
    // The chart: uPlot drew a canvas from /console/fleet/versions.json.
    await expect.poll(() => page.locator('#version-chart').getAttribute('data-ready')).not.toBeNull();
    expect(await page.locator('#version-chart').getAttribute('data-ready')).not.toBe('error');
    expect(await page.locator('#version-chart canvas').count()).toBeGreaterThan(0);
    await screenshot(page, 'fleet');
    await keyboardReachable(page);

    // Filter by version through the form: only device 0 runs 1.1.0.
    await page.getByLabel('Version', { exact: true }).selectOption('1.1.0');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/version=1\.1\.0/);
    await expect.poll(() => rows.count()).toBe(1);
    expect(await rows.first().innerText()).toContain(device(0));
    expect(await rows.first().innerText()).toContain('committed');

    // Search by an id prefix.
    await page.goto(`${cf.url}/console/fleet`);
    await page.getByLabel('Search', { exact: true }).fill(device(2).slice(0, 8));
    await page.getByLabel('Search', { exact: true }).press('Enter');
    await page.waitForURL(/q=/);
    await expect.poll(() => rows.count()).toBe(1);
    expect(await rows.first().innerText()).toContain(device(2));
    clean(admin);
  });

  it('device page: the history shows the install and the rollback, and the rollout membership', async () => {
    const { page } = admin;
    await page.goto(`${cf.url}/console/fleet`);
    // Keyboard: Tab to the device's link, Enter opens it.
    await tabTo(page, `a[href="/console/devices/${device(1)}"]`);
    await page.keyboard.press('Enter');
    await page.waitForURL(`${cf.url}/console/devices/${device(1)}`);
    const history = await page.locator('table.history').innerText();
    expect(history).toMatch(/installing|installed/);
    expect(history).toMatch(/rolled-back|failed/);
    const rollouts = await page.getByRole('region', { name: 'Rollouts' }).innerText();
    expect(rollouts).toContain('canary 1.1.0');
    expect(rollouts).toContain('1.1.0');
    await screenshot(page, 'device');
    await keyboardReachable(page);

    await page.goto(`${cf.url}/console/devices/${device(0)}`);
    const history0 = await page.locator('table.history').innerText();
    expect(history0).toContain('committed');
    clean(admin);
  });

  it('an operator action by keyboard only (Tab + Enter): tags saved through the admin API, audited', async () => {
    const { page } = admin;
    await page.goto(`${cf.url}/console/devices/${device(3)}`);
    await tabTo(page, '#tags');
    await page.keyboard.type('site:berlin, ring:canary');
    await tabTo(page, 'form[action$="/tags"] button');
    await page.keyboard.press('Enter');
    await page.waitForLoadState('load');
    await expect.poll(async () => (await deviceRow(device(3))).tags).toEqual(['ring:canary', 'site:berlin']);
    expect(await page.locator('dl.facts').innerText()).toContain('ring:canary, site:berlin');
    clean(admin);
  });

  it('releases: versions, sizes, codecs, the delta and its saving, signing keys against the threshold, expiry', async () => {
    const { page } = admin;
    await page.getByRole('link', { name: 'Releases' }).click();
    await page.waitForURL(`${cf.url}/console/releases`);
    const r11 = page.locator('section[data-release="1.1.0"]');
    const text = await r11.innerText();
    expect(text).toContain('eflow-vm 1.1.0');
    expect(text).toMatch(/rootfs\s+4\.0 MiB/);
    expect(text).toContain('zstd');
    expect(text).toContain('1 of 1 release keys (threshold 1)');
    expect(await r11.locator('table.deltas').innerText()).toContain('1.0.0');
    const savingText = await r11.locator('[data-saving]').first().innerText();
    expect(Number.parseFloat(savingText)).toBeGreaterThan(0);
    // Built with --expires 30d: not yet inside the 14-day warning.
    expect(await r11.locator('[data-expiry]').getAttribute('data-expiry')).toBe('ok');
    expect(await page.locator('section[data-release="1.0.0"]').count()).toBe(1);
    // The publisher's action is there for the admin.
    expect(await r11.getByRole('button', { name: 'Yank 1.1.0' }).count()).toBe(1);
    await screenshot(page, 'releases');
    await keyboardReachable(page);
    clean(admin);
  });

  it('tokens (admin): creates a provisioning token with bounded uses and expiry, shown once, and revokes it by keyboard (Space), audited', async () => {
    const { page } = admin;
    await page.getByRole('link', { name: 'Tokens' }).click();
    await page.waitForURL(`${cf.url}/console/tokens`);
    await page.getByLabel('Devices (uses)').fill('3');
    await page.getByLabel('Expires in').selectOption({ label: '7 days' });
    await page.getByLabel('Description').fill('line 3 batch');
    await page.getByRole('button', { name: 'Create token' }).click();
    await page.waitForLoadState('load');
    const token = await page.locator('#new-token').innerText();
    expect(token).toMatch(/^abp_/);
    const listed = async () =>
      (
        (await (await api('/v1/admin/provisioning-tokens', cf.keys.admin)).json()) as {
          items: {
            id: string;
            description: string;
            maxUses: number;
            uses: number;
            expiresAt: string;
            revokedAt: string | null;
          }[];
        }
      ).items.find((t) => t.description === 'line 3 batch');
    const created = await listed();
    expect(created).toMatchObject({ maxUses: 3, uses: 0, revokedAt: null });
    const days = (Date.parse(created!.expiresAt) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(6.9);
    expect(days).toBeLessThanOrEqual(7);
    // Shown once: the list has the token's uses, not the token.
    await page.goto(`${cf.url}/console/tokens`);
    expect(await page.locator('#new-token').count()).toBe(0);
    expect(await page.content()).not.toContain(token);
    const row = page.locator(`tr[data-token="${created!.id}"]`);
    expect(await row.innerText()).toContain('3 of 3');
    await screenshot(page, 'tokens');
    await keyboardReachable(page);
    clean(admin);

    // Revoke by keyboard: Tab to the row's button, Space; the confirmation states the effect.
    const dialog = new Promise<string>((resolve) =>
      page.once('dialog', async (d) => {
        resolve(d.message());
        await d.accept();
      }),
    );
    await tabTo(page, `tr[data-token="${created!.id}"] button`);
    await page.keyboard.press('Space');
    expect(await dialog).toContain('the 3 devices not yet registered with it can no longer register');
    await expect.poll(async () => (await listed())?.revokedAt ?? null).not.toBeNull();
    await page.waitForURL(`${cf.url}/console/tokens`);
    expect(await row.getAttribute('data-state')).toBe('revoked');
    expect(await row.getByRole('button').count()).toBe(0);
    expect(await auditActions()).toContain('provisioning-token.revoke');
    clean(admin);
  });

  it('audit log: the sign-in and the console action, with the key that did them', async () => {
    const { page } = admin;
    await page.goto(`${cf.url}/console/audit`);
    const text = await page.locator('table.audit tbody').innerText();
    expect(text).toContain('console.sign-in');
    expect(text).toContain('device.tags');
    expect(text).toContain('bootstrap');
    await screenshot(page, 'audit');
    await keyboardReachable(page);
    await page.goto(`${cf.url}/console/keys`);
    expect(await page.locator('table').innerText()).toContain('viewer key');
    await screenshot(page, 'keys');
    await keyboardReachable(page);
    clean(admin);
  });

  it('ships under 100 KB of compressed JavaScript on every page (measured in the browser, cache empty)', async () => {
    const pages = [
      '/console/fleet',
      `/console/devices/${device(0)}`,
      '/console/rollouts',
      `/console/rollouts/${cf.rolloutId}`,
      '/console/rollouts/new',
      '/console/releases',
      '/console/audit',
      '/console/tokens',
      '/console/keys',
    ];
    const shipped: Record<string, number> = {};
    for (const path of pages) {
      const loaded = await javascriptBytes(admin.context, `${cf.url}${path}`);
      expect(loaded.path).toBe(path.split('?')[0]);
      shipped[path] = loaded.bytes;
    }
    console.log('JavaScript per page, compressed bytes as transferred:', shipped);
    for (const [path, bytes] of Object.entries(shipped)) {
      expect(bytes, path).toBeGreaterThan(0);
      expect(bytes, path).toBeLessThan(100 * 1024);
    }
    // uPlot only where there is a chart.
    expect(shipped['/console/fleet']).toBeGreaterThan(10_000);
    expect(shipped['/console/audit']).toBeLessThan(2_000);
  });

  it('a viewer sees no action and no admin page; the console and the API refuse the action (403) and nothing changes', async () => {
    const viewer = await chrome.open();
    const { page } = viewer;
    await signIn(page, cf.url, cf.keys.viewer);
    expect(await page.locator('[data-role]').innerText()).toBe('viewer');
    expect(await page.getByRole('link', { name: 'API keys' }).count()).toBe(0);
    expect(await page.getByRole('link', { name: 'Tokens' }).count()).toBe(0);
    await page.goto(`${cf.url}/console/devices/${device(2)}`);
    expect(await page.getByRole('button', { name: /Decommission|Save tags/ }).count()).toBe(0);
    expect(await page.locator('#tags').count()).toBe(0);
    await screenshot(page, 'device-viewer');
    await page.goto(`${cf.url}/console/releases`);
    expect(await page.getByRole('button', { name: /Yank/ }).count()).toBe(0);
    clean(viewer);

    // The form a viewer cannot see, posted anyway from a console page with the viewer's own
    // valid CSRF token: the admin API's role check refuses it.
    const csrf = await page.locator('input[name="_csrf"]').first().inputValue();
    const status = await page.evaluate(
      async ({ id, csrf }) => {
        const res = await fetch(`/console/devices/${id}/decommission`, {
          method: 'POST',
          body: new URLSearchParams({ _csrf: csrf }),
        });
        return { status: res.status, text: await res.text() };
      },
      { id: device(2), csrf },
    );
    expect(status.status).toBe(403);
    expect(status.text).toContain('role &quot;viewer&quot; may not do this');
    const viaApi = await api(`/v1/admin/devices/${device(2)}/decommission`, cf.keys.viewer, {
      method: 'POST',
    });
    expect(viaApi.status).toBe(403);
    await page.goto(`${cf.url}/console/keys`);
    expect(await page.getByRole('alert').innerText()).toContain('ERR_FORBIDDEN');
    expect((await deviceRow(device(2))).decommissionedAt).toBeNull();

    // A token forged the same way (valid session, valid CSRF token): refused, none created.
    const tokensBefore = await tokenCount();
    const forged = await page.evaluate(
      async ({ csrf, product }) => {
        const res = await fetch('/console/tokens', {
          method: 'POST',
          body: new URLSearchParams({ _csrf: csrf, product, maxUses: '1000', expiresInSeconds: '2592000' }),
        });
        return { status: res.status, text: await res.text() };
      },
      { csrf, product: PRODUCT },
    );
    expect(forged.status).toBe(403);
    expect(forged.text).toContain('may not use this console page');
    expect(await tokenCount()).toBe(tokensBefore);
    await viewer.context.close();
  });

  it('a form posted to the console from another origin is refused (403) and changes nothing', async () => {
    // The attacker's page on a second loopback server (another origin, same site as 127.0.0.1:
    // SameSite=Strict alone would let the cookie through). It even carries the admin's real CSRF
    // token, so the refusal shown here is the Origin/Sec-Fetch-Site check.
    const { page } = admin;
    await page.goto(`${cf.url}/console/devices/${device(2)}`);
    const csrf = await page.locator('form[action$="/decommission"] input[name="_csrf"]').inputValue();
    const target = `${cf.url}/console/devices/${device(2)}/decommission`;
    const evil: Server = createServer((req, res) => {
      res.setHeader('content-type', 'text/html; charset=utf-8');
      const withToken = req.url?.includes('token') === true;
      res.end(
        `<!DOCTYPE html><html lang="en"><head><title>win a prize</title></head><body>` +
          `<form id="f" method="post" action="${target}">` +
          (withToken ? `<input type="hidden" name="_csrf" value="${csrf}">` : '') +
          `<button>go</button></form></body></html>`,
      );
    });
    await new Promise<void>((ok) => evil.listen(0, '127.0.0.1', ok));
    const evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}`;
    try {
      for (const path of ['/', '/token']) {
        await page.goto(`${evilUrl}${path}`);
        const [res] = await Promise.all([
          page.waitForResponse((r) => r.url() === target),
          page.locator('#f button').click(),
        ]);
        expect(res.status()).toBe(403);
        expect(await page.getByRole('alert').innerText()).toMatch(/another (site|origin)/);
      }
      await screenshot(page, 'csrf-refused');
    } finally {
      await new Promise<void>((ok) => evil.close(() => ok()));
    }
    expect((await deviceRow(device(2))).decommissionedAt).toBeNull();
    expect(await auditActions()).not.toContain('device.decommission');
    admin.problems.length = 0; // the 403 documents themselves
  });

  it('sign-out revokes the session server-side: the old cookie no longer opens a page', async () => {
    const { page, context } = await chrome.open();
    await signIn(page, cf.url, cf.keys.operator);
    const [cookie] = await context.cookies(`${cf.url}/console`);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(/\/console\/sign-in/);
    const replay = await fetch(`${cf.url}/console/fleet`, {
      headers: { cookie: `${cookie!.name}=${cookie!.value}` },
      redirect: 'manual',
    });
    expect(replay.status).toBe(303);
    expect(replay.headers.get('location')).toContain('/console/sign-in');
    expect(await auditActions()).toContain('console.sign-out');
    await context.close();
  });

  it('sign-in attempts past the limit are answered 429 with Retry-After and the wait on the page', async () => {
    // A server of its own with a small limit (loopback peers count in the total only).
    const dir = await makeTempDir('abota-console-limit-');
    const server = await LabServer.start({
      dataDir: dir,
      rateLimits: { ...DEFAULT_APP_CONFIG.rateLimits, signInTotal: { burst: 3, periodSeconds: 600 } },
    });
    const w = await chrome.open();
    try {
      const { page } = w;
      for (let i = 0; i < 3; i++) {
        await page.goto(`${server.url}/console/sign-in`);
        await page.getByLabel('Admin API key').fill(`abk_guess-${i}`);
        await page.keyboard.press('Enter');
        await page.waitForLoadState('load');
        expect(await page.getByRole('alert').innerText()).toContain('unknown or revoked');
      }
      // The right key now waits too.
      await page.getByLabel('Admin API key').fill(server.adminKey);
      const [res] = await Promise.all([
        page.waitForResponse((r) => r.request().method() === 'POST'),
        page.keyboard.press('Enter'),
      ]);
      expect(res.status()).toBe(429);
      // One attempt per 200 s comes back; some of it has refilled since the first attempt.
      const wait = Number(await res.headerValue('retry-after'));
      expect(wait).toBeGreaterThan(150);
      expect(wait).toBeLessThanOrEqual(200);
      expect(await page.getByRole('alert').innerText()).toBe(
        `Too many sign-in attempts on this server. Wait ${wait} s, then try again.`,
      );
      expect(await w.context.cookies(server.url)).toEqual([]);
      await screenshot(page, 'sign-in-limited');
      // Only the browser's notes of the 401 and 429 documents themselves.
      expect(w.problems.filter((p) => !/status of (401|429)/.test(p))).toEqual([]);
    } finally {
      await w.context.close();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
