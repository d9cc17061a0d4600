import { describe, expect, it } from 'vitest';
import { compareVersions, jitteredPollSeconds, selectorMatches } from './policy.js';

const device = { id: 'd1', product: 'p', hardware: 'hw', tags: ['canary', 'eu'], currentVersion: '1.0.0' };
describe('selectorMatches', () => {
  it('matches on product, hardware, all listed tags and explicit device ids', () => {
    expect(selectorMatches({}, 'p', device)).toBe(true);
    expect(selectorMatches({}, 'other', device)).toBe(false);
    expect(selectorMatches({ hardware: ['hw', 'x'] }, 'p', device)).toBe(true);
    expect(selectorMatches({ hardware: ['x'] }, 'p', device)).toBe(false);
    expect(selectorMatches({ tags: ['canary', 'eu'] }, 'p', device)).toBe(true);
    expect(selectorMatches({ tags: ['canary', 'us'] }, 'p', device)).toBe(false);
    expect(selectorMatches({ deviceIds: ['d1'] }, 'p', device)).toBe(true);
    expect(selectorMatches({ deviceIds: ['d2'] }, 'p', device)).toBe(false);
  });
});

describe('compareVersions', () => {
  it('orders by semver precedence including pre-releases', () => {
    expect(compareVersions('1.2.3', '1.2.3')).toBe(0);
    expect(compareVersions('1.10.0', '1.9.0')).toBe(1);
    expect(compareVersions('1.0.0-rc.1', '1.0.0')).toBe(-1);
    expect(compareVersions('1.0.0-alpha.2', '1.0.0-alpha.10')).toBe(-1);
    expect(compareVersions('1.0.0-alpha', '1.0.0-alpha.1')).toBe(-1);
    expect(compareVersions('1.0.0+build.1', '1.0.0')).toBe(0);
    expect(compareVersions('banana', '1.0.0')).toBeUndefined();
  });
});

describe('jitteredPollSeconds', () => {
  it('stays within ±jitter of the base interval', () => {
    expect(jitteredPollSeconds(100, 0.2, () => 0)).toBe(80);
    expect(jitteredPollSeconds(100, 0.2, () => 0.999999)).toBe(120);
    expect(jitteredPollSeconds(100, 0, Math.random)).toBe(100);
  });
});
