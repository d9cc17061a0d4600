import { describe, expect, it } from 'vitest';
import type { MaintenanceWindow } from './model.js';
import { parseVersionConstraint, selectorPicks, selectorSpecificity, versionSatisfies } from './selector.js';
import { validateWindow, windowOpen } from './window.js';

const device = {
  id: 'd1',
  product: 'p',
  hardware: 'hw',
  tags: ['canary', 'group:eu-west', 'ring=1'],
  currentVersion: '1.1.0',
};

describe('selectorPicks', () => {
  it('requires every tag, any group (as group:<name> tags), any hardware and any listed device id', () => {
    expect(selectorPicks({}, 'p', device)).toBe(true);
    expect(selectorPicks({}, 'q', device)).toBe(false);
    expect(selectorPicks({ tags: ['canary', 'ring=1'] }, 'p', device)).toBe(true);
    expect(selectorPicks({ tags: ['canary', 'ring=2'] }, 'p', device)).toBe(false);
    expect(selectorPicks({ groups: ['us-east', 'eu-west'] }, 'p', device)).toBe(true);
    expect(selectorPicks({ groups: ['us-east'] }, 'p', device)).toBe(false);
    // A plain tag that happens to equal the group name is not group membership.
    expect(selectorPicks({ groups: ['canary'] }, 'p', device)).toBe(false);
    expect(selectorPicks({ hardware: ['x', 'hw'] }, 'p', device)).toBe(true);
    expect(selectorPicks({ hardware: ['x'] }, 'p', device)).toBe(false);
    expect(selectorPicks({ deviceIds: ['d0', 'd1'] }, 'p', device)).toBe(true);
    expect(selectorPicks({ deviceIds: ['d0'] }, 'p', device)).toBe(false);
    expect(selectorPicks({ tags: ['canary'], groups: ['eu-west'], hardware: ['x'] }, 'p', device)).toBe(
      false,
    );
  });

  it('applies the running-version constraint and refuses devices whose version is unknown', () => {
    expect(selectorPicks({ currentVersion: '>=1.0.0 <1.2.0' }, 'p', device)).toBe(true);
    expect(selectorPicks({ currentVersion: '<1.1.0' }, 'p', device)).toBe(false);
    expect(selectorPicks({ currentVersion: '=1.1.0' }, 'p', device)).toBe(true);
    expect(selectorPicks({ currentVersion: '1.1.0' }, 'p', device)).toBe(true);
    expect(selectorPicks({ currentVersion: '!=1.1.0' }, 'p', device)).toBe(false);
    expect(selectorPicks({ currentVersion: '>=1.0.0' }, 'p', { ...device, currentVersion: null })).toBe(
      false,
    );
    // A corrupt stored constraint selects nobody instead of everybody.
    expect(selectorPicks({ currentVersion: 'about 1.0' }, 'p', device)).toBe(false);
  });

  it('selects members of an earlier rollout only (rollback targeting)', () => {
    expect(selectorPicks({ fromRollout: 'r1' }, 'p', device)).toBe(false);
    expect(selectorPicks({ fromRollout: 'r1' }, 'p', { ...device, memberOf: new Set(['r1']) })).toBe(true);
    expect(selectorPicks({ fromRollout: 'r1' }, 'p', { ...device, memberOf: new Set(['r2']) })).toBe(false);
  });

  it('ranks specificity: device ids > groups > tags > everything else', () => {
    expect(selectorSpecificity({ deviceIds: ['d1'], tags: ['x'] })).toBe(3);
    expect(selectorSpecificity({ groups: ['g'] })).toBe(2);
    expect(selectorSpecificity({ tags: ['x'] })).toBe(1);
    expect(selectorSpecificity({ hardware: ['hw'], deviceIds: [] })).toBe(0);
  });
});

describe('version constraints', () => {
  it('parses clauses and names the bad one', () => {
    expect(parseVersionConstraint(' >=1.0.0   <2.0.0-rc.1 ')).toEqual([
      { op: '>=', version: '1.0.0' },
      { op: '<', version: '2.0.0-rc.1' },
    ]);
    expect(parseVersionConstraint('>=1.0')).toMatch(/clause ">=1.0" is not <op><semver>/);
    expect(parseVersionConstraint('  ')).toMatch(/empty/);
  });

  it('orders pre-releases below their release (semver §11)', () => {
    const below2 = parseVersionConstraint('<2.0.0');
    if (typeof below2 === 'string') throw new Error(below2);
    expect(versionSatisfies('2.0.0-rc.1', below2)).toBe(true);
    expect(versionSatisfies('2.0.0', below2)).toBe(false);
  });
});

describe('maintenance windows', () => {
  const at = (iso: string) => new Date(iso);
  const night: MaintenanceWindow = { timezone: 'utc', start: '22:00', end: '04:00' };

  it('opens inside a UTC window that crosses midnight and stays shut outside it', () => {
    expect(windowOpen(night, at('2026-11-25T23:30:00Z'), undefined)).toBe(true);
    expect(windowOpen(night, at('2026-11-26T03:59:00Z'), undefined)).toBe(true);
    expect(windowOpen(night, at('2026-11-26T04:00:00Z'), undefined)).toBe(false);
    expect(windowOpen(night, at('2026-11-25T12:00:00Z'), undefined)).toBe(false);
    expect(windowOpen(undefined, at('2026-11-25T12:00:00Z'), undefined)).toBe(true);
  });

  it('uses the device time zone for device-local windows, and UTC when the zone is unknown', () => {
    const local: MaintenanceWindow = { timezone: 'device-local', start: '02:00', end: '04:00' };
    // 01:30 UTC is 02:30 in Berlin (CET, UTC+1 in November) but 20:30 the day before in New York.
    const now = at('2026-11-25T01:30:00Z');
    expect(windowOpen(local, now, 'Europe/Berlin')).toBe(true);
    expect(windowOpen(local, now, 'America/New_York')).toBe(false);
    expect(windowOpen(local, now, 'Not/AZone')).toBe(false);
    expect(windowOpen(local, at('2026-11-25T02:30:00Z'), 'Not/AZone')).toBe(true);
  });

  it('honours weekdays, counting the after-midnight part to the day the window opened', () => {
    // 2026-11-28 is a Saturday (6); its night window runs into Sunday morning.
    const saturdayNight: MaintenanceWindow = { ...night, days: [6] };
    expect(windowOpen(saturdayNight, at('2026-11-28T23:00:00Z'), undefined)).toBe(true);
    expect(windowOpen(saturdayNight, at('2026-11-29T01:00:00Z'), undefined)).toBe(true);
    expect(windowOpen(saturdayNight, at('2026-11-29T23:00:00Z'), undefined)).toBe(false);
  });

  it('validates times and days with messages naming the field', () => {
    expect(validateWindow(night)).toBeUndefined();
    expect(validateWindow({ ...night, start: '24:00' })).toMatch(/maintenanceWindow.start must be "HH:MM"/);
    expect(validateWindow({ ...night, end: '22:00' })).toMatch(/never open/);
    expect(validateWindow({ ...night, days: [7] })).toMatch(/days holds 7/);
  });
});
