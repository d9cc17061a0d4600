import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { VerityError } from './errors.js';
import type { VerityParams } from './params.js';
import { parseSuperblock, serializeSuperblock } from './superblock.js';

// docs/formats.md §1.2 worked example: 129 blocks, salt 00..1f, the UUID below, defaults otherwise.
const S0 = Uint8Array.from({ length: 32 }, (_, i) => i);
const example: VerityParams = {
  hashType: 1,
  algorithm: 'sha256',
  dataBlockSize: 4096,
  hashBlockSize: 4096,
  dataBlocks: 129,
  salt: S0,
  hashOffset: 0,
  superblock: true,
  uuid: '12345678-1234-5678-9abc-def012345678',
};

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof VerityError ? err.code : String(err);
  }
}

describe('superblock (docs/formats.md §1.2)', () => {
  it('serializes the worked example byte for byte', () => {
    const hex = Buffer.from(serializeSuperblock(example)).toString('hex');
    expect(hex.slice(0, 0x80 * 2)).toBe(
      '76657269747900000100000001000000' +
        '12345678123456789abcdef012345678' +
        '73686132353600000000000000000000' +
        '00000000000000000000000000000000' +
        '00100000001000008100000000000000' +
        '20000000000000000001020304050607' +
        '08090a0b0c0d0e0f1011121314151617' +
        '18191a1b1c1d1e1f0000000000000000',
    );
    expect(hex.slice(0x80 * 2)).toMatch(/^0+$/);
  });

  it('parses what it serializes for any valid parameters', () => {
    fc.assert(
      fc.property(
        fc.record({
          hashType: fc.constantFrom<0 | 1>(0, 1),
          algorithm: fc.constantFrom('sha1', 'sha256', 'sha512'),
          dataBlockSize: fc.integer({ min: 9, max: 19 }).map((e) => 2 ** e),
          hashBlockSize: fc.integer({ min: 9, max: 19 }).map((e) => 2 ** e),
          dataBlocks: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
          salt: fc.uint8Array({ maxLength: 256 }),
          uuid: fc.uuid(),
        }),
        (p) => {
          const parsed = parseSuperblock(serializeSuperblock({ ...p, hashOffset: 0, superblock: true }));
          expect(parsed).toEqual({ ...p, salt: new Uint8Array(p.salt) });
        },
      ),
    );
  });

  it('accepts an upper-case algorithm name and garbage in the padding, as cryptsetup does', () => {
    const sb = Buffer.from(serializeSuperblock(example));
    sb.write('SHA256', 32, 'latin1');
    sb.fill(0xee, 82, 88);
    sb.fill(0xee, 344, 512);
    expect(parseSuperblock(sb).algorithm).toBe('sha256');
  });

  it('rejects a wrong magic, version, hash type, block size, algorithm or salt size with a specific code', () => {
    const mutate = (f: (b: Buffer) => void): Buffer => {
      const b = Buffer.from(serializeSuperblock(example));
      f(b);
      return b;
    };
    expect(codeOf(() => parseSuperblock(mutate((b) => b.write('VERITY', 0, 'latin1'))))).toBe(
      'ERR_VERITY_BAD_SUPERBLOCK',
    );
    expect(codeOf(() => parseSuperblock(mutate((b) => b.writeUInt32LE(2, 8))))).toBe(
      'ERR_VERITY_UNSUPPORTED_VERSION',
    );
    expect(codeOf(() => parseSuperblock(mutate((b) => b.writeUInt32LE(2, 12))))).toBe(
      'ERR_VERITY_BAD_SUPERBLOCK',
    );
    expect(codeOf(() => parseSuperblock(mutate((b) => b.writeUInt32LE(1000, 64))))).toBe(
      'ERR_VERITY_INVALID_BLOCK_SIZE',
    );
    expect(codeOf(() => parseSuperblock(mutate((b) => b.write('md5\0\0\0', 32, 'latin1'))))).toBe(
      'ERR_VERITY_UNKNOWN_ALGORITHM',
    );
    expect(codeOf(() => parseSuperblock(mutate((b) => b.writeUInt16LE(257, 80))))).toBe(
      'ERR_VERITY_BAD_SUPERBLOCK',
    );
    expect(codeOf(() => parseSuperblock(new Uint8Array(100)))).toBe('ERR_VERITY_BAD_SUPERBLOCK');
  });
});
