// The poll response's `deltas`: each entry checked on its own; a bad one is dropped with a
// warning and never fails the poll (the install then uses the full artifact).
import { describe, expect, it } from 'vitest';
import { MAX_DELTA_OFFERS, parseDeltaOffers } from './server-api.js';

const BASE = 'https://updates.example.com';
const good = {
  image: 'rootfs',
  digest: `sha256:${'a'.repeat(64)}`,
  sizeBytes: 1234,
  url: `/v1/device/blobs/sha256/${'a'.repeat(64)}`,
  sourceVersion: '1.0.0',
  sourceRootHash: 'bc'.repeat(32),
};

function parse(raw: unknown) {
  const warnings: string[] = [];
  return { offers: parseDeltaOffers(raw, BASE, (m) => warnings.push(m)), warnings };
}

describe('parseDeltaOffers', () => {
  it('keeps valid entries (unknown extra fields dropped)', () => {
    const { offers, warnings } = parse([
      { ...good, extra: 1 },
      { ...good, image: 'boot', url: 'https://cdn.example.com/x' },
    ]);
    expect(offers).toEqual([good, { ...good, image: 'boot', url: 'https://cdn.example.com/x' }]);
    expect(warnings).toEqual([]);
    expect(parse(undefined).offers).toEqual([]);
  });

  const bad: [string, Record<string, unknown>, string][] = [
    ['unknown image', { image: 'efi' }, 'image'],
    ['digest of another algorithm', { digest: `sha512:${'a'.repeat(128)}` }, 'digest'],
    ['upper-case digest', { digest: `sha256:${'A'.repeat(64)}` }, 'digest'],
    ['negative size', { sizeBytes: -1 }, 'sizeBytes'],
    ['fractional size', { sizeBytes: 1.5 }, 'sizeBytes'],
    ['size beyond 2^53', { sizeBytes: 2 ** 60 }, 'sizeBytes'],
    ['root hash not hex', { sourceRootHash: 'zz'.repeat(32) }, 'sourceRootHash'],
    ['root hash too short', { sourceRootHash: 'ab' }, 'sourceRootHash'],
    ['URL of another scheme', { url: 'file:///etc/passwd' }, 'url'],
    ['URL too long', { url: `/${'x'.repeat(9000)}` }, 'url'],
    ['missing sourceVersion', { sourceVersion: undefined }, 'sourceVersion'],
  ];
  for (const [name, patch, field] of bad) {
    it(`${name} → that entry ignored with a warning naming ${field}; the others kept`, () => {
      const { offers, warnings } = parse([
        { ...good, ...patch },
        { ...good, image: 'boot' },
      ]);
      expect(offers).toEqual([{ ...good, image: 'boot' }]);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain('delta offer 0 ignored');
      expect(warnings[0]).toContain(field);
    });
  }

  it('an entry that is not an object, and a second delta from the same source, are ignored', () => {
    const { offers, warnings } = parse(['x', good, { ...good, digest: `sha256:${'b'.repeat(64)}` }]);
    expect(offers).toEqual([good]);
    expect(warnings).toHaveLength(2);
  });

  it('a `deltas` that is not a list → no deltas, one warning', () => {
    expect(parse({ 0: good })).toEqual({ offers: [], warnings: [expect.stringContaining('not a list')] });
  });

  it(`more than ${MAX_DELTA_OFFERS} offers → none used, one warning`, () => {
    const { offers, warnings } = parse(Array.from({ length: MAX_DELTA_OFFERS + 1 }, () => good));
    expect(offers).toEqual([]);
    expect(warnings).toHaveLength(1);
  });
});
