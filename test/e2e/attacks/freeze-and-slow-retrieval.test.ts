// TUF attacks whose defences came with issue 16, defects 1–3 (an expired root replaced by the
// chain the server serves; request deadlines and a minimum download rate), through the same
// tampering proxy and device checks as tuf-attacks.test.ts.
import { readFile, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { attackOnce, useAttackLab } from '../../fixtures/attack-target.js';
import { type FleetVm, PRODUCT, runAbota, updateOnce } from '../../fixtures/fleet.js';
import { isPoll, neverAnswer, rewriteOffer, trickleBlob } from '../../fixtures/tampering-proxy.js';

const DAY_MS = 86_400_000;

/** Agent retries kept short: these tests time the agent's own deadlines, not its backoff. */
const QUICK_BACKOFF = { baseDelayMs: 10, maxDelayMs: 10, maxAttempts: 2 };

// Defects 1 and 2 of issue 16: the agent checked its own root's expiry before walking the chain
// (an expired baked root could never be replaced), and the poll answer carried no roots (online
// rotation never reached devices). Before the fix the first refusal was ERR_TRUST_ROOT, before
// the chain was even looked at.
describe('indefinite freeze: an expired trust root is replaced by the newer root the server serves (issue 16 defects 1+2)', () => {
  // Root v1 lives 2 days; the VMs bake it.
  const lab = useAttackLab({
    keysInit: ['--expires', '2d'],
    setup: (fleet) => fleet.buildRelease({ version: '1.0.0', securityVersion: 1 }).then(() => {}),
  });

  it('a device whose baked root expired installs the next release once the server serves the renewed root v2, and refuses while an attacker withholds v2 (ERR_ROOT_EXPIRED)', async () => {
    const { fleet, proxy } = lab;
    const target: FleetVm = await fleet.newVm('expired-root');
    // The root renewed as v2 (same keys, a year's life): only v1's expiry stands between the
    // device and the release, so a refusal can only be about the root.
    await runAbota(['keys', 'rotate', fleet.keysDir, '--expires', '365d', '--json']);
    await fleet.operator(['product', 'set-root', PRODUCT, '--root', fleet.rootPath, '--json']);
    await fleet.buildRelease({ version: '2.0.0', securityVersion: 2 });
    await fleet.push('2.0.0');
    const rollout = () =>
      fleet.server.createRollout(fleet.releaseIds.get('2.0.0')!, { deviceIds: [target.deviceId] });
    // Three days on: v1 (2 days) has expired on the device and the server.
    fleet.clock.offsetMs = 3 * DAY_MS;
    const clock = () => fleet.clock.now();

    // An attacker strips the roots from the offer: the device cannot get past its expired root.
    await rollout();
    proxy.use(
      rewriteOffer((offer) => {
        delete offer['roots'];
      }),
    );
    const withheld = await attackOnce(fleet, target, proxy, { clock });
    expect(withheld.tamperedRequests).toBe(1);
    expect(withheld.code, withheld.message).toBe('ERR_ROOT_EXPIRED');
    expect(withheld.after).toEqual(withheld.before);
    expect(withheld.serverErrorCodes).toContain('ERR_ROOT_EXPIRED');

    // The genuine answer carries root v2: walked from v1 (signatures, not expiry), v2 unexpired.
    await rollout();
    proxy.reset();
    const r = await updateOnce(target.vm, { agent: (vm) => vm.openAgent({ serverUrl: proxy.url, clock }) });
    expect(r.check).toMatchObject({ status: 'installed', version: '2.0.0' });
    expect(r.after).toEqual({ action: 'committed', version: '2.0.0', slot: 'B' });
  });
});

// Defect 3 of issue 16: API calls had no deadline and a blob that trickled was never abandoned
// (the idle timer reset on any byte); before the fix both tests hung until vitest's timeout.
describe('slow retrieval: a hung poll and a trickled download are abandoned (issue 16 defect 3)', () => {
  /** The agent's deadlines, short for the test (defaults: 30 s per request, 1024 B/s over 60 s). */
  const DEADLINES = {
    requestTimeoutSeconds: 1,
    minDownloadBytesPerSecond: 1024,
    slowDownloadWindowSeconds: 2,
  };
  const lab = useAttackLab({
    setup: async (fleet) => {
      await fleet.buildRelease({ version: '1.0.0', securityVersion: 1 });
      await fleet.buildRelease({ version: '2.0.0', securityVersion: 2 });
      await fleet.push('2.0.0');
    },
  });

  /** A VM whose agent config carries DEADLINES (the `server` section of its config file). */
  async function vmWithDeadlines(name: string): Promise<FleetVm> {
    const target = await lab.fleet.newVm(name);
    const path = target.vm.paths.agentConfig;
    const config = JSON.parse(await readFile(path, 'utf8')) as { server: Record<string, unknown> };
    config.server = { ...config.server, ...DEADLINES };
    await writeFile(path, JSON.stringify(config));
    return target;
  }

  it('gives up on a poll the server takes and never answers (ERR_HTTP_TIMEOUT), the device untouched', async () => {
    const { fleet, proxy } = lab;
    const target = await vmWithDeadlines('hung-poll');
    proxy.use(neverAnswer(isPoll));
    const started = performance.now();
    const r = await attackOnce(fleet, target, proxy, { backoff: QUICK_BACKOFF });
    // Two tries of one second each, and the backoff between them.
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(r.code, r.message).toBe('ERR_HTTP_TIMEOUT');
    expect(r.message).toMatch(/poll/);
    expect(r.after).toEqual(r.before);
    expect(proxy.log.filter((e) => isPollPath(e.path) && e.status === undefined)).toHaveLength(2);
  });

  it('abandons a blob trickled at 64 bytes every 2 s, below the minimum rate (ERR_HTTP_TOO_SLOW), the active slot and boot env untouched', async () => {
    const { fleet, proxy } = lab;
    const target = await vmWithDeadlines('trickle');
    await fleet.server.createRollout(fleet.releaseIds.get('2.0.0')!, { deviceIds: [target.deviceId] });
    proxy.use(trickleBlob({ bytesPerTick: 64, tickMs: 2000 }));
    const started = performance.now();
    const r = await attackOnce(fleet, target, proxy, { backoff: QUICK_BACKOFF });
    // Two tries of one 2 s window each, and the backoff between them.
    expect(performance.now() - started).toBeLessThan(15_000);
    expect(r.code, r.message).toBe('ERR_HTTP_TOO_SLOW');
    expect(r.after).toEqual(r.before);
    expect(r.serverErrorCodes).toContain('ERR_HTTP_TOO_SLOW');
    expect((await target.vm.boot()).slot).toBe(r.before.bootedSlot);
  });
});

const isPollPath = (path: string): boolean => path === '/v1/device/poll';
