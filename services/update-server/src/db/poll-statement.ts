// The poll hot path as ONE SQL statement per batch of polls (one round trip, one commit for
// all of them — group commit): re-check each device (exists, not decommissioned), consume its
// JWT id, record what it reports, and read its progress in the rollouts that can offer (their
// ids come from the per-process rollout cache, src/rollout/cache.ts, so rollouts and releases
// are not re-read on every poll). Written with data-modifying CTEs (PostgreSQL docs §7.8.4),
// which run exactly once whether or not the outer query reads them; a device row is only
// updated when its jti was fresh, so a replayed token changes nothing.
//
// Batching (PollBatcher): polls that arrive while earlier statements are in flight wait and go
// together in the next statement. With one poll at a time nothing waits (a batch of one is sent
// at once); under load PostgreSQL parses, plans, locks and flushes WAL once per batch instead
// of once per poll. The answer each poll gets is exactly what a statement of its own would
// have given: its row is checked, its jti inserted (ON CONFLICT DO NOTHING tells a replay),
// and the response waits for the commit. Two rules keep concurrent batches independent:
// a device is never in two in-flight batches of this process (its later polls wait for the
// next batch), so neither the devices row nor a jti key (which contains the device id) is
// touched by two of our statements at once — no lock waits, no deadlocks between them; and a
// batch holds at most one poll per device (so never the same jti key twice: the second waits for
// the next statement and is then refused as a replay).
import type { Db } from './database.js';

export interface PollStatementInput {
  deviceId: string;
  jtiKey: string;
  jtiExpiresAt: Date;
  version: string;
  bootedSlot: string;
  installState: string | null;
  hardware: string | null;
  /**
   * The product the device reports, if any. The device row is only updated when it matches the
   * registered one: a poll refused for a product mismatch (ERR_CONFLICT) must change nothing.
   */
  product: string | null;
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
  ord: string | number;
  product: string;
  hardware: string;
  tags: string[];
  decommissioned: boolean;
  fresh: boolean;
  time_zone: string | null;
  rollout_id: string | null;
  device_state: string | null;
}

// Parameters are parallel arrays, one element per poll ($1 device ids, $2 jti keys, $3 jti
// expiries, $4 versions, $5 booted slots, $6 install states, $7 hardware), then $8 the rollout
// ids whose progress is wanted, $9 each poll's `now` and $10 the products reported (null: none). `ord` (1-based position) maps result rows back to polls. A
// device's row is updated with its own poll's values and its own `now` ($9 array), as if alone,
// and not at all when the poll reports another product than the registered one (the route
// refuses that poll with ERR_CONFLICT; its jti stays spent, like any verified token's).
// Progress is read per device through the (rollout_id, device_id) primary key (LATERAL), never
// by scanning a rollout's rows: a generic plan must not grow with the fleet.
const POLL_SQL = `
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
                       $7::text[], $9::timestamptz[], $10::text[])
    WITH ORDINALITY AS i(device_id, jti, jti_expires_at, version, booted_slot, install_state, hardware, now,
                         product, ord)
), dev AS (
  SELECT i.ord, d.id, d.product, d.hardware, d.tags, d.attributes, d.decommissioned_at
  FROM input i JOIN devices d ON d.id = i.device_id
), jti AS (
  INSERT INTO used_jwt_ids (jti, device_id, expires_at)
  SELECT i.jti, i.device_id, i.jti_expires_at FROM input i JOIN dev ON dev.ord = i.ord
  WHERE dev.decommissioned_at IS NULL
  ON CONFLICT DO NOTHING
  RETURNING jti
), upd AS (
  UPDATE devices
  SET current_version = i.version, booted_slot = i.booted_slot, install_state = i.install_state,
      hardware = coalesce(i.hardware, devices.hardware), last_seen_at = i.now
  FROM input i JOIN jti ON jti.jti = i.jti
  WHERE devices.id = i.device_id AND (i.product IS NULL OR i.product = devices.product)
  RETURNING 1
)
SELECT i.ord, dev.product, coalesce(i.hardware, dev.hardware) AS hardware, dev.tags,
       dev.attributes->>'timezone' AS time_zone,
       dev.decommissioned_at IS NOT NULL AS decommissioned,
       EXISTS (SELECT 1 FROM jti WHERE jti.jti = i.jti) AS fresh,
       rd.rollout_id, rd.state AS device_state
FROM input i
JOIN dev ON dev.ord = i.ord
LEFT JOIN LATERAL (
  SELECT r.rollout_id, r.state FROM rollout_devices r
  WHERE r.device_id = dev.id AND r.rollout_id = ANY($8::uuid[])
) rd ON true`;

/** The driver client under drizzle: a pg.Pool (named = server-side prepared, planned once per connection) or PGlite. */
export interface RawClient {
  query(config: { name: string; text: string; values: unknown[] }): Promise<{ rows: Row[] }>;
  query(text: string, values: unknown[]): Promise<{ rows: Row[] }>;
}

export function rawClient(db: Db): RawClient {
  const client = (db as unknown as { $client?: unknown }).$client;
  if (typeof client !== 'object' || client === null || !('query' in client)) {
    throw new Error('the drizzle database has no driver client ($client)');
  }
  return client as RawClient;
}

