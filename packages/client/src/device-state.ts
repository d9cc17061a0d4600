// The agent's persistent facts in the data directory (state.json): its device id, what each slot
// holds, and the anti-rollback floor. Written atomically; the journal says what is in flight,
// this file says what is settled.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as v from 'valibot';
import { readJsonFile, writeFileAtomic } from './atomic-file.js';
import { type AgentConfig, type ImageRootHashes, imageRootHashesSchema } from './config.js';
import { ClientError } from './errors.js';
import type { SlotName } from './install/slot-io.js';
import { describeIssue } from './schema-issues.js';

const slotContentSchema = v.object({
  version: v.string(),
  securityVersion: v.pipe(v.number(), v.safeInteger(), v.minValue(0)),
  /**
   * dm-verity root hash of each image written into the slot (from the signed manifest, recorded
   * at commit): what a delta's `sourceRootHash` is compared with. Absent in state files written
   * before deltas (unknown: no delta is used from that slot).
   */
  rootHashes: v.optional(imageRootHashesSchema),
});

export const deviceStateSchema = v.object({
  schemaVersion: v.literal(1),
  deviceId: v.optional(v.string()),
  /** What a slot holds; absent = unknown (the factory image for the booted slot, or being rewritten). */
  slots: v.object({ A: v.optional(slotContentSchema), B: v.optional(slotContentSchema) }),
  /**
   * Slots the agent has started writing at least once: they no longer hold the factory image,
   * so `factory.rootHashes` does not describe them even while `slots` has no entry for them.
   */
  rewrittenSlots: v.optional(v.pipe(v.array(v.picklist(['A', 'B'])), v.maxLength(2))),
  /** Lowest securityVersion still accepted; raised when a release is committed. */
  securityVersionFloor: v.pipe(v.number(), v.safeInteger(), v.minValue(0)),
});
export type DeviceState = v.InferOutput<typeof deviceStateSchema>;

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
  const r = v.safeParse(deviceStateSchema, raw);
  if (!r.success) {
    throw new ClientError(
      'ERR_STATE_INVALID',
      `${path} is not a valid agent state file: ${describeIssue(r.issues[0])}`,
    );
  }
  return r.output;
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

/** Kernel command line keys that carry the booted rootfs' root hash. */
const ROOT_HASH_KEYS = ['roothash=', 'abota.roothash='] as const;

/**
 * `roothash=<hex>` (systemd-veritysetup-generator's convention) or `abota.roothash=<hex>` (what
 * abota's initramfs sets dm-verity up from, docs/image.md) on the kernel command line: the root
 * hash the kernel set up dm-verity for the booted rootfs with. Undefined when absent, malformed
 * or given twice with different values — the agent never guesses.
 */
export function cmdlineRootHash(cmdline: string): string | undefined {
  const found = new Set<string>();
  for (const word of cmdline.split(/\s+/)) {
    const key = ROOT_HASH_KEYS.find((k) => word.startsWith(k));
    if (key !== undefined) found.add(word.slice(key.length).toLowerCase());
  }
  if (found.size !== 1) return undefined;
  const [value] = found;
  return /^(?:[0-9a-f]{2}){20,64}$/.test(value!) ? value : undefined;
}

/**
 * Root hashes of the images in the booted slot, as far as they are known: the kernel command
 * line for the rootfs (what dm-verity was set up with on this boot), else what state.json
 * recorded when a release was committed into the slot, else — for a slot never written by the
 * agent, i.e. the factory image — `factory.rootHashes` from the config. An image missing
 * from the result is unknown, and no delta is applied from it.
 */
export async function bootedRootHashes(
  config: AgentConfig,
  state: DeviceState,
  booted: SlotName,
): Promise<ImageRootHashes> {
  const committed = state.slots[booted];
  const recorded =
    committed !== undefined
      ? committed.rootHashes
      : state.rewrittenSlots?.includes(booted)
        ? undefined
        : config.factory.rootHashes;
  const out: ImageRootHashes = { ...recorded };
  const cmdline = await readFile(config.kernelCmdlinePath, 'utf8').catch(() => '');
  const fromKernel = cmdlineRootHash(cmdline);
  if (fromKernel !== undefined) out.rootfs = fromKernel;
  return out;
}
