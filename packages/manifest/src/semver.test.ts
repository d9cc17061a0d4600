// Strict semver 2.0.0: the order decides replay (same version) and downgrade refusals.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareSemver, isSemver, parseSemver } from './semver.js';

describe('parseSemver', () => {
  it('parses core, pre-release and build parts', () => {
    expect(parseSemver('1.2.3-rc.10+build.7')).toEqual({
      major: 1,
      minor: 2,
      patch: 3,
      prerelease: ['rc', 10],
      build: ['build', '7'],
    });
  });

  it.each([
    'v1.2.3',
    '1.2',
    '01.2.3',
    '1.02.3',
    '1.2.3-01',
    '1.2.3-',
    '1.2.3+',
    '1.2.3-rc..1',
    ' 1.2.3',
    '1.2.3\n',
    '99999999999999999999.0.0',
    `1.0.0-${'a'.repeat(200)}`,
  ])('refuses %j with ERR_VERSION_INVALID', (text) => {
    expect(isSemver(text)).toBe(false);
    expect(() => parseSemver(text)).toThrow(expect.objectContaining({ code: 'ERR_VERSION_INVALID' }));
  });
});

describe('compareSemver', () => {
  it('orders the precedence example of semver §11 strictly ascending', () => {
    const ascending = [
      '1.0.0-alpha',
      '1.0.0-alpha.1',
      '1.0.0-alpha.beta',
      '1.0.0-beta',
      '1.0.0-beta.2',
      '1.0.0-beta.11',
      '1.0.0-rc.1',
      '1.0.0',
      '1.0.1',
      '1.1.0',
      '1.10.0',
      '2.0.0',
    ];
    for (let i = 0; i + 1 < ascending.length; i++) {
      expect(compareSemver(ascending[i]!, ascending[i + 1]!), `${ascending[i]} < ${ascending[i + 1]}`).toBe(
        -1,
      );
      expect(compareSemver(ascending[i + 1]!, ascending[i]!)).toBe(1);
    }
  });

  it('ignores build metadata', () => {
    expect(compareSemver('1.2.3+a', '1.2.3+b')).toBe(0);
  });

  it('is antisymmetric and reflexive (property)', () => {
    const id = fc.oneof(fc.nat({ max: 20 }).map(String), fc.constantFrom('alpha', 'beta', 'rc', 'x-1'));
    const version = fc
      .tuple(fc.nat({ max: 3 }), fc.nat({ max: 3 }), fc.nat({ max: 3 }), fc.array(id, { maxLength: 3 }))
      .map(([a, b, c, pre]) => `${a}.${b}.${c}${pre.length > 0 ? `-${pre.join('.')}` : ''}`);
    fc.assert(
      fc.property(version, version, (a, b) => {
        expect(compareSemver(a, a)).toBe(0);
        expect(compareSemver(a, b)).toBe(-compareSemver(b, a) || 0);
      }),
    );
  });
});
