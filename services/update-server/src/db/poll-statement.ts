// The poll hot path as ONE SQL statement (one round trip, one commit): re-check the device
// (exists, not decommissioned), consume the JWT id, record what the device reports, and read the
// device's progress in the rollouts that can offer (their ids come from the per-process rollout
// cache, src/rollout/cache.ts, so rollouts and releases are not re-read on every poll). Written
// with data-modifying CTEs (PostgreSQL docs §7.8.4), which run exactly once whether or not the
// outer query reads them; the device row is only updated when the jti was fresh, so a replayed
// token changes nothing.
import type { Db } from './database.js';

export interface PollStatementInput {
  deviceId: string;
  jtiKey: string;
  jtiExpiresAt: Date;
  version: string;
  bootedSlot: string;
  installState: string | null;
  hardware: string | null;
  now: Date;
  /** Rollouts whose progress the offer decision needs (the cached offerable ones). */
  rolloutIds: readonly string[];
}

export type PollStatementResult =
  | { kind: 'unknown-device' }
  | { kind: 'decommissioned' }
  | { kind: 'replayed' }
  | {
      kind: 'ok';
      product: string;
      hardware: string;
      tags: string[];
      /** The device's `timezone` attribute (IANA), for device-local maintenance windows. */
      timeZone: string | null;
      /** rolloutId → the device's state there, for the requested rollouts it was offered. */
      progress: Map<string, string>;
    };

interface Row extends Record<string, unknown> {
  product: string;
  hardware: string;
  tags: string[];
  decommissioned: boolean;
  fresh: boolean;
  time_zone: string | null;
  rollout_id: string | null;
  device_state: string | null;
}

// Positional parameters: $1 device id, $2 jti key, $3 jti expiry, $4 version, $5 booted slot,
// $6 install state, $7 hardware, $8 now, $9 rollout ids.
const POLL_SQL = `
WITH dev AS (
  SELECT id, product, hardware, tags, attributes, decommissioned_at FROM devices WHERE id = $1::uuid
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
       dev.attributes->>'timezone' AS time_zone,
       dev.decommissioned_at IS NOT NULL AS decommissioned,
       EXISTS (SELECT 1 FROM jti) AS fresh,
       rd.rollout_id, rd.state AS device_state
FROM dev
LEFT JOIN rollout_devices rd ON rd.device_id = dev.id AND rd.rollout_id = ANY($9::uuid[])`;

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
    p.rolloutIds,
  ];
  // node-postgres pools (they count clients) take a statement name and prepare it once per connection.
  const result =
    'totalCount' in client
      ? await client.query({ name: 'abota_poll_v2', text: POLL_SQL, values })
      : await client.query(POLL_SQL, values);
  const rows = result.rows;
  const first = rows[0];
  if (first === undefined) return { kind: 'unknown-device' };
  if (first.decommissioned) return { kind: 'decommissioned' };
  if (!first.fresh) return { kind: 'replayed' };
  const progress = new Map<string, string>();
  for (const r of rows)
    if (r.rollout_id !== null && r.device_state !== null) progress.set(r.rollout_id, r.device_state);
  return {
    kind: 'ok',
    product: first.product,
    hardware: first.hardware,
    tags: first.tags,
    timeZone: first.time_zone,
    progress,
  };
}
