// The console's rollout pages in a real headless Chromium (fixture.ts: Debian's chromium through
// playwright-core, a real abota-server, simulated VMs whose agent polls, installs, reboots and
// commits for real). An operator previews a rollout (the page's numbers equal the API's preview
// for the same id), creates it, watches it advance by itself and update live as the VMs commit,
// and pauses it from the keyboard with a confirmation that states the effect; a viewer sees no
// action and both the API and the console refuse it one. No console error or warning on any page;
// screenshots land in test/test-results/console/ (the server README shows two of them).
import { describeWithTool } from '@abota/testkit';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { updateOnce } from '../fixtures/fleet.js';
import {
  type ConsoleBrowser,
  type ConsoleFleet,
  type ContextPage,
  launchChromium,
  screenshot,
  signIn,
  startConsoleFleet,
  tabTo,
  unreachableByTab,
} from './fixture.js';

interface StageView {
  targeted: number;
  committed: number;
  cumulative: number;
}
interface StatusDoc {
  status: { state: string; currentStage: number; stages: StageView[]; overall: { committed: number } };
}

describeWithTool('chromium', 'chromium', 'the console rollout pages in Chromium', (chromiumPath) => {
  let cf: ConsoleFleet;
  let chrome: ConsoleBrowser;
  let rolloutId: string;
  /** The VMs the rollout selects (group "lab"): all on 1.0.0 with healthy slots. */
  const lab = () => cf.vms.slice(2);

  const api = async <T>(path: string, key: string, json?: unknown): Promise<{ status: number; body: T }> => {
    const res = await fetch(`${cf.url}${path}`, {
      method: json === undefined ? 'GET' : 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        ...(json === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(json === undefined ? {} : { body: JSON.stringify(json) }),
    });
    return { status: res.status, body: (await res.json()) as T };
  };
  const status = async () =>
    (await api<StatusDoc>(`/v1/admin/rollouts/${rolloutId}/status`, cf.keys.admin)).body.status;

  beforeAll(async () => {
    cf = await startConsoleFleet({ devices: 6 });
    for (const v of lab()) {
      const res = await fetch(`${cf.url}/v1/admin/devices/${v.deviceId}/tags`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${cf.keys.admin}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tags: ['group:lab'] }),
      });
      expect(res.status).toBe(200);
    }
    chrome = await launchChromium(chromiumPath);
  }, 600_000);

  afterAll(async () => {
    await chrome?.close();
    await cf?.close();
  });

  it('previews with the API numbers, creates, advances live as VMs commit, and pauses from the keyboard', async () => {
    const w: ContextPage = await chrome.open();
    const { page } = w;
    await signIn(page, cf.url, cf.keys.operator);
    await page.goto(`${cf.url}/console/rollouts`);
    await screenshot(page, 'rollouts-list');
    expect(await unreachableByTab(page)).toEqual([]);
    await page.click('[data-action="new-rollout"]');
    await page.waitForURL(/\/console\/rollouts\/new$/);
    const releaseId = cf.fleet.releaseIds.get('1.1.0') ?? '';
    await page.selectOption('#n-releaseId', releaseId);
    await page.fill('#n-name', 'lab 1.1.0');
    await page.fill('#n-groups', 'lab');
    await page.fill('#n-stages', '25, 100');
    await page.fill('#n-bakeMinutes', '0');
    await page.fill('#n-maxFailurePercent', '50');
    await page.fill('#n-minSample', '1');
    await page.click('[data-action="preview"]');
    await page.waitForSelector('[data-preview]');
    await screenshot(page, 'rollout-new-dry-run');
    expect(await unreachableByTab(page)).toEqual([]);
    expect(w.problems).toEqual([]);

    // The page's numbers are the API's for the same rollout id.
    const previewId = await page.inputValue('input[name="previewId"]');
    const shown = await page.$$eval('[data-preview-stage]', (rows) =>
      rows.map((r) => ({
        targeted: Number(r.querySelector('[data-k="targeted"]')?.textContent),
        cumulative: Number(r.querySelector('[data-k="cumulative"]')?.textContent),
      })),
    );
    const stages = [25, 100].map((percent) => ({
      percent,
      minBakeSeconds: 0,
      maxFailurePercent: 50,
      minSample: 1,
      minDevices: 1,
    }));
    const preview = await api<{ stages: StageView[]; devices: { eligible: number } }>(
      '/v1/admin/rollouts/preview',
      cf.keys.operator,
      { id: previewId, releaseId, name: 'lab 1.1.0', selector: { groups: ['lab'] }, stages },
    );
    expect(preview.status).toBe(200);
    expect(preview.body.devices.eligible).toBe(lab().length);
    expect(shown).toEqual(
      preview.body.stages.map((s) => ({ targeted: s.targeted, cumulative: s.cumulative })),
    );

    await page.click('[data-action="create"]');
    await page.waitForURL(/\/console\/rollouts\/[0-9a-f-]{36}$/);
    rolloutId = page.url().split('/').at(-1) ?? '';
    expect(rolloutId).toBe(previewId);
    expect((await status()).stages.map((s) => s.targeted)).toEqual(
      preview.body.stages.map((s) => s.targeted),
    );
    await page.waitForSelector('[data-rollout-page][data-live-events]');
    await page.waitForSelector('#failure-chart[data-ready]');
    expect(await page.getAttribute('[data-rollout-page]', 'data-stage')).toBe('0');

    // The VMs poll; the canary installs, reboots and commits; the server's own timer advances the
    // rollout, and the page follows (it reloads when the stage changes).
    // (VMs poll in turn until the canary has committed: one more could already get stage 2.)
    for (const v of lab()) {
      await updateOnce(v.vm);
      const canary = (await status()).stages[0];
      if (canary !== undefined && canary.committed >= canary.targeted) break;
    }
    await page.waitForSelector('[data-rollout-page][data-stage="1"]', { timeout: 60_000 });
    await page.waitForSelector('[data-rollout-page][data-live-events]');
    expect(await page.textContent('ol.timeline li[data-action="rollout.advance"]')).toContain('automatic');

    // Stage 2: all but one of the others update; the numbers change in place, without a reload.
    await page.evaluate('window.marker = 42');
    const waitingOne = (await status()).stages[1]?.targeted ?? 0;
    expect(waitingOne).toBeGreaterThanOrEqual(2);
    for (const v of lab()) {
      if (((await status()).stages[1]?.committed ?? 0) >= waitingOne - 1) break;
      await updateOnce(v.vm);
    }
    const expected = (await status()).stages[1]?.committed ?? 0;
    expect(expected).toBeGreaterThan(0);
    await expect
      .poll(async () => Number(await page.textContent('tr[data-stage="1"] [data-k="committed"]')), {
        timeout: 30_000,
      })
      .toBe(expected);
    expect(await page.evaluate('window.marker')).toBe(42);
    await screenshot(page, 'rollout-live');
    expect(await unreachableByTab(page)).toEqual([]);

    // Pause from the keyboard; the confirmation says what it will do, in today's numbers.
    const dialogs: string[] = [];
    page.on('dialog', async (d) => {
      dialogs.push(d.message());
      await d.accept();
    });
    await tabTo(page, 'button[data-action="pause"]');
    await Promise.all([
      page.waitForURL(`${cf.url}/console/rollouts/${rolloutId}`),
      page.keyboard.press('Enter'),
    ]);
    await page.waitForSelector('[data-rollout-page][data-state="paused"]');
    const now = await status();
    expect(now.state).toBe('paused');
    const waiting = now.stages.reduce((n, s) => n + s.targeted, 0) - now.overall.committed;
    expect(dialogs).toEqual([
      `Pause stage 2 (100 %): ${waiting} device${waiting === 1 ? '' : 's'} will get no new offers; 0 installs under way finish.`,
    ]);
    expect(await page.textContent('[data-rollout-state]')).toBe('paused');
    expect(await page.textContent('ol.timeline li[data-action="rollout.pause"]')).toContain('by apikey:');
    await tabTo(page, 'button[data-action="resume"]');
    await screenshot(page, 'rollout-paused');
    expect(w.problems).toEqual([]);
    await w.context.close();
  }, 600_000);

  it('shows a viewer no action, and the API and the console refuse it one', async () => {
    const w = await chrome.open();
    const { page } = w;
    await signIn(page, cf.url, cf.keys.viewer);
    await page.goto(`${cf.url}/console/rollouts`);
    expect(await page.$('[data-action="new-rollout"]')).toBeNull();
    await page.goto(`${cf.url}/console/rollouts/${rolloutId}`);
    await page.waitForSelector('[data-rollout-page]');
    expect(await page.$$('[data-action-form], button[data-action]')).toHaveLength(0);
    await screenshot(page, 'rollout-viewer');
    expect(w.problems).toEqual([]);
    expect((await api(`/v1/admin/rollouts/${rolloutId}/resume`, cf.keys.viewer, {})).status).toBe(403);
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
    expect((await page.goto(`${cf.url}/console/rollouts/new`))?.status()).toBe(403);
    expect((await status()).state).toBe('paused');
    await w.context.close();
  }, 120_000);
});
