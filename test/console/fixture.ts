// Shared fixture of the console's browser tests (and of any later console page's tests): a real
// abota-server (LabServer: PGlite + files, loopback HTTP) with a simulated fleet — releases built
// by the `abota` CLI (1.0.0 and 1.1.0 with a rootfs delta), simulated VMs that registered, polled,
// installed, committed and rolled back through the real agent — one API key per role, and a real
// headless Chromium (Debian's `chromium` through playwright-core, no browser download) with
// every console message and page error collected.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { labJson } from '@abota/update-server/lab';
import { createFleet, type Fleet, type FleetVm, runAbota, updateOnce } from '../fixtures/fleet.js';

/** Where screenshots go (gitignored): test/test-results/console/<name>.png. */
export const ARTIFACTS_DIR = fileURLToPath(new URL('../test-results/console/', import.meta.url));

export type Role = 'admin' | 'publisher' | 'operator' | 'viewer';

export interface ConsoleFleet {
  fleet: Fleet;
  /** The server's base URL (http://127.0.0.1:<port>). */
  url: string;
  /** One API key per role (admin = the lab's bootstrap key). */
  keys: Record<Role, string>;
  /** The simulated devices: [0] updated to 1.1.0, [1] rolled back (unhealthy slot B), the rest on 1.0.0. */
  vms: FleetVm[];
  /** The rollout that updated devices 0 and 1. */
  rolloutId: string;
  close(): Promise<void>;
}

/**
 * A server with a small simulated fleet that has a history: `devices` VMs (≥ 2) on 1.0.0; a
 * rollout of 1.1.0 to the first two; the first commits it, the second's new slot fails its
 * health check and it rolls back; the others poll and stay.
 */
export async function startConsoleFleet(o: { devices?: number } = {}): Promise<ConsoleFleet> {
  const count = Math.max(2, o.devices ?? 4);
  const fleet = await createFleet();
  try {
    await fleet.buildRelease({ version: '1.0.0', securityVersion: 1 });
    const v11 = await fleet.buildRelease({ version: '1.1.0', securityVersion: 1 });
    await runAbota(['release', 'add-delta', v11, '--from', fleet.releases.get('1.0.0')!, '--json']);
    await fleet.push('1.0.0');
    await fleet.push('1.1.0');
    const vms: FleetVm[] = [];
    for (let i = 0; i < count; i++) vms.push(await fleet.newVm(`vm${i}`));
    const rolloutId = await fleet.server.createRollout(fleet.releaseIds.get('1.1.0')!, {
      deviceIds: [vms[0]!.deviceId, vms[1]!.deviceId],
      name: 'canary 1.1.0',
    });
    await vms[1]!.vm.setHealthy('B', false);
    for (const v of vms) await updateOnce(v.vm);
    const keys = { admin: fleet.server.adminKey } as Record<Role, string>;
    for (const role of ['publisher', 'operator', 'viewer'] as const) {
      const created = await labJson<{ key: string }>(
        await fleet.server.api.v1.admin['api-keys'].$post({ json: { name: `${role} key`, role } }),
      );
      keys[role] = created.key;
    }
    return { fleet, url: fleet.server.url, keys, vms, rolloutId, close: () => fleet.close() };
  } catch (error) {
    await fleet.close();
    throw error;
  }
}

/** A page with everything the browser complained about collected in `problems`. */
export interface WatchedPage {
  page: Page;
  /** console.error/warning messages and uncaught page errors, as text. */
  problems: string[];
}

/** A watched page and the browser context (cookie jar) it lives in. */
export type ContextPage = WatchedPage & { context: BrowserContext };

export interface ConsoleBrowser {
  browser: Browser;
  /** A new page in a fresh context (its own cookie jar: one signed-in key per context). */
  open(context?: BrowserContext): Promise<ContextPage>;
  close(): Promise<void>;
}

/** The flags the console tests run Debian's chromium with: headless, quiet, nothing phoned home. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Debian's chromium through playwright-core (no browser download). playwright's launch() gives
 * every browser a fresh temporary user-data-dir of its own, removed at close.
 */
