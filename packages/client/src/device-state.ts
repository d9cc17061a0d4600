// The agent's persistent facts in the data directory (state.json): its device id, what each slot
// holds, and the anti-rollback floor. Written atomically; the journal says what is in flight,
// this file says what is settled.
import { join } from 'node:path';
import { z } from 'zod';
import { readJsonFile, writeFileAtomic } from './atomic-file.js';
import type { AgentConfig } from './config.js';
import { ClientError } from './errors.js';
import type { SlotName } from './install/slot-io.js';

const slotContentSchema = z.object({ version: z.string(), securityVersion: z.number().int().nonnegative() });

export const deviceStateSchema = z.object({
  schemaVersion: z.literal(1),
  deviceId: z.string().optional(),
  /** What a slot holds; absent = unknown (the factory image for the booted slot, or being rewritten). */
  slots: z.object({ A: slotContentSchema.optional(), B: slotContentSchema.optional() }),
  /** Lowest securityVersion still accepted; raised when a release is committed. */
  securityVersionFloor: z.number().int().nonnegative(),
});
export type DeviceState = z.infer<typeof deviceStateSchema>;

export const STATE_FILE = 'state.json';

export async function readDeviceState(config: AgentConfig): Promise<DeviceState> {
  const path = join(config.dataDir, STATE_FILE);
  let raw: unknown;
  try {
    raw = await readJsonFile(path);
  } catch (e) {
    throw new ClientError('ERR_STATE_INVALID', `${path} is not JSON: ${(e as Error).message}`);
  }
  if (raw === undefined) {
    return { schemaVersion: 1, slots: {}, securityVersionFloor: config.factory.securityVersion };
  }
  const r = deviceStateSchema.safeParse(raw);
  if (!r.success) {
    throw new ClientError(
      'ERR_STATE_INVALID',
      `${path} is not a valid agent state file: ${r.error.issues[0]?.message ?? 'schema'}`,
    );
  }
  return r.data;
}

export async function writeDeviceState(config: AgentConfig, state: DeviceState): Promise<void> {
  await writeFileAtomic(join(config.dataDir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
}

/** Version of the booted slot: what we committed there, else the factory version from the config. */
export function runningVersion(
  config: AgentConfig,
  state: DeviceState,
  booted: SlotName,
): { version: string; securityVersion: number } {
  return (
    state.slots[booted] ?? {
      version: config.factory.version,
      securityVersion: config.factory.securityVersion,
    }
  );
}

export function securityFloor(config: AgentConfig, state: DeviceState): number {
  return Math.max(state.securityVersionFloor, config.factory.securityVersion);
}
