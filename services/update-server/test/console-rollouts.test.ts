// The console's rollout pages in a real browser: Debian's headless Chromium (/usr/bin/chromium)
// driven by playwright-core against a real server on loopback (createApp + the rollout engine on
// a 500 ms timer, PGlite), with a fleet of 60 devices that register, poll and report over HTTP
// with their own Ed25519 keys (test/rollout-fleet.ts: they report outcomes, they install nothing).
// An operator signs in, previews a rollout (the numbers equal the API's preview for the same id),
// creates it, watches it advance by itself and update live, and pauses it from the keyboard with a
// confirmation that states the effect; a viewer sees no action and the API refuses it the action.
// No console errors on any page. Screenshots go to .tmp/artifacts/console-rollouts/ (or
// $ABOTA_TEST_ARTIFACTS/console-rollouts/).
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/app.js';
import { bootstrapAdminKey } from '../src/auth/api-keys.js';
import { generateSecret } from '../src/auth/secrets.js';
import type { Clock } from '../src/context.js';
import { createLogger } from '../src/logger.js';
import { RolloutEngine } from '../src/rollout/engine.js';
import type { RolloutPreview } from '../src/rollout/preview.js';
import type { RolloutStatusView } from '../src/rollout/status.js';
import {
  createHarness,
  createProduct,
  createProvisioningToken,
  makeProduct,
  makeRelease,
  openTestBlobStore,
  openTestDatabase,
  pushRelease,
  type TestBlobStore,
  type TestDatabase,
} from './harness.js';
import { type FleetDevice, type Listening, listen, pollRound, registerFleet } from './rollout-fleet.js';

const CHROMIUM = process.env['ABOTA_CHROMIUM'] ?? '/usr/bin/chromium';
const REPO = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const ARTIFACTS = join(
  process.env['ABOTA_TEST_ARTIFACTS'] ?? join(REPO, '.tmp', 'artifacts'),
  'console-rollouts',
);
const FLEET = 60;
const required = process.env['ABOTA_REQUIRE_TOOLS'] === '1';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && required)
  throw new Error(`ABOTA_REQUIRE_TOOLS=1 but ${CHROMIUM} is missing (apt-get install chromium)`);

