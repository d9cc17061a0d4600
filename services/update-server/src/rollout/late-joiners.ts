// Late joiners. A rollout's selector is evaluated when a device polls (offer.ts) and when its
// progress is measured (store.ts), against the device's tags and groups at that moment: a device
// that registers, or is retagged into a matching group, while the rollout runs joins it by
// itself. That is the default (`lateJoiners: true`).
//
// `lateJoiners: false` freezes the population at the start without copying it: only devices
// that may have changed since the start get a row in rollout_frozen_membership —
//   - a device registered while the rollout runs: outside (in_population = false);
//   - a device retagged while it runs: inside when its tags before that first change matched the
//     selector's tag, group, hardware and device-id parts (later changes keep the first answer).
// No row: the device was there at the start with the tags it has now. The selector itself still
// applies on top (a device retagged out of the group leaves, as in any rollout). Writing the rows
// costs one statement per registration and per retag; reading them is one primary-key lookup per
// poll, made only while a frozen rollout could offer to the device.
import { and, eq, inArray, sql } from 'drizzle-orm';
import type { Db } from '../db/database.js';
import { rolloutFrozenMembership, rollouts } from '../db/schema.js';
import type { Selector } from './model.js';
import { type SelectableDevice, selectorPicks } from './selector.js';

/** Rollouts whose population is fixed once started are running in these states. */
const RUNNING = ['active', 'paused'];

type Writer = Pick<Db, 'select' | 'insert' | 'execute'>;

/** A device was registered: it is outside every frozen population of its product already started. */
export async function markRegistered(
  db: Writer,
  product: string,
  deviceId: string,
  now: Date,
): Promise<void> {
  await db.execute(sql`
    INSERT INTO ${rolloutFrozenMembership} (rollout_id, device_id, in_population, reason, at)
    SELECT ${rollouts.id}, ${deviceId}::uuid, false, 'registered', ${now.toISOString()}::timestamptz
    FROM ${rollouts}
    WHERE ${rollouts.product} = ${product} AND ${rollouts.lateJoiners} = false
      AND ${rollouts.state} IN ('active', 'paused')
    ON CONFLICT DO NOTHING`);
}

/**
 * A device's tags are about to change (`before`: its row as it was): for every frozen running
 * rollout of its product, record whether it was part of the population (first change only).
 */
export async function markRetagged(
  db: Writer,
  before: Omit<SelectableDevice, 'memberOf'>,
  now: Date,
): Promise<void> {
  const frozen = await db
    .select({ id: rollouts.id, selector: rollouts.selector })
    .from(rollouts)
    .where(
      and(
        eq(rollouts.product, before.product),
        eq(rollouts.lateJoiners, false),
        inArray(rollouts.state, RUNNING),
      ),
    );
  if (frozen.length === 0) return;
  await db
    .insert(rolloutFrozenMembership)
    .values(
      frozen.map((r) => ({
        rolloutId: r.id,
        deviceId: before.id,
        inPopulation: populationPicks(r.selector as Selector, before),
        reason: 'retagged',
        at: now,
      })),
    )
    .onConflictDoNothing();
}

/** The parts of a selector a frozen population is made of (not the running version, checked live). */
function populationPicks(selector: Selector, device: Omit<SelectableDevice, 'memberOf'>): boolean {
  const { currentVersion: _v, fromRollout: _r, ...fixed } = selector;
  return selectorPicks(fixed, device.product, device);
}

/** Of `rolloutIds`, those whose frozen population `deviceId` is outside of. */
export async function outsideFrozen(
  db: Pick<Db, 'select'>,
  deviceId: string,
  rolloutIds: readonly string[],
): Promise<Set<string>> {
  if (rolloutIds.length === 0) return new Set();
  const rows = await db
    .select({ rolloutId: rolloutFrozenMembership.rolloutId })
    .from(rolloutFrozenMembership)
    .where(
      and(
        eq(rolloutFrozenMembership.deviceId, deviceId),
        inArray(rolloutFrozenMembership.rolloutId, [...rolloutIds]),
        eq(rolloutFrozenMembership.inPopulation, false),
      ),
    );
  return new Set(rows.map((r) => r.rolloutId));
}

/**
 * SQL condition on `devices`: the device belongs to the population of rollout `rolloutId`
 * (always true for a rollout with late joiners, which has no rows). For progress counts in SQL.
 */
export function inFrozenPopulation(rolloutId: string, deviceIdColumn: unknown) {
  return sql`NOT EXISTS (SELECT 1 FROM ${rolloutFrozenMembership} m
    WHERE m.rollout_id = ${rolloutId}::uuid AND m.device_id = ${deviceIdColumn} AND NOT m.in_population)`;
}
