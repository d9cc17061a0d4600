// Agent configuration: one JSON file (default /etc/abota/agent.json) plus ABOTA_* environment
// overrides, validated by one zod schema that is also the source of the TypeScript type.
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { ClientError } from './errors.js';

export const DEFAULT_CONFIG_PATH = '/etc/abota/agent.json';

/**
 * Where one image of a slot lives. The dm-verity hash area is either a separate device/file
 * (`hashPath`, written at `hashOffsetBytes`, default 0) or an offset on the same device after the
 * data (`hashOffsetBytes` without `hashPath`).
 */
const imageTargetSchema = z
  .object({
    path: z.string().min(1),
    hashPath: z.string().min(1).optional(),
    hashOffsetBytes: z.number().int().nonnegative().optional(),
  })
  .strict()
  .refine((t) => t.hashPath !== undefined || t.hashOffsetBytes !== undefined, {
    message: 'give hashPath (separate hash device/file) or hashOffsetBytes (hash area after the data)',
  });

const slotSchema = z.object({ rootfs: imageTargetSchema, boot: imageTargetSchema.optional() }).strict();

const commandSchema = z.array(z.string().min(1)).min(1);

/** A dm-verity root hash: lower-case hex of a sha1..sha512 digest (veritysetup prints it so). */
export const rootHashSchema = z
  .string()
  .regex(/^(?:[0-9a-f]{2}){20,64}$/, 'expected a dm-verity root hash: 40..128 lower-case hex characters');

/** Root hash of each image a slot holds (`rootfs`, `boot`); an absent image is unknown. */
export const imageRootHashesSchema = z
  .object({ rootfs: rootHashSchema.optional(), boot: rootHashSchema.optional() })
  .strict();
export type ImageRootHashes = z.infer<typeof imageRootHashesSchema>;

const slotNameSchema = z.enum(['A', 'B']);

const bootControlSchema = z.discriminatedUnion('backend', [
  z
    .object({
      backend: z.literal('grub'),
      envPath: z.string().min(1).default('/boot/grub/grubenv'),
      bootedSlot: slotNameSchema.optional(),
    })
    .strict(),
  z
    .object({
      backend: z.literal('uboot'),
      fwEnvConfigPath: z.string().min(1).default('/etc/fw_env.config'),
      convention: z.discriminatedUnion('kind', [
        z.looseObject({ kind: z.literal('bootcount') }),
        z.looseObject({ kind: z.literal('rauc') }),
      ]),
      bootedSlot: slotNameSchema.optional(),
    })
    .strict(),
  z
    .object({
      backend: z.literal('file'),
      statePath: z.string().min(1),
      tryBoots: z.number().int().min(1).max(255).optional(),
      bootedSlot: slotNameSchema.optional(),
    })
    .strict(),
]);
export type BootControlConfig = z.infer<typeof bootControlSchema>;

export const agentConfigSchema = z
  .object({
    server: z
      .object({
        url: z.url({ protocol: /^https?$/ }),
        audience: z.string().min(1).default('abota'),
        tokenLifetimeSeconds: z.number().int().min(60).max(300).default(180),
      })
      .strict()
      .optional(),
    deviceKeyPath: z.string().min(1),
    /** Normally learned at registration and kept in the data directory; set here to pin it. */
    deviceId: z.string().min(1).optional(),
    trustRootPath: z.string().min(1),
    product: z.string().min(1),
    hardware: z.string().min(1),
    attributes: z.record(z.string(), z.string()).optional(),
    /** What the factory image is, until the agent has committed a release of its own. */
    factory: z
      .object({
        version: z.string().min(1).default('0.0.0'),
        securityVersion: z.number().int().min(0).default(0),
        /**
         * dm-verity root hashes of the factory images (from the image build), so the first update
         * can use a delta. Absent = unknown: deltas are then used only when the kernel command line
         * names the booted rootfs (`roothash=`); the agent never guesses a source.
         */
        rootHashes: imageRootHashesSchema.optional(),
      })
      .strict()
      .default({ version: '0.0.0', securityVersion: 0 }),
    slots: z.object({ A: slotSchema, B: slotSchema }).strict(),
    /** Which boot-control backend (src/bootctl) and its settings. */
    bootControl: bootControlSchema,
    dataDir: z.string().min(1),
    poll: z
      .object({
        minSeconds: z.number().int().min(1).default(60),
        maxSeconds: z.number().int().min(1).default(86_400),
        defaultSeconds: z.number().int().min(1).default(3600),
        jitterFraction: z.number().min(0).max(1).default(0.2),
      })
      .strict()
      .refine((p) => p.minSeconds <= p.defaultSeconds && p.defaultSeconds <= p.maxSeconds, {
        message: 'poll bounds must satisfy minSeconds <= defaultSeconds <= maxSeconds',
      })
      .default({ minSeconds: 60, maxSeconds: 86_400, defaultSeconds: 3600, jitterFraction: 0.2 }),
    /**
     * Keep downloaded compressed artifacts in the data directory until the image is written, so
     * a resumed brotli install does not download the prefix again (costs its size on disk).
     */
    spoolCompressedArtifacts: z.boolean().default(false),
    /** Download limit in bytes per second (token bucket); absent = unlimited. */
    bandwidthLimitBytesPerSecond: z.number().int().positive().optional(),
    healthChecks: z
      .array(z.object({ command: commandSchema, timeoutSeconds: z.number().positive().default(60) }).strict())
      .default([]),
    rebootCommand: commandSchema.default(['systemctl', 'reboot']),
    kernelCmdlinePath: z.string().min(1).default('/proc/cmdline'),
  })
  .strict();

