// Apply behaviour beyond the round trip: resuming from a checkpoint with a Range-style restart,
// refusing the wrong source, lying payloads whose digests were recomputed, and hostile limits.
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTempDir } from '@abota/testkit';
import { describe, expect, it } from 'vitest';
import {
  applyDelta,
  type DeltaCheckpoint,
  DeltaError,
  decodeMetadata,
  HEADER_SIZE_BYTES,
  OpKind,
  openSourceFile,
  openTargetFile,
} from '../src/index.js';
import { encodeMetadata } from '../src/format.js';
import { applyBytes, chunked, digestVerifier, makeDelta } from './support.js';

const BLOCK = 4096;

/** A 2 MiB source and a target with several changed regions, so the delta has many ops. */
function pair(): { source: Buffer; target: Buffer } {
  const source = randomBytes(512 * BLOCK);
  const target = Buffer.from(source);
  for (let i = 0; i < 10; i++) randomBytes(30_000).copy(target, 20_000 + i * 200_000);
  target.fill(0, 1_000_000, 1_100_000);
  return { source, target };
}

async function errorOf(p: Promise<unknown>): Promise<DeltaError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DeltaError);
  return err as DeltaError;
}

describe('applyDelta', () => {
  it('resumes from a checkpoint after the download broke off and produces the exact target', async () => {
    await withTempDir(async (dir) => {
      const { source, target } = pair();
      // Small ops and segments are what make mid-payload checkpoints possible to test.
      const { delta, sourcePath } = await makeDelta(dir, source, target, { maxOpTargetBytes: 16 * 1024 });
      const { ops } = decodeMetadata(delta);
      expect(ops.filter((o) => o.dataLength > 0).length).toBeGreaterThan(4);
      const outPath = join(dir, 'out.img');
      const verifier = digestVerifier(target, BLOCK);
      let checkpoint: DeltaCheckpoint | undefined;
      const cut = Math.floor(delta.length * 0.6);
      // First attempt: the connection drops at 60 % of the payload.
      {
        const src = await openSourceFile(sourcePath);
        const tgt = await openTargetFile(outPath, target.length);
        const err = await errorOf(
          applyDelta({
            payload: chunked(delta.subarray(0, cut)),
            source: src,
            target: tgt,
            verifier,
            onCheckpoint: (cp) => {
              checkpoint = cp;
            },
          }),
        );
        expect(err.code).toBe('ERR_DELTA_TRUNCATED');
        expect(err.progress?.opsApplied).toBeGreaterThan(0);
        await src.close();
        await tgt.close();
      }
      expect(checkpoint).toBeDefined();
      const cp = checkpoint!;
      expect(cp.payloadOffset).toBeLessThanOrEqual(cut);
      // Second attempt: metadata re-fetched (Range 0-), data from the checkpoint (Range payloadOffset-).
      const src = await openSourceFile(sourcePath);
      const fh = await import('node:fs/promises').then((m) => m.open(outPath, 'r+'));
      const tgt = {
        async write(offset: number, data: Uint8Array) {
          await fh.write(data, 0, data.length, offset);
        },
      };
      const result = await applyDelta({
        payload: chunked(delta.subarray(cp.payloadOffset)),
        source: src,
        target: tgt,
        verifier,
        resume: { checkpoint: cp, metadata: delta.subarray(0, cp.metadataSizeBytes) },
      });
      await src.close();
      await fh.close();
      expect(result.targetSha256Checked).toBe(false);
      expect((await readFile(outPath)).equals(target)).toBe(true);
    });
  });

  it('copies from the whole source, including its short last cache page, after the page cache recycled', async () => {
    await withTempDir(async (dir) => {
      // 301 blocks: the source does not end on a cache page boundary, and a target made of
      // shuffled 1000-byte pieces of it copies from everywhere, so pages are recycled.
      const source = randomBytes(301 * BLOCK);
      const pieces: Buffer[] = [];
      for (let p = 0; p + 1000 <= source.length; p += 1000) pieces.push(source.subarray(p, p + 1000));
      pieces.push(source.subarray(source.length - 1000));
      for (let i = pieces.length - 1; i > 0; i--) {
        const j = (i * 7919) % (i + 1);
        [pieces[i], pieces[j]] = [pieces[j]!, pieces[i]!];
      }
      const target = Buffer.alloc(301 * BLOCK);
      Buffer.concat(pieces).copy(target);
      const { delta, sourcePath } = await makeDelta(dir, source, target);
      const { output } = await applyBytes(
        dir,
        sourcePath,
        delta,
        digestVerifier(target, BLOCK),
        target.length,
      );
      expect(Buffer.from(output).equals(target)).toBe(true);
    });
  });

  it('refuses a checkpoint that belongs to another payload', async () => {
    await withTempDir(async (dir) => {
      const { source, target } = pair();
      const { delta, sourcePath } = await makeDelta(dir, source, target);
      const { metadataSizeBytes } = decodeMetadata(delta);
      const checkpoint: DeltaCheckpoint = {
        nextOp: 1,
        payloadOffset: metadataSizeBytes + 1,
        metadataSizeBytes,
        metadataSha256: '00'.repeat(32),
      };
      const err = await errorOf(
        applyBytes(
          dir,
          sourcePath,
          delta.subarray(checkpoint.payloadOffset),
          digestVerifier(target, BLOCK),
          target.length,
          {
            resume: { checkpoint, metadata: delta.subarray(0, metadataSizeBytes) },
          },
        ),
      );
      expect(err.code).toBe('ERR_DELTA_CHECKPOINT_INVALID');
    });
  });

  it('refuses a source of another size before writing anything', async () => {
    await withTempDir(async (dir) => {
      const { source, target } = pair();
      const { delta } = await makeDelta(dir, source, target);
      const other = join(dir, 'other.img');
      await writeFile(other, source.subarray(0, source.length - BLOCK));
      const err = await errorOf(applyBytes(dir, other, delta, digestVerifier(target, BLOCK), target.length));
      expect(err.code).toBe('ERR_DELTA_WRONG_SOURCE');
      expect(err.progress).toEqual({ opsApplied: 0, blocksWritten: 0 });
    });
  });

  it('catches a lying payload (consistent digests, wrong content) at the block verifier', async () => {
    await withTempDir(async (dir) => {
      const { source, target } = pair();
      const { delta, sourcePath } = await makeDelta(dir, source, target);
      const { header, ops, metadataSizeBytes } = decodeMetadata(delta);
      // Rewrite the first SOURCE_COPY op to copy other source blocks, and re-hash the metadata:
      // every digest in the payload is now self-consistent, only the content is wrong.
      const victim = ops.find(
        (o) => o.kind === OpKind.SourceCopy && o.sourceStartBlock + o.blockCount + 1 <= 512,
      );
      expect(victim).toBeDefined();
      victim!.sourceStartBlock += 1;
      const forged = Buffer.concat([encodeMetadata(header, ops), delta.subarray(metadataSizeBytes)]);
      const err = await errorOf(
        applyBytes(dir, sourcePath, forged, digestVerifier(target, BLOCK), target.length),
      );
      expect(err.code).toBe('ERR_DELTA_TARGET_VERIFICATION');
      expect(err.message).toContain(`target block ${victim!.targetStartBlock}`);
      expect(err.progress?.blocksWritten).toBe(victim!.targetStartBlock);
    });
  });

  it('refuses an op table claiming more ops than the limit before reading further', async () => {
    const header = Buffer.alloc(HEADER_SIZE_BYTES);
    header.write('ABOTADLT', 0, 'latin1');
    header.writeUInt32LE(1, 8);
    header.writeUInt32LE(4096, 12);
    header.writeBigUInt64LE(4096n * 1_000_000n, 16);
    header.writeBigUInt64LE(4096n * 1_000_000n, 24);
    header.writeUInt32LE(1_000_000, 228);
    const err = await errorOf(
      applyDelta({
        payload: chunked(header),
        source: { sizeBytes: 4096 * 1_000_000, read: async () => {} },
        target: { write: async () => {} },
        verifier: { assertBlock() {} },
      }),
    );
    expect(err.code).toBe('ERR_DELTA_TOO_LARGE');
  });

  it('refuses a payload that is not a delta with ERR_DELTA_MAGIC', async () => {
    const err = await errorOf(
      applyDelta({
        payload: chunked(randomBytes(4096)),
        source: { sizeBytes: 0, read: async () => {} },
        target: { write: async () => {} },
        verifier: { assertBlock() {} },
      }),
    );
    expect(err.code).toBe('ERR_DELTA_MAGIC');
  });

  it('stops a decompression bomb at the op table decoded length', async () => {
    await withTempDir(async (dir) => {
      const { source, target } = pair();
      const { delta, sourcePath } = await makeDelta(dir, source, target);
      const { header, ops, metadataSizeBytes } = decodeMetadata(delta);
      // Claim a smaller decoded length for the first data op, with consistent digests.
      const first = ops.find((o) => o.dataLength > 0)!;
      first.decodedLength = Math.floor(first.decodedLength / 2);
      if (first.kind === OpKind.Replace) first.kind = OpKind.Patch;
      const forged = Buffer.concat([encodeMetadata(header, ops), delta.subarray(metadataSizeBytes)]);
      const err = await errorOf(
        applyBytes(dir, sourcePath, forged, digestVerifier(target, BLOCK), target.length),
      );
      expect(err.code).toBe('ERR_DELTA_OP_INVALID');
      expect(err.message).toMatch(/decodes to more than/);
    });
  });
});
