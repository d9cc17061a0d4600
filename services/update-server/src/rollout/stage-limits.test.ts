import { describe, expect, it } from 'vitest';
import { bucketLimit } from './bucket.js';
import { stageBucketLimits } from './stage-limits.js';

describe('stageBucketLimits', () => {
  it('widens a 1 % stage of a 3-device fleet to its lowest-bucket device (minDevices defaults to 1)', () => {
    const buckets = [7000, 4200, 9100];
    expect(stageBucketLimits([{ percent: 1 }, { percent: 100 }], buckets)).toEqual([4201, 10_000]);
  });

  it('keeps the percent when it already reaches minDevices devices', () => {
    expect(stageBucketLimits([{ percent: 50, minDevices: 2 }], [10, 20, 4000, 9000])).toEqual([
      bucketLimit(50),
    ]);
  });

  it('reaches minDevices devices, or all of them when there are fewer', () => {
    expect(stageBucketLimits([{ percent: 1, minDevices: 2 }], [500, 300, 9000])).toEqual([501]);
    expect(stageBucketLimits([{ percent: 1, minDevices: 5 }], [500, 300])).toEqual([501]);
  });

  it('minDevices 0 means the percent alone, and later stages never reach less than earlier ones', () => {
    expect(stageBucketLimits([{ percent: 1, minDevices: 0 }], [500])).toEqual([100]);
    expect(stageBucketLimits([{ percent: 1, minDevices: 3 }, { percent: 2 }], [10, 20, 8000])).toEqual([
      8001, 8001,
    ]);
  });
});
