import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  freezeWarning,
  noteValidOffer,
  OFFER_FRESHNESS_FILE,
  readOfferFreshness,
  startOfferClock,
} from './offer-freshness.js';

const DAY_MS = 86_400_000;
const t0 = new Date('2026-01-01T00:00:00.000Z');
const at = (days: number) => new Date(t0.getTime() + days * DAY_MS);

describe('offer freshness (withheld updates)', () => {
  it('starts the clock once, warns after the configured days without a valid offer, and a valid offer resets it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'abota-fresh-'));
    expect(await readOfferFreshness(dir)).toBeUndefined();
    expect(freezeWarning(undefined, at(400), 30)).toBeUndefined();

    await startOfferClock(dir, t0);
    // A second start keeps the first date: restarting the agent must not reset the clock.
    const f = await startOfferClock(dir, at(10));
    expect(f).toEqual({ since: t0.toISOString() });
    expect(freezeWarning(f, at(29.9), 30)).toBeUndefined();
    const w = freezeWarning(f, at(30), 30);
    expect(w?.days).toBe(30);
    expect(w?.message).toMatch(/^no valid offer for 30 days \(none since the agent first ran on 2026-01-01/);
    expect(freezeWarning(f, at(3000), 0)).toBeUndefined();

    await noteValidOffer(dir, '1.2.0', at(31));
    const g = await readOfferFreshness(dir);
    expect(g).toEqual({
      since: t0.toISOString(),
      lastValidOffer: { version: '1.2.0', at: at(31).toISOString() },
    });
    expect(freezeWarning(g, at(60), 30)).toBeUndefined();
    expect(freezeWarning(g, at(75), 30)?.message).toMatch(
      /^no valid offer for 44 days \(the last was 1\.2\.0 on /,
    );
  });

  it('replaces a damaged record instead of failing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'abota-fresh-'));
    await writeFile(join(dir, OFFER_FRESHNESS_FILE), '{"since": 12');
    expect(await readOfferFreshness(dir)).toBeUndefined();
    await startOfferClock(dir, t0);
    expect(JSON.parse(await readFile(join(dir, OFFER_FRESHNESS_FILE), 'utf8'))).toEqual({
      since: t0.toISOString(),
    });
  });
});
