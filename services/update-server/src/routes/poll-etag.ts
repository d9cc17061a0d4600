// Conditional polls (If-None-Match → 304). The poll answer's ETag is derived from what decides
// the answer, never from its serialized body, so a 304 skips building and sending the manifest:
//   no-update: the poll-interval policy alone (the answer carries nothing else);
//   update:    rollout id + release id (a release's manifest and blobs never change) + the trust
//              root versions served + the delta digests served + allowDowngrade + the policy.
// pollAfterSeconds is jittered per answer and is not part of the ETag: a 304 carries the fresh
// value in the Abota-Poll-After-Seconds header instead.
import { createHash } from 'node:crypto';

export const POLL_AFTER_HEADER = 'abota-poll-after-seconds';

export interface PollPolicy {
  pollIntervalSeconds: number;
  pollJitterFraction: number;
}

export interface OfferTag {
  rolloutId: string;
  releaseId: string;
  rootVersions: readonly number[];
  deltaDigests: readonly string[];
  allowDowngrade: boolean;
  /** The stage's health bake window (0 or absent: none; left out of the tag then). */
  bakeSeconds?: number | undefined;
}

function tag(kind: 'nu' | 'up', parts: readonly (string | number | boolean)[]): string {
  const h = createHash('sha256').update(parts.join('\n')).digest('base64url').slice(0, 22);
  return `"${kind}-${h}"`;
}

export function noUpdateEtag(policy: PollPolicy): string {
  return tag('nu', ['no-update', policy.pollIntervalSeconds, policy.pollJitterFraction]);
}

export function offerEtag(policy: PollPolicy, o: OfferTag): string {
  return tag('up', [
    'update',
    policy.pollIntervalSeconds,
    policy.pollJitterFraction,
    o.rolloutId,
    o.releaseId,
    o.rootVersions.join(','),
    o.deltaDigests.join(','),
    o.allowDowngrade,
    ...(o.bakeSeconds ? [`bake:${o.bakeSeconds}`] : []),
  ]);
}

/**
 * Whether an If-None-Match header matches `etag` (RFC 9110 §13.1.2: weak comparison, a list of
 * tags or `*`). A malformed header matches nothing: the device then gets a full answer.
 */
export function ifNoneMatchHits(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const h = header.trim();
  if (h === '*') return true;
  const opaque = etag.replace(/^W\//, '');
  for (const part of h.split(',')) {
    if (part.trim().replace(/^W\//, '') === opaque) return true;
  }
  return false;
}