export async function launchChromium(executablePath: string): Promise<ConsoleBrowser> {
  const browser = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
  return {
    browser,
    async open(existing) {
      const context = existing ?? (await browser.newContext({ viewport: { width: 1280, height: 900 } }));
      const page = await context.newPage();
      const problems: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(`console.${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
      return { page, problems, context };
    },
    close: () => browser.close(),
  };
}

/** Signs in through the console's form; resolves on the page it lands on. */
export async function signIn(page: Page, url: string, key: string): Promise<void> {
  await page.goto(`${url}/console/sign-in`);
  await page.getByLabel('Admin API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForLoadState('load');
}

/** Full-page screenshot to ARTIFACTS_DIR/<name>.png; returns the path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(ARTIFACTS_DIR, { recursive: true });
  const path = join(ARTIFACTS_DIR, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/**
 * Presses Tab from the top of the page until the focused element matches `selector`; returns
 * how many presses it took (throws after `max`). Proves the control is reachable by keyboard.
 */
export async function tabTo(page: Page, selector: string, max = 200): Promise<number> {
  // Browser-side code as strings: this workspace is type-checked without the DOM library.
  await page.evaluate('document.activeElement?.blur(); window.scrollTo(0, 0)');
  for (let i = 1; i <= max; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(`document.activeElement?.matches(${JSON.stringify(selector)}) ?? false`))
      return i;
  }
  throw new Error(`${selector} was not reached with ${max} Tab presses`);
}

/**
 * Tabs through the whole page from the top and returns the interactive elements (links, buttons,
 * form fields, each described by tag and text) that Tab never focused: [] means every action and
 * link of the page is reachable by keyboard.
 */
export async function unreachableByTab(page: Page, max = 600): Promise<string[]> {
  const total = (await page.evaluate(`(() => {
    const els = [...document.querySelectorAll(
      'a[href], button, input:not([type="hidden"]), select, textarea, summary',
    )].filter((el) => el.offsetParent !== null || el.tagName === 'A');
    for (const [i, el] of els.entries()) el.setAttribute('data-tab-id', String(i));
    document.activeElement?.blur();
    window.scrollTo(0, 0);
    return els.length;
  })()`)) as number;
  const seen = new Set<string>();
  for (let i = 0; i < max && seen.size < total; i++) {
    await page.keyboard.press('Tab');
    const id = (await page.evaluate(`document.activeElement?.getAttribute('data-tab-id') ?? ''`)) as string;
    if (id !== '') {
      if (seen.has(id)) break;
      seen.add(id);
    }
  }
  return (await page.evaluate(`(() => {
    const seen = ${JSON.stringify([...seen])};
    return [...document.querySelectorAll('[data-tab-id]')]
      .filter((el) => !seen.includes(el.getAttribute('data-tab-id')))
      .map((el) => '<' + el.tagName.toLowerCase() + '> ' + (el.textContent ?? '').trim().slice(0, 40));
  })()`)) as string[];
}

/**
 * Opens `url` in a new page of `context` (its cookies) with the browser cache off and sums the
 * compressed bytes of the JavaScript downloaded for it (each script response's Content-Length,
 * brotli as Chromium asks for it). Returns the bytes and the path the page ended on.
 */
export async function javascriptBytes(
  context: BrowserContext,
  url: string,
): Promise<{ bytes: number; path: string }> {
  const page = await context.newPage();
  try {
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    const sizes: Promise<number>[] = [];
    page.on('response', (response) => {
      if (response.request().resourceType() !== 'script') return;
      sizes.push(
        response.allHeaders().then((h) => {
          // The server sends every asset with its length; a script served any other way is a failure here.
          if (
            response.status() !== 200 ||
            h['content-length'] === undefined ||
            h['content-encoding'] === undefined
          )
            throw new Error(`${response.url()}: HTTP ${response.status()}, ${JSON.stringify(h)}`);
          return Number(h['content-length']);
        }),
      );
    });
    await page.goto(url, { waitUntil: 'networkidle' });
    const bytes = (await Promise.all(sizes)).reduce((a, b) => a + b, 0);
    return { bytes, path: new URL(page.url()).pathname };
  } finally {
    await page.close();
  }
}