export type AgentConfig = z.infer<typeof agentConfigSchema>;
export type AgentConfigInput = z.input<typeof agentConfigSchema>;
export type SlotConfig = z.infer<typeof slotSchema>;
export type ImageTarget = z.infer<typeof imageTargetSchema>;

/** ABOTA_* variables that override single settings (systemd Environment=, containers). */
const ENV_OVERRIDES: Record<string, (c: Record<string, unknown>, v: string) => void> = {
  ABOTA_SERVER_URL: (c, v) => {
    c['server'] = { ...((c['server'] as object | undefined) ?? {}), url: v };
  },
  ABOTA_DATA_DIR: (c, v) => {
    c['dataDir'] = v;
  },
  ABOTA_TRUST_ROOT: (c, v) => {
    c['trustRootPath'] = v;
  },
  ABOTA_DEVICE_KEY: (c, v) => {
    c['deviceKeyPath'] = v;
  },
  ABOTA_DEVICE_ID: (c, v) => {
    c['deviceId'] = v;
  },
  ABOTA_KERNEL_CMDLINE: (c, v) => {
    c['kernelCmdlinePath'] = v;
  },
  ABOTA_BANDWIDTH_LIMIT: (c, v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) {
      throw new ClientError(
        'ERR_CONFIG_INVALID',
        `ABOTA_BANDWIDTH_LIMIT must be a positive integer (bytes per second), got "${v}"`,
      );
    }
    c['bandwidthLimitBytesPerSecond'] = n;
  },
};

/** Validate an already-parsed config object (env overrides applied by the caller or not at all). */
export function parseAgentConfig(raw: unknown, where = 'config'): AgentConfig {
  const r = agentConfigSchema.safeParse(raw);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new ClientError('ERR_CONFIG_INVALID', `${where} is not a valid agent config: ${issues}`);
  }
  return r.data;
}

/**
 * Load the config file, apply ABOTA_* overrides from `env`, validate, and resolve relative paths
 * against the config file's directory (so a test or USB stick can carry a self-contained config).
 */
export async function loadAgentConfig(
  path: string,
  env: Record<string, string | undefined> = process.env,
): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new ClientError('ERR_CONFIG_READ', `cannot read agent config ${path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ClientError('ERR_CONFIG_INVALID', `${path} is not JSON: ${(e as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ClientError('ERR_CONFIG_INVALID', `${path} must hold a JSON object`);
  }
  const obj = raw as Record<string, unknown>;
  for (const [name, apply] of Object.entries(ENV_OVERRIDES)) {
    const v = env[name];
    if (v !== undefined && v !== '') apply(obj, v);
  }
  return resolveConfigPaths(parseAgentConfig(obj, path), dirname(resolve(path)));
}

function resolveConfigPaths(c: AgentConfig, base: string): AgentConfig {
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(base, p));
  const target = (t: ImageTarget): ImageTarget => ({
    ...t,
    path: abs(t.path),
    ...(t.hashPath !== undefined ? { hashPath: abs(t.hashPath) } : {}),
  });
  const slot = (s: SlotConfig): SlotConfig => ({
    rootfs: target(s.rootfs),
    ...(s.boot !== undefined ? { boot: target(s.boot) } : {}),
  });
  const bc = c.bootControl;
  const bootControl: BootControlConfig =
    bc.backend === 'file'
      ? { ...bc, statePath: abs(bc.statePath) }
      : bc.backend === 'grub'
        ? { ...bc, envPath: abs(bc.envPath) }
        : { ...bc, fwEnvConfigPath: abs(bc.fwEnvConfigPath) };
  return {
    ...c,
    bootControl,
    deviceKeyPath: abs(c.deviceKeyPath),
    trustRootPath: abs(c.trustRootPath),
    dataDir: abs(c.dataDir),
    kernelCmdlinePath: abs(c.kernelCmdlinePath),
    slots: { A: slot(c.slots.A), B: slot(c.slots.B) },
  };
}