/** Runs one statement for the given polls; the results are in the same order. */
export async function runPollStatements(
  db: Db,
  polls: readonly PollStatementInput[],
): Promise<PollStatementResult[]> {
  const client = rawClient(db);
  const rolloutIds = new Set<string>();
  for (const p of polls) for (const id of p.rolloutIds) rolloutIds.add(id);
  const values = [
    polls.map((p) => p.deviceId),
    polls.map((p) => p.jtiKey),
    polls.map((p) => p.jtiExpiresAt.toISOString()),
    polls.map((p) => p.version),
    polls.map((p) => p.bootedSlot),
    polls.map((p) => p.installState),
    polls.map((p) => p.hardware),
    [...rolloutIds],
    polls.map((p) => p.now.toISOString()),
    polls.map((p) => p.product),
  ];
  // node-postgres pools (they count clients) take a statement name and prepare it once per connection.
  const result =
    'totalCount' in client
      ? await client.query({ name: 'abota_poll_v4', text: POLL_SQL, values })
      : await client.query(POLL_SQL, values);
  const results: PollStatementResult[] = polls.map(() => ({ kind: 'unknown-device' }));
  for (const r of result.rows) {
    const index = Number(r.ord) - 1;
    const poll = polls[index];
    if (poll === undefined) throw new Error(`poll statement returned a row for position ${r.ord}`);
    // Rows of one poll repeat the device columns (one row per rollout it has progress in).
    let entry = results[index] as PollStatementResult;
    if (entry.kind === 'unknown-device') {
      entry = r.decommissioned
        ? { kind: 'decommissioned' }
        : !r.fresh
          ? { kind: 'replayed' }
          : {
              kind: 'ok',
              product: r.product,
              hardware: r.hardware,
              tags: r.tags,
              timeZone: r.time_zone,
              progress: new Map(),
            };
      results[index] = entry;
    }
    // Only rollouts this poll asked about (another poll in the batch may have asked for more).
    if (
      entry.kind === 'ok' &&
      r.rollout_id !== null &&
      r.device_state !== null &&
      poll.rolloutIds.includes(r.rollout_id)
    ) {
      entry.progress.set(r.rollout_id, r.device_state);
    }
  }
  return results;
}

interface Pending {
  input: PollStatementInput;
  resolve: (result: PollStatementResult) => void;
  reject: (error: unknown) => void;
}

export interface PollBatcherOptions {
  /**
   * Statements in flight at once at most (each on its own pool connection). A statement beyond
   * the first starts only when at least `busyBatchMin` polls are waiting: one statement at a
   * time gives the largest batches and the least CPU per poll; more start under load spikes or
   * when one statement is slow (e.g. waiting for a row lock), so polls keep flowing.
   */
  maxInFlight?: number;
  /** Polls that must be waiting before a statement starts while another is in flight (16). */
  busyBatchMin?: number;
  /** Polls per statement at most. */
  maxBatch?: number;
  /** Called for every statement sent, with the number of polls in it. */
  onStatement?: (polls: number) => void;
}

/**
 * Group commit for polls (see the top of this file): `run` resolves with the same result a
 * statement of its own would give. Fails closed: if a statement fails, every poll in it is
 * rejected with that error (the route answers 5xx; nothing was committed).
 */
export class PollBatcher {
  readonly #db: Db;
  readonly #maxInFlight: number;
  readonly #maxBatch: number;
  readonly #busyBatchMin: number;
  readonly #onStatement: ((polls: number) => void) | undefined;
  #queue: Pending[] = [];
  #inFlight = 0;
  /** Devices with a poll in an in-flight statement. */
  readonly #busyDevices = new Set<string>();

  constructor(db: Db, options: PollBatcherOptions = {}) {
    this.#db = db;
    this.#maxInFlight = Math.max(1, options.maxInFlight ?? 4);
    this.#maxBatch = Math.max(1, options.maxBatch ?? 256);
    this.#busyBatchMin = Math.max(1, options.busyBatchMin ?? 16);
    this.#onStatement = options.onStatement;
  }

  run(input: PollStatementInput): Promise<PollStatementResult> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ input, resolve, reject });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#inFlight < this.#maxInFlight && this.#queue.length > 0) {
      if (this.#inFlight > 0 && this.#queue.length < this.#busyBatchMin) return;
      const batch: Pending[] = [];
      const deviceIds = new Set<string>();
      const waiting: Pending[] = [];
      for (const pending of this.#queue) {
        const id = pending.input.deviceId;
        if (batch.length >= this.#maxBatch || this.#busyDevices.has(id) || deviceIds.has(id)) {
          waiting.push(pending);
        } else {
          deviceIds.add(id);
          batch.push(pending);
        }
      }
      if (batch.length === 0) return; // everything queued waits for a device in flight
      this.#queue = waiting;
      for (const id of deviceIds) this.#busyDevices.add(id);
      this.#inFlight++;
      this.#onStatement?.(batch.length);
      runPollStatements(
        this.#db,
        batch.map((p) => p.input),
      ).then(
        (results) => {
          this.#settle(deviceIds);
          batch.forEach((p, i) => {
            const result = results[i];
            if (result === undefined) p.reject(new Error('poll statement returned no result'));
            else p.resolve(result);
          });
        },
        (error: unknown) => {
          this.#settle(deviceIds);
          for (const p of batch) p.reject(error);
        },
      );
    }
  }

  #settle(deviceIds: Set<string>): void {
    this.#inFlight--;
    for (const id of deviceIds) this.#busyDevices.delete(id);
    this.#pump();
  }
}
