// Stable rollout membership: every (rollout, device) pair falls in one of 10,000 buckets, and a
// stage at P percent offers the release to buckets [0, P × 100). Raising the percent only adds
// buckets, and every replica computes the same bucket with no shared state.
import { createHash } from 'node:crypto';
import { type AnyColumn, type SQL, sql } from 'drizzle-orm';

export const BUCKET_COUNT = 10_000;

/**
 * bucket = uint32 big-endian of the first 4 bytes of SHA-256(utf8(rolloutId) ‖ 0x00 ‖
 * utf8(deviceId)), mod 10,000. The 0x00 separator keeps ("ab","c") and ("a","bc") apart; hashing
 * the rollout id in means each rollout picks a different first 1 %, so the same unlucky devices
 * are not always the canaries. The modulo bias (2^32 mod 10^4 = 7,296) is below 3·10^-6.
 */
export function rolloutBucket(rolloutId: string, deviceId: string): number {
  const digest = createHash('sha256')
    .update(rolloutId, 'utf8')
    .update(Buffer.of(0))
    .update(deviceId, 'utf8')
    .digest();
  return digest.readUInt32BE(0) % BUCKET_COUNT;
}

/** Buckets a stage at `percent` covers: 0.01 % steps, so 0.5 % is 50 buckets. */
export function bucketLimit(percent: number): number {
  return Math.min(BUCKET_COUNT, Math.max(0, Math.round(percent * (BUCKET_COUNT / 100))));
}

/** Whether a device is inside a stage at `percent` of a rollout. */
export function inRolloutPercent(rolloutId: string, deviceId: string, percent: number): boolean {
  return rolloutBucket(rolloutId, deviceId) < bucketLimit(percent);
}

/**
 * rolloutBucket as a SQL expression over a device id column (uuid): the database's
 * rollout_bucket() (drizzle/0009_rollout_counters.sql, the one SQL spelling, also used by the
 * progress counters), so a query can count devices by bucket range without loading them.
 * `rolloutId` must be the lowercase text the rollouts table returns (uuid's canonical form).
 */
export function rolloutBucketSql(rolloutId: string, deviceId: AnyColumn | SQL): SQL<number> {
  return sql<number>`rollout_bucket(${rolloutId}::text, ${deviceId}::text)`;
}
