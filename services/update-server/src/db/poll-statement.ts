// The poll hot path as ONE SQL statement (one round trip, one commit): re-check the device
// (exists, not decommissioned), consume the JWT id, record what the device reports, and read the
// active rollouts of its product with the device's progress in each. Written with data-modifying
// CTEs (PostgreSQL docs §7.8.4), which run exactly once whether or not the outer query reads them;
// the device row is only updated when the jti was fresh, so a replayed token changes nothing.
import type { Db } from './database.js';
import type { RolloutSelector } from './schema.js';

export interface PollStatementInput {
  deviceId: string;
  jtiKey: string;
  jtiExpiresAt: Date;
  version: string;
  bootedSlot: string;
  installState: string | null;
  hardware: string | null;
  now: Date;
}

export interface PollCandidate {
  rolloutId: string;
  selector: RolloutSelector;
  allowDowngrade: boolean;
  releaseId: string;
  releaseVersion: string;
  releaseCompatible: string[];
  manifestJws: string;
  deviceState: string | null;
}

export type PollStatementResult =
  | { kind: 'unknown-device' }
  | { kind: 'decommissioned' }
  | { kind: 'replayed' }
  | { kind: 'ok'; product: string; hardware: string; tags: string[]; candidates: PollCandidate[] };

interface Row extends Record<string, unknown> {
  product: string;
  hardware: string;
  tags: string[];
  decommissioned: boolean;
  fresh: boolean;
  rollout_id: string | null;
  selector: RolloutSelector | null;
  allow_downgrade: boolean | null;
  release_id: string | null;
  release_version: string | null;
  release_compatible: string[] | null;
  manifest_jws: string | null;
  device_state: string | null;
}

// Positional parameters: $1 device id, $2 jti key, $3 jti expiry, $4 version, $5 booted slot,
// $6 install state, $7 hardware, $8 now.
const POLL_SQL = `
WITH dev AS (
  SELECT id, product, hardware, tags, decommissioned_at FROM devices WHERE id = $1::uuid
), jti AS (
  INSERT INTO used_jwt_ids (jti, device_id, expires_at)
  SELECT $2::text, dev.id, $3::timestamptz FROM dev WHERE dev.decommissioned_at IS NULL
  ON CONFLICT DO NOTHING
  RETURNING 1
), upd AS (
  UPDATE devices
  SET current_version = $4::text, booted_slot = $5::text, install_state = $6::text,
      hardware = coalesce($7::text, devices.hardware), last_seen_at = $8::timestamptz
  WHERE id = $1::uuid AND EXISTS (SELECT 1 FROM jti)
  RETURNING 1
)
SELECT dev.product, coalesce($7::text, dev.hardware) AS hardware, dev.tags,
       dev.decommissioned_at IS NOT NULL AS decommissioned,
       EXISTS (SELECT 1 FROM jti) AS fresh,
       c.rollout_id, c.selector, c.allow_downgrade, c.release_id, c.release_version,
       c.release_compatible, c.manifest_jws, c.device_state
FROM dev
LEFT JOIN LATERAL (
  SELECT r.id AS rollout_id, r.selector, r.allow_downgrade, r.created_at, rel.id AS release_id,
         rel.version AS release_version, rel.compatible AS release_compatible,
         rel.manifest_jws, rd.state AS device_state
  FROM rollouts r
  JOIN releases rel ON rel.id = r.release_id
  LEFT JOIN rollout_devices rd ON rd.rollout_id = r.id AND rd.device_id = dev.id
  WHERE r.product = dev.product AND r.state = 'active' AND NOT rel.yanked
) c ON true
ORDER BY c.created_at DESC NULLS LAST, c.rollout_id DESC`;

/** The driver client under drizzle: a pg.Pool (named = server-side prepared, planned once per connection) or PGlite. */
interface RawClient {
  query(config: { name: string; text: string; values: unknown[] }): Promise<{ rows: Row[] }>;
  query(text: string, values: unknown[]): Promise<{ rows: Row[] }>;
}

function rawClient(db: Db): RawClient {
  const client = (db as unknown as { $client?: unknown }).$client;
  if (typeof client !== 'object' || client === null || !('query' in client)) {
    throw new Error('the drizzle database has no driver client ($client)');
  }
  return client as RawClient;
}

export async function runPollStatement(db: Db, p: PollStatementInput): Promise<PollStatementResult> {
  const client = rawClient(db);
  const values = [
    p.deviceId,
    p.jtiKey,
    p.jtiExpiresAt.toISOString(),
    p.version,
    p.bootedSlot,
    p.installState,
    p.hardware,
    p.now.toISOString(),
  ];
  // node-postgres pools (they count clients) take a statement name and prepare it once per connection.
  const result =
    'totalCount' in client
      ? await client.query({ name: 'abota_poll_v1', text: POLL_SQL, values })
      : await client.query(POLL_SQL, values);
  const rows = result.rows;
  const first = rows[0];
  if (first === undefined) return { kind: 'unknown-device' };
  if (first.decommissioned) return { kind: 'decommissioned' };
  if (!first.fresh) return { kind: 'replayed' };
  const candidates: PollCandidate[] = [];
  for (const r of rows) {
    if (
      r.rollout_id === null ||
      r.release_id === null ||
      r.release_version === null ||
      r.manifest_jws === null
    )
      continue;
    candidates.push({
      rolloutId: r.rollout_id,
      selector: r.selector ?? {},
      allowDowngrade: r.allow_downgrade === true,
      releaseId: r.release_id,
      releaseVersion: r.release_version,
      releaseCompatible: r.release_compatible ?? [],
      manifestJws: r.manifest_jws,
      deviceState: r.device_state,
    });
  }
  return { kind: 'ok', product: first.product, hardware: first.hardware, tags: first.tags, candidates };
}
