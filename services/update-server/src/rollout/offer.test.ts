import { describe, expect, it } from 'vitest';
import { inRolloutPercent } from './bucket.js';
import { chooseOffer, type OfferCandidate, offerBasis } from './offer.js';

const now = new Date('2026-11-25T12:00:00Z');
const device = {
  id: 'dev-1',
  product: 'p',
  hardware: 'hw',
  tags: ['canary', 'group:g1'],
  currentVersion: '1.0.0',
};
const candidate = (o: Partial<OfferCandidate> = {}): OfferCandidate => ({
  rolloutId: 'r',
  kind: 'normal',
  state: 'active',
  product: 'p',
  selector: {},
  allowDowngrade: false,
  releaseVersion: '2.0.0',
  releaseCompatible: ['hw'],
  stages: [{ percent: 100 }],
  currentStage: 0,
  startedAt: new Date('2026-11-25T10:00:00Z'),
  maintenanceWindow: null,
  ...o,
});
const none = new Map<string, string>();

describe('offerBasis', () => {
  it('offers only to devices whose bucket is inside the current stage percent', () => {
    const devices = Array.from({ length: 2000 }, (_, i) => ({ ...device, id: `dev-${i}` }));
    const c = candidate({ stages: [{ percent: 10 }, { percent: 100 }] });
    for (const d of devices)
      expect(offerBasis(c, d, none, now) === 'new').toBe(inRolloutPercent('r', d.id, 10));
    const offered = devices.filter((d) => offerBasis(c, d, none, now) !== undefined).length;
    expect(offered).toBeGreaterThan(140);
    expect(offered).toBeLessThan(260);
    expect(devices.every((d) => offerBasis({ ...c, currentStage: 1 }, d, none, now) === 'new')).toBe(true);
  });

  it('offers nothing for draft, completed or aborted rollouts, and only started installs while paused', () => {
    expect(offerBasis(candidate({ state: 'draft' }), device, none, now)).toBeUndefined();
    expect(offerBasis(candidate({ state: 'completed' }), device, none, now)).toBeUndefined();
    expect(
      offerBasis(candidate({ state: 'aborted' }), device, new Map([['r', 'installing']]), now),
    ).toBeUndefined();
    const paused = candidate({ state: 'paused' });
    expect(offerBasis(paused, device, none, now)).toBeUndefined();
    expect(offerBasis(paused, device, new Map([['r', 'offered']]), now)).toBeUndefined();
    expect(offerBasis(paused, device, new Map([['r', 'downloading']]), now)).toBe('continue');
  });

  it('never re-offers after an outcome, the running version, or a downgrade unless allowed', () => {
    for (const s of ['committed', 'failed', 'rolled-back'])
      expect(offerBasis(candidate(), device, new Map([['r', s]]), now)).toBeUndefined();
    expect(offerBasis(candidate(), { ...device, currentVersion: '2.0.0' }, none, now)).toBeUndefined();
    expect(offerBasis(candidate(), { ...device, currentVersion: '3.0.0' }, none, now)).toBeUndefined();
    expect(
      offerBasis(candidate({ allowDowngrade: true }), { ...device, currentVersion: '3.0.0' }, none, now),
    ).toBe('new');
    expect(offerBasis(candidate({ releaseCompatible: ['other'] }), device, none, now)).toBeUndefined();
  });

  it('holds new offers outside the maintenance window or at the concurrency cap, but not already-offered devices', () => {
    const shut = candidate({ maintenanceWindow: { timezone: 'utc', start: '01:00', end: '03:00' } });
    expect(offerBasis(shut, device, none, now)).toBeUndefined();
    expect(offerBasis(shut, device, new Map([['r', 'offered']]), now)).toBe('new');
    expect(offerBasis(shut, device, none, new Date('2026-11-25T02:00:00Z'))).toBe('new');
    const capped = candidate({ stages: [{ percent: 100, maxConcurrent: 5 }], inFlight: 5 });
    expect(offerBasis(capped, device, none, now)).toBeUndefined();
    expect(offerBasis(capped, device, new Map([['r', 'offered']]), now)).toBe('new');
    expect(offerBasis({ ...capped, inFlight: 4 }, device, none, now)).toBe('new');
  });
});

describe('chooseOffer precedence', () => {
  const older = new Date('2026-11-24T00:00:00Z');
  const newer = new Date('2026-11-25T00:00:00Z');

  it('prefers explicit device ids over groups over tags over broad selectors, whatever the start order', () => {
    const broad = candidate({ rolloutId: 'broad', startedAt: newer });
    const tags = candidate({ rolloutId: 'tags', selector: { tags: ['canary'] }, startedAt: older });
    const groups = candidate({ rolloutId: 'groups', selector: { groups: ['g1'] }, startedAt: older });
    const ids = candidate({ rolloutId: 'ids', selector: { deviceIds: ['dev-1'] }, startedAt: older });
    expect(chooseOffer(device, [broad, tags, groups, ids], none, now)?.candidate.rolloutId).toBe('ids');
    expect(chooseOffer(device, [broad, tags, groups], none, now)?.candidate.rolloutId).toBe('groups');
    expect(chooseOffer(device, [broad, tags], none, now)?.candidate.rolloutId).toBe('tags');
  });

  it('prefers the newest started rollout among equally specific ones, then the lowest id', () => {
    const a = candidate({ rolloutId: 'a', startedAt: older });
    const b = candidate({ rolloutId: 'b', startedAt: newer });
    expect(chooseOffer(device, [a, b], none, now)?.candidate.rolloutId).toBe('b');
    expect(chooseOffer(device, [b, a], none, now)?.candidate.rolloutId).toBe('b');
    const c = candidate({ rolloutId: 'c', startedAt: newer });
    expect(chooseOffer(device, [c, b], none, now)?.candidate.rolloutId).toBe('b');
  });

  it('lets a rollback beat everything, and a started install beat a newer or more specific rollout', () => {
    const running = candidate({ rolloutId: 'running', startedAt: older });
    const specific = candidate({
      rolloutId: 'specific',
      selector: { deviceIds: ['dev-1'] },
      startedAt: newer,
    });
    const progress = new Map([['running', 'installing']]);
    expect(chooseOffer(device, [specific, running], progress, now)).toEqual({
      candidate: running,
      basis: 'continue',
    });
    const rollback = candidate({
      rolloutId: 'rollback',
      kind: 'rollback',
      releaseVersion: '0.9.0',
      allowDowngrade: true,
      startedAt: older,
    });
    expect(chooseOffer(device, [specific, running, rollback], progress, now)?.candidate.rolloutId).toBe(
      'rollback',
    );
  });

  it('falls through to the next rollout when the preferred one does not offer to this device', () => {
    const outside = candidate({
      rolloutId: 'canary',
      selector: { deviceIds: ['dev-1'] },
      stages: [{ percent: 0.01 }],
    });
    const general = candidate({ rolloutId: 'general', startedAt: older });
    const chosen = chooseOffer(device, [outside, general], none, now)?.candidate.rolloutId;
    expect(chosen).toBe(inRolloutPercent('canary', 'dev-1', 0.01) ? 'canary' : 'general');
    expect(chooseOffer(device, [], none, now)).toBeUndefined();
  });
});