describe.skipIf(!haveChromium)('console rollout pages in Chromium', () => {
  const clock: Clock = { now: () => new Date() };
  let database: TestDatabase;
  let blobs: TestBlobStore;
  let engine: RolloutEngine;
  let server: Listening;
  let browser: Browser;
  let adminKey: string;
  let operatorKey: string;
  let viewerKey: string;
  let releaseId: string;
  let fleet: FleetDevice[];
  let rolloutId: string;
  const consoleErrors: string[] = [];
  /** Responses of 400 and above the browser saw (each also logs a console error). */
  const failedLoads: string[] = [];

  const api = async <T>(path: string, key: string, json?: unknown): Promise<{ status: number; body: T }> => {
    const res = await fetch(`${server.url}${path}`, {
      method: json === undefined ? 'GET' : 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        ...(json === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(json === undefined ? {} : { body: JSON.stringify(json) }),
    });
    return { status: res.status, body: (await res.json()) as T };
  };

  const newKey = async (role: string) =>
    (await api<{ key: string }>('/v1/admin/api-keys', adminKey, { name: `${role} in the browser`, role }))
      .body.key;

  async function openPage(): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(`${page.url()}: ${m.text()}`);
    });
    page.on('response', (r) => {
      if (r.status() >= 400) failedLoads.push(`${r.status()} ${new URL(r.url()).pathname}`);
    });
    page.on('pageerror', (e) => consoleErrors.push(`${page.url()}: ${e.message}`));
    return page;
  }

  async function signIn(page: Page, key: string): Promise<void> {
    await page.goto(`${server.url}/console/sign-in?next=/console/rollouts`);
    await page.fill('#key', key);
    await page.press('#key', 'Enter');
    await page.waitForURL(`${server.url}/console/rollouts`);
  }

  const shot = (page: Page, name: string) =>
    page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    database = await openTestDatabase('pglite');
    blobs = await openTestBlobStore('fs');
    const logger = createLogger({ level: 'silent' });
    engine = new RolloutEngine({ db: database.database.db, clock, logger });
    const app = createApp({ db: database.database.db, blobs: blobs.blobs, clock, logger, rollouts: engine });
    adminKey = generateSecret('abk');
    await bootstrapAdminKey({ db: database.database.db }, adminKey);
    server = await listen(app);
    await engine.start({ intervalMs: 500 });
    // Product and releases through the admin API (the harness's helpers, on this app).
    const h = await createHarness(database.database, blobs.blobs);
    const keys = await makeProduct('console-vm');
    await createProduct(h, keys);
    await pushRelease(h, await makeRelease(keys, '1.0.0'));
    releaseId = await pushRelease(h, await makeRelease(keys, '1.1.0'));
    const token = await createProvisioningToken(h, keys.product);
    fleet = await registerFleet(server.url, {
      product: keys.product,
      token,
      count: FLEET,
      version: '1.0.0',
      clock,
    });
    // Every device reports its version once (nothing offered yet); two thirds are in group "lab".
    await pollRound(server.url, fleet);
    for (const d of fleet.filter((_, i) => i % 3 !== 0)) {
      const res = await fetch(`${server.url}/v1/admin/devices/${d.id}/tags`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tags: ['group:lab'] }),
      });
      expect(res.status).toBe(200);
    }
    operatorKey = await newKey('operator');
    viewerKey = await newKey('viewer');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await engine?.stop();
    await server?.close();
    await database?.dispose();
    await blobs?.dispose();
  });

  it('previews a rollout with numbers equal to the API preview, creates it, watches it advance live, and pauses it by keyboard', async () => {
    const page = await openPage();
    await signIn(page, operatorKey);
    await shot(page, '1-rollouts-empty');
    await page.click('[data-action="new-rollout"]');
    await page.waitForURL(/\/console\/rollouts\/new$/);
    await page.selectOption('#n-releaseId', releaseId);
    await page.fill('#n-name', 'lab 1.1.0');
    await page.fill('#n-groups', 'lab');
    await page.fill('#n-stages', '10, 100');
    await page.fill('#n-bakeMinutes', '0');
    await page.fill('#n-maxFailurePercent', '50');
    await page.fill('#n-minSample', '1');
    await page.fill('#n-minDevices', '2');
    await page.click('[data-action="preview"]');
    await page.waitForSelector('[data-preview]');
    await shot(page, '2-new-rollout-dry-run');

    // The page's numbers are the API's for the same id.
    const previewId = await page.inputValue('input[name="previewId"]');
    expect(previewId).toMatch(/^[0-9a-f-]{36}$/);
    const shown = await page.$$eval('[data-preview-stage]', (rows) =>
      rows.map((r) => ({
        targeted: Number(r.querySelector('[data-k="targeted"]')?.textContent?.replace(/,/g, '')),
        cumulative: Number(r.querySelector('[data-k="cumulative"]')?.textContent?.replace(/,/g, '')),
      })),
    );
    const body = {
      id: previewId,
      releaseId,
      name: 'lab 1.1.0',
      selector: { groups: ['lab'] },
      stages: [10, 100].map((percent) => ({
        percent,
        minBakeSeconds: 0,
        maxFailurePercent: 50,
        minSample: 1,
        minDevices: 2,
      })),
    };
    const preview = await api<RolloutPreview>('/v1/admin/rollouts/preview', operatorKey, body);
    expect(preview.status).toBe(200);
    expect(shown).toEqual(
      preview.body.stages.map((s) => ({ targeted: s.targeted, cumulative: s.cumulative })),
    );
    expect(preview.body.devices.eligible).toBe(FLEET - FLEET / 3);
    expect(await page.textContent('[data-preview-funnel] [data-k="eligible"]')).toBe(
      String(preview.body.devices.eligible),
    );

    await page.click('[data-action="create"]');
    await page.waitForURL(/\/console\/rollouts\/[0-9a-f-]{36}$/);
    rolloutId = page.url().split('/').at(-1) ?? '';
    expect(rolloutId).toBe(previewId);
    const status = await api<{ status: RolloutStatusView }>(
      `/v1/admin/rollouts/${rolloutId}/status`,
      operatorKey,
    );
    expect(status.body.status.stages.map((s) => s.targeted)).toEqual(
      preview.body.stages.map((s) => s.targeted),
    );
    await page.waitForSelector('[data-rollout-page][data-live-events]');
    expect(await page.getAttribute('[data-rollout-page]', 'data-stage')).toBe('0');
    await page.waitForSelector('#failure-chart[data-ready]');

    // The canaries poll, install and commit: the engine advances to stage 2 by itself and the
    // page follows (it reloads on a stage change).
    await pollRound(server.url, fleet);
    await page.waitForSelector('[data-rollout-page][data-stage="1"]', { timeout: 30_000 });
    await page.waitForSelector('[data-rollout-page][data-live-events]');
    expect(await page.textContent('ol.timeline li[data-action="rollout.advance"]')).toContain('automatic');

    // Stage 2: half of the remaining devices commit; the numbers change in place (no reload).
    await page.evaluate('window.marker = 42');
    const stage2 = status.body.status.stages[1]?.targeted ?? 0;
    expect(stage2).toBeGreaterThan(2);
    const half = fleet.filter((_, i) => i % 2 === 0);
    await pollRound(server.url, half);
    const committed = async () =>
      Number((await page.textContent('tr[data-stage="1"] [data-k="committed"]'))?.replace(/,/g, '') ?? 'NaN');
    const afterRound = await api<{ status: RolloutStatusView }>(
      `/v1/admin/rollouts/${rolloutId}/status`,
      operatorKey,
    );
    const stage2Committed = afterRound.body.status.stages[1]?.committed ?? 0;
    expect(stage2Committed).toBeGreaterThan(0);
    await expect.poll(committed, { timeout: 20_000 }).toBe(stage2Committed);
    expect(await page.evaluate('window.marker')).toBe(42);
    await shot(page, '3-rollout-live');

    // Pause from the keyboard: Tab to the Pause button, Enter, accept the confirmation.
    const dialogs: string[] = [];
    page.on('dialog', async (d) => {
      dialogs.push(d.message());
      await d.accept();
    });
    let reached = false;
    for (let i = 0; i < 60 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = (await page.evaluate('document.activeElement?.dataset.action')) === 'pause';
    }
    expect(reached).toBe(true);
    await Promise.all([
      page.waitForURL(`${server.url}/console/rollouts/${rolloutId}`),
      page.keyboard.press('Enter'),
    ]);
    await page.waitForSelector('[data-rollout-page][data-state="paused"]');
    expect(dialogs).toHaveLength(1);
    expect(dialogs[0]).toMatch(
      /^Pause stage 2 \(100 %\): \d+ devices will get no new offers; \d+ installs under way finish\.$/,
    );
    const waiting = Number(/: (\d+) devices/.exec(dialogs[0] ?? '')?.[1]);
    expect(waiting).toBe(stage2 + (status.body.status.stages[0]?.targeted ?? 0) - (await committedTotal()));
    expect(await page.textContent('[data-rollout-state]')).toBe('paused');
    expect(await page.textContent('ol.timeline li[data-action="rollout.pause"]')).toContain('by apikey:');
    // Resume is offered now, and is reachable by keyboard too.
    expect(await page.isVisible('button[data-action="resume"]')).toBe(true);
    await page.focus('button[data-action="resume"]');
    expect(await page.evaluate('document.activeElement?.dataset.action')).toBe('resume');
    await shot(page, '4-rollout-paused');
    await page.context().close();

    async function committedTotal(): Promise<number> {
      const s = await api<{ status: RolloutStatusView }>(
        `/v1/admin/rollouts/${rolloutId}/status`,
        operatorKey,
      );
      return s.body.status.overall.committed;
    }
  }, 180_000);

  it('shows a viewer no action, and the API and the console refuse it one', async () => {
    const page = await openPage();
    await signIn(page, viewerKey);
    expect(await page.$('[data-action="new-rollout"]')).toBeNull();
    await page.goto(`${server.url}/console/rollouts/${rolloutId}`);
    await page.waitForSelector('[data-rollout-page]');
    expect(await page.$$('[data-action-form], button[data-action]')).toHaveLength(0);
    await shot(page, '5-rollout-viewer');
    const refused = await api<{ error: { code: string } }>(
      `/v1/admin/rollouts/${rolloutId}/resume`,
      viewerKey,
      {},
    );
    expect(refused.status).toBe(403);
    // The console's own action URL, posted from the page with the viewer's valid CSRF token.
    const answer = (await page.evaluate(`(async () => {
      const csrf = document.querySelector('input[name="_csrf"]').value;
      const res = await fetch('/console/rollouts/${rolloutId}/resume', {
        method: 'POST',
        body: new URLSearchParams({ _csrf: csrf }),
      });
      return { status: res.status, text: await res.text() };
    })()`)) as { status: number; text: string };
    expect(answer.status).toBe(403);
    expect(answer.text).toContain('ERR_FORBIDDEN');
    const newPage = await page.goto(`${server.url}/console/rollouts/new`);
    expect(newPage?.status()).toBe(403);
    const state = await api<{ status: RolloutStatusView }>(
      `/v1/admin/rollouts/${rolloutId}/status`,
      adminKey,
    );
    expect(state.body.status.state).toBe('paused');
    await page.context().close();
  }, 60_000);

  it('logged no console error on any page but the refusals the viewer provoked', () => {
    const provoked = [`403 /console/rollouts/${rolloutId}/resume`, '403 /console/rollouts/new'];
    expect(failedLoads.filter((l) => !provoked.includes(l))).toEqual([]);
    const other = consoleErrors.filter((e) => !e.includes('Failed to load resource'));
    expect(other).toEqual([]);
    expect(consoleErrors.length).toBe(failedLoads.length);
  });
});
