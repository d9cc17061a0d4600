// How far each stage of a rollout reaches in bucket space (bucket.ts) once its minimum in devices
// is applied: a 1 % stage of a 3-device fleet covers no device at all by percent alone, so each
// stage is widened to the buckets of its `minDevices` lowest-bucket selected devices. Widening
// only ever adds buckets and later stages never reach less than earlier ones, so membership stays
// stable as a rollout advances. Pure: the selected devices' buckets are an input.
import { BUCKET_COUNT, bucketLimit } from './bucket.js';
import { resolveStage, type StageSpec } from './model.js';

/**
 * The exclusive bucket limit of every stage: at least its percent's (bucketLimit), and at least
 * enough to include `minDevices` of `selectedBuckets` (the buckets of the devices the rollout
 * selects, members included; all of them when there are fewer).
 */
export function stageBucketLimits(
  stages: readonly StageSpec[],
  selectedBuckets: readonly number[],
): number[] {
  const sorted = [...selectedBuckets].sort((a, b) => a - b);
  let previous = 0;
  return stages.map((spec) => {
    const { percent, minDevices } = resolveStage(spec);
    const need = Math.min(minDevices, sorted.length);
    const byDevices = need > 0 ? (sorted[need - 1] ?? BUCKET_COUNT - 1) + 1 : 0;
    previous = Math.min(BUCKET_COUNT, Math.max(previous, bucketLimit(percent), byDevices));
    return previous;
  });
}
