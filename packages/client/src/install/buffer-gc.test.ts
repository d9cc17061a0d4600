// Measured with the isolate's ArrayBuffer counter. A full GC first, so that no incremental
// marking is in progress (Buffers allocated during marking survive until the next full GC, which
// is exactly the case a scavenge cannot help with and would make the test flaky).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import {
  bufferCollector,
  collectDeadBuffers,
  SCAVENGE_EVERY_BYTES,
  SCAVENGES_PER_FULL_GC,
} from './buffer-gc.js';

const MIB = 1024 * 1024;

function fullGc(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as (o: { type: 'major' }) => void)({ type: 'major' });
}

const arrayBuffers = (): number => process.memoryUsage().arrayBuffers;

/** The backing stores are swept on a background thread after the scavenge: wait for the count. */
async function settlesBelow(bytes: number): Promise<number> {
  for (let i = 0; i < 50 && arrayBuffers() >= bytes; i++) await new Promise((r) => setTimeout(r, 10));
  return arrayBuffers();
}
// (Other code in the test process holds a MiB or two of its own Buffers: compare freed amounts.)

describe('collecting dead stream Buffers', () => {
  it('frees dropped Buffers right away instead of waiting for V8 to schedule a GC', async () => {
    fullGc();
    const before = arrayBuffers();
    for (let i = 0; i < 8; i++) Buffer.allocUnsafe(MIB).fill(i); // dropped at once
    // Nothing allocates JS heap here, so V8 itself does not collect them.
    const peak = arrayBuffers();
    expect(peak - before).toBeGreaterThan(7 * MIB);
    collectDeadBuffers();
    expect(peak - (await settlesBelow(peak - 6 * MIB))).toBeGreaterThan(6 * MIB);
  });

  it('frees Buffers that a scavenge promoted before they died, with the periodic full collection', async () => {
    fullGc();
    const before = arrayBuffers();
    let inFlight: Buffer[] = Array.from({ length: 8 }, (_, i) => Buffer.allocUnsafe(MIB).fill(i));
    collectDeadBuffers();
    collectDeadBuffers(); // alive through two scavenges: now in the old generation
    expect(inFlight.length).toBe(8);
    inFlight = [];
    collectDeadBuffers();
    await new Promise((r) => setTimeout(r, 100));
    expect(arrayBuffers() - before).toBeGreaterThan(7 * MIB); // a scavenge does not reach them
    const report = bufferCollector();
    for (let i = 0; i < SCAVENGES_PER_FULL_GC - 1; i++) report(SCAVENGE_EVERY_BYTES);
    await new Promise((r) => setTimeout(r, 50));
    expect(arrayBuffers() - before).toBeGreaterThan(7 * MIB);
    report(SCAVENGE_EVERY_BYTES); // the 32nd: a full collection
    expect(await settlesBelow(before + 2 * MIB)).toBeLessThan(before + 2 * MIB);
  });
});
