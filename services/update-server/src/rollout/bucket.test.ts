import { createHash, randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BUCKET_COUNT, bucketLimit, inRolloutPercent, rolloutBucket } from './bucket.js';

const ids = (n: number, prefix = 'dev') => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

describe('rolloutBucket', () => {
  it('is the documented SHA-256(rolloutId ‖ 0x00 ‖ deviceId) first-4-bytes mod 10000', () => {
    const rollout = '0b6f3c1e-8d0a-4c57-9a58-3f7d1b2e4c10';
    const device = '5f2b9c7a-1e3d-4f60-8b21-7c9d0e1f2a3b';
    const digest = createHash('sha256').update(`${rollout}\0${device}`).digest();
    expect(rolloutBucket(rollout, device)).toBe(digest.readUInt32BE(0) % 10_000);
    // Separator matters: moving a character across the boundary changes the input.
    expect(rolloutBucket('ab', 'c')).not.toBe(rolloutBucket('a', 'bc'));
  });

  it('puts each target percentage of 100k device ids within 1 point of the target', () => {
    const rollout = randomUUID();
    const buckets = ids(100_000).map((d) => rolloutBucket(rollout, d));
    for (const percent of [1, 5, 10, 25, 50, 100]) {
      const inside = buckets.filter((b) => b < bucketLimit(percent)).length;
      expect(Math.abs((inside / buckets.length) * 100 - percent)).toBeLessThan(1);
    }
    expect(Math.min(...buckets)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...buckets)).toBeLessThan(BUCKET_COUNT);
  });

  it('only adds devices when the percent grows (monotonic membership)', () => {
    const rollout = randomUUID();
    const devices = ids(4_000);
    let previous = new Set<string>();
    for (const percent of [0.5, 1, 2, 10, 33.33, 50, 99.99, 100]) {
      const now = new Set(devices.filter((d) => inRolloutPercent(rollout, d, percent)));
      for (const d of previous) expect(now.has(d)).toBe(true);
      expect(now.size).toBeGreaterThanOrEqual(previous.size);
      previous = now;
    }
    expect(previous.size).toBe(devices.length);
  });

  it('picks a different canary cohort for each rollout', () => {
    const devices = ids(10_000);
    const a = new Set(devices.filter((d) => inRolloutPercent('rollout-a', d, 10)));
    const b = devices.filter((d) => inRolloutPercent('rollout-b', d, 10));
    const overlap = b.filter((d) => a.has(d)).length;
    // Independent 10 % samples overlap in about 1 % of the fleet, not 10 %.
    expect(overlap).toBeGreaterThan(50);
    expect(overlap).toBeLessThan(200);
  });

  it('maps percent to 0.01 % buckets and clamps out-of-range values', () => {
    expect(bucketLimit(1)).toBe(100);
    expect(bucketLimit(0.5)).toBe(50);
    expect(bucketLimit(100)).toBe(10_000);
    expect(bucketLimit(150)).toBe(10_000);
    expect(bucketLimit(-1)).toBe(0);
  });
});
