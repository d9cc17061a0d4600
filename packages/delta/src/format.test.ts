// The header / op table codec and the small format helpers (FORMAT.md).
import { brotliCompressSync, constants as zlibConstants } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { DeltaError } from './errors.js';
import {
  brotliWindowBits,
  type DeltaHeader,
  type DeltaOp,
  decodeMetadata,
  encodeMetadata,
  OP_FLAG_SEGMENT_START,
  OpKind,
  segmentRestartOp,
} from './format.js';

const header: DeltaHeader = {
  version: 1,
  blockSize: 4096,
  source: { sizeBytes: 8 * 4096, sha256: 'aa'.repeat(32), rootHash: 'bb'.repeat(32) },
  target: { sizeBytes: 6 * 4096, sha256: 'cc'.repeat(32), rootHash: '' },
  opCount: 3,
  dataSizeBytes: 10,
};

function op(
  kind: OpKind,
  targetStartBlock: number,
  blockCount: number,
  extra: Partial<DeltaOp> = {},
): DeltaOp {
  return {
    kind,
    flags: 0,
    targetStartBlock,
    blockCount,
    sourceStartBlock: 0,
    dataLength: 0,
    decodedLength: 0,
    dataSha256: new Uint8Array(32),
    ...extra,
  };
}

const ops = [
  op(OpKind.SourceCopy, 0, 2, { sourceStartBlock: 6 }),
  op(OpKind.Patch, 2, 3, {
    flags: OP_FLAG_SEGMENT_START,
    dataLength: 10,
    decodedLength: 50,
    dataSha256: new Uint8Array(32).fill(1),
  }),
  op(OpKind.Zero, 5, 1),
];

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof DeltaError ? err.code : 'not a DeltaError';
  }
  return undefined;
}

describe('delta metadata codec', () => {
  it('round-trips header identities, root hashes and every op field', () => {
    const decoded = decodeMetadata(encodeMetadata(header, ops));
    expect(decoded.header).toEqual(header);
    expect(decoded.ops).toEqual(ops);
    expect(decoded.metadataSizeBytes).toBe(256 + 3 * 64 + 32);
  });

  it('refuses ops that leave a gap, overlap, or copy past the end of the source', () => {
    const gap = [ops[0]!, { ...ops[1]!, targetStartBlock: 3 }, ops[2]!];
    expect(codeOf(() => decodeMetadata(encodeMetadata(header, gap)))).toBe('ERR_DELTA_MALFORMED');
    const pastSource = [{ ...ops[0]!, sourceStartBlock: 7 }, ops[1]!, ops[2]!];
    expect(codeOf(() => decodeMetadata(encodeMetadata(header, pastSource)))).toBe('ERR_DELTA_MALFORMED');
  });

  it('refuses a first data op that does not start a brotli segment, and flags on non-data ops', () => {
    const noStart = [ops[0]!, { ...ops[1]!, flags: 0 }, ops[2]!];
    expect(codeOf(() => decodeMetadata(encodeMetadata(header, noStart)))).toBe('ERR_DELTA_MALFORMED');
    const zeroFlag = [ops[0]!, ops[1]!, { ...ops[2]!, flags: OP_FLAG_SEGMENT_START }];
    expect(codeOf(() => decodeMetadata(encodeMetadata(header, zeroFlag)))).toBe('ERR_DELTA_MALFORMED');
  });

  it('refuses a data op spanning more than the per-op limit', () => {
    const big: DeltaHeader = { ...header, target: { ...header.target, sizeBytes: 1024 * 4096 }, opCount: 1 };
    const one = [op(OpKind.Replace, 0, 1024, { flags: 1, dataLength: 10, decodedLength: 1024 * 4096 })];
    expect(codeOf(() => decodeMetadata(encodeMetadata({ ...big, dataSizeBytes: 10 }, one)))).toBe(
      'ERR_DELTA_TOO_LARGE',
    );
  });
});

describe('brotliWindowBits', () => {
  it('reads the window size every brotli stream declares (RFC 7932 §9.1)', () => {
    for (let lgwin = 10; lgwin <= 24; lgwin++) {
      const stream = brotliCompressSync(Buffer.alloc(100_000, 7), {
        params: { [zlibConstants.BROTLI_PARAM_LGWIN]: lgwin },
      });
      expect(brotliWindowBits(stream)).toBe(lgwin);
    }
  });
});

describe('segmentRestartOp', () => {
  it('restarts at the segment start of the next op, or at the op itself before any segment', () => {
    const seq = [
      op(OpKind.Zero, 0, 1),
      op(OpKind.Patch, 1, 1, { flags: 1 }),
      op(OpKind.SourceCopy, 2, 1),
      op(OpKind.Patch, 3, 1),
      op(OpKind.Replace, 4, 1, { flags: 1 }),
    ];
    expect(segmentRestartOp(seq, 0)).toBe(0);
    expect(segmentRestartOp(seq, 3)).toBe(1);
    expect(segmentRestartOp(seq, 4)).toBe(4);
    expect(segmentRestartOp(seq, 5)).toBe(5);
  });
});
