// Health after commit: during a stage's bake window (`bakeMinutes`) a committed device re-runs
// its health checks and reports `healthy` (how long it has stayed healthy since it committed) or
// `unhealthy`. A healthy report only raises rollout_devices.healthy_seconds (the device stays
// `committed`); an unhealthy one turns `committed` into `unhealthy`, a failure of the stage. A
// device counts as baked (progress-sql.ts) once it committed at least the bake time ago by the
// server's clock and reported staying healthy at least that long.
import { and, eq, sql } from 'drizzle-orm';
import type { Db } from '../db/database.js';
import { deviceEvents, devices, rolloutDevices } from '../db/schema.js';
import { ServerError } from '../errors.js';
import { resolveStage, type StageSpec } from './model.js';

type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];

export const isHealthReport = (state: string): state is 'healthy' | 'unhealthy' =>
  state === 'healthy' || state === 'unhealthy';

export interface HealthReport {
  deviceId: string;
  rolloutId: string | null;
  version: string;
  state: 'healthy' | 'unhealthy';
  healthySeconds?: number | undefined;
  errorCode?: string | undefined;
  message?: string | undefined;
  now: Date;
}

/** Records one health report; returns whether it changed nothing (a duplicate). */
export async function recordHealthReport(tx: Tx, r: HealthReport): Promise<boolean> {
  if (r.rolloutId === null) {
    throw new ServerError(
      'ERR_VALIDATION',
      `a "${r.state}" report must name the rollout whose release the device committed (rolloutId)`,
    );
  }
  const inserted = await tx
    .insert(deviceEvents)
    .values({
      deviceId: r.deviceId,
      rolloutId: r.rolloutId,
      version: r.version,
      state: r.state,
      errorCode: r.errorCode ?? null,
      message: r.message ?? null,
      at: r.now,
    })
    .onConflictDoNothing()
    .returning({ id: deviceEvents.id });
  const member = and(
    eq(rolloutDevices.rolloutId, r.rolloutId),
    eq(rolloutDevices.deviceId, r.deviceId),
    eq(rolloutDevices.state, 'committed'),
  );
  const seconds = r.healthySeconds ?? 0;
  const moved =
    r.state === 'unhealthy'
      ? await tx
          .update(rolloutDevices)
          .set({ state: 'unhealthy', updatedAt: r.now })
          .where(member)
          .returning({ id: rolloutDevices.deviceId })
      : await tx
          .update(rolloutDevices)
          .set({ healthySeconds: seconds, updatedAt: r.now })
          .where(and(member, sql`coalesce(${rolloutDevices.healthySeconds}, -1) < ${seconds}`))
          .returning({ id: rolloutDevices.deviceId });
  await tx
    .update(devices)
    .set({ lastSeenAt: r.now, ...(r.state === 'unhealthy' ? { installState: 'unhealthy' } : {}) })
    .where(eq(devices.id, r.deviceId));
  return inserted.length === 0 && moved.length === 0;
}

/** The bake window a stage gives its devices, in seconds (0: none). */
export function bakeSecondsOf(stage: StageSpec | undefined): number {
  return stage === undefined ? 0 : resolveStage(stage).bakeMinutes * 60;
}
