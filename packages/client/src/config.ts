// Agent configuration: one JSON file (default /etc/abota/agent.json) plus ABOTA_* environment
// overrides, validated by one valibot schema that is also the source of the TypeScript type.
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import * as v from 'valibot';
import { ClientError } from './errors.js';
import { describeIssues } from './schema-issues.js';
import { DEFAULT_FREEZE_WARNING_DAYS } from './offer-freshness.js';

export const DEFAULT_CONFIG_PATH = '/etc/abota/agent.json';
export const DEFAULT_BOOT_ID_PATH = '/proc/sys/kernel/random/boot_id';

/**
 * Where one image of a slot lives. The dm-verity hash area is either a separate device/file
 * (`hashPath`, written at `hashOffsetBytes`, default 0) or an offset on the same device after the
 * data (`hashOffsetBytes` without `hashPath`).
 */
const nonEmpty = v.pipe(v.string(), v.minLength(1));
const int = v.pipe(v.number(), v.safeInteger());

const imageTargetSchema = v.pipe(
  v.strictObject({
    path: nonEmpty,
    hashPath: v.optional(nonEmpty),
    hashOffsetBytes: v.optional(v.pipe(int, v.minValue(0))),
  }),
  v.check(
    (t) => t.hashPath !== undefined || t.hashOffsetBytes !== undefined,
    'give hashPath (separate hash device/file) or hashOffsetBytes (hash area after the data)',
  ),
);

const slotSchema = v.strictObject({ rootfs: imageTargetSchema, boot: v.optional(imageTargetSchema) });

const commandSchema = v.pipe(v.array(nonEmpty), v.minLength(1));

/** A dm-verity root hash: lower-case hex of a sha1..sha512 digest (veritysetup prints it so). */
export const rootHashSchema = v.pipe(
  v.string(),
  v.regex(/^(?:[0-9a-f]{2}){20,64}$/, 'expected a dm-verity root hash: 40..128 lower-case hex characters'),
);

/** Root hash of each image a slot holds (`rootfs`, `boot`); an absent image is unknown. */
export const imageRootHashesSchema = v.strictObject({
  rootfs: v.optional(rootHashSchema),
  boot: v.optional(rootHashSchema),
});
export type ImageRootHashes = v.InferOutput<typeof imageRootHashesSchema>;

const slotNameSchema = v.picklist(['A', 'B']);

const bootControlSchema = v.variant('backend', [
  v.strictObject({
    backend: v.literal('grub'),
    envPath: v.optional(nonEmpty, '/boot/grub/grubenv'),
    bootedSlot: v.optional(slotNameSchema),
  }),
  v.strictObject({
    backend: v.literal('uboot'),
    fwEnvConfigPath: v.optional(nonEmpty, '/etc/fw_env.config'),
    convention: v.variant('kind', [
      v.looseObject({ kind: v.literal('bootcount') }),
      v.looseObject({ kind: v.literal('rauc') }),
    ]),
    bootedSlot: v.optional(slotNameSchema),
  }),
  v.strictObject({
    backend: v.literal('uefi'),
    /** systemd-boot: BLS type #2 UKIs with boot counting; firmware: one Boot#### per slot + BootNext. */
    mode: v.picklist(['systemd-boot', 'firmware']),
    /** efivarfs mount, or a directory standing in for it (simulator, tests). */
    efivarsPath: v.optional(nonEmpty, '/sys/firmware/efi/efivars'),
    /** Where the ESP is mounted; systemd-boot mode keeps the UKIs in its EFI/Linux. */
    espPath: v.optional(nonEmpty, '/boot/efi'),
    /** firmware mode: the description of each slot's Boot#### entry (default "abota A" / "abota B"). */
    bootEntries: v.optional(v.strictObject({ A: nonEmpty, B: nonEmpty })),
    /** systemd-boot mode: each slot's UKI name in EFI/Linux, without counter and .efi (default abota-a / abota-b). */
    ukiNames: v.optional(
      v.strictObject({
        A: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.-]+$/, 'a UKI name: letters, digits, _ . - (no +)')),
        B: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.-]+$/, 'a UKI name: letters, digits, _ . - (no +)')),
      }),
    ),
    /** Boots a trial gets before it is abandoned; default 1. */
    tryBoots: v.optional(v.pipe(int, v.minValue(1), v.maxValue(255))),
    bootedSlot: v.optional(slotNameSchema),
  }),
  v.strictObject({
    backend: v.literal('file'),
    statePath: nonEmpty,
    tryBoots: v.optional(v.pipe(int, v.minValue(1), v.maxValue(255))),
    bootedSlot: v.optional(slotNameSchema),
  }),
]);
export type BootControlConfig = v.InferOutput<typeof bootControlSchema>;

const DEFAULT_POLL = { minSeconds: 60, maxSeconds: 86_400, defaultSeconds: 3600, jitterFraction: 0.2 };

export const agentConfigSchema = v.strictObject({
  server: v.optional(
    v.strictObject({
      url: v.pipe(
        v.string(),
        v.url('expected an http(s) URL'),
        // Runs even when v.url refused the text (valibot does not abort the pipe): no throw.
        v.check((u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol), 'expected an http(s) URL'),
      ),
      audience: v.optional(nonEmpty, 'abota'),
      tokenLifetimeSeconds: v.optional(v.pipe(int, v.minValue(60), v.maxValue(300)), 180),
      /** Plain http to a server that is not on this machine (a trusted lab network only). */
      allowInsecureHttp: v.optional(v.boolean()),
      /** Deadline of each API request, answer included (default 30 s; ERR_HTTP_TIMEOUT). */
      requestTimeoutSeconds: v.optional(v.pipe(v.number(), v.gtValue(0), v.maxValue(3600))),
      /**
       * Slow retrieval: a download below this average rate over `slowDownloadWindowSeconds` is
       * abandoned and resumed, and a blob's download must end within its budget (window + twice
       * its size at this rate); ERR_HTTP_TOO_SLOW. Defaults 1024 bytes/s over 60 s.
       */
      minDownloadBytesPerSecond: v.optional(v.pipe(int, v.minValue(1))),
      slowDownloadWindowSeconds: v.optional(v.pipe(v.number(), v.gtValue(0), v.maxValue(3600))),
    }),
  ),
  deviceKeyPath: nonEmpty,
  /** Normally learned at registration and kept in the data directory; set here to pin it. */
  deviceId: v.optional(nonEmpty),
  trustRootPath: nonEmpty,
  product: nonEmpty,
  hardware: nonEmpty,
  attributes: v.optional(v.record(v.string(), v.string())),
  /** What the factory image is, until the agent has committed a release of its own. */
  factory: v.optional(
    v.strictObject({
      version: v.optional(nonEmpty, '0.0.0'),
      securityVersion: v.optional(v.pipe(int, v.minValue(0)), 0),
      /**
       * dm-verity root hashes of the factory images (from the image build), so the first update
       * can use a delta. Absent = unknown: deltas are then used only when the kernel command line
       * names the booted rootfs (`roothash=`); the agent never guesses a source.
       */
      rootHashes: v.optional(imageRootHashesSchema),
    }),
    () => ({ version: '0.0.0', securityVersion: 0 }),
  ),
  slots: v.strictObject({ A: slotSchema, B: slotSchema }),
  /** Which boot-control backend (src/bootctl) and its settings. */
  bootControl: bootControlSchema,
  dataDir: nonEmpty,
  poll: v.optional(
    v.pipe(
      v.strictObject({
        minSeconds: v.optional(v.pipe(int, v.minValue(1)), DEFAULT_POLL.minSeconds),
        maxSeconds: v.optional(v.pipe(int, v.minValue(1)), DEFAULT_POLL.maxSeconds),
        defaultSeconds: v.optional(v.pipe(int, v.minValue(1)), DEFAULT_POLL.defaultSeconds),
        jitterFraction: v.optional(
          v.pipe(v.number(), v.minValue(0), v.maxValue(1)),
          DEFAULT_POLL.jitterFraction,
        ),
      }),
      v.check(
        (p) => p.minSeconds <= p.defaultSeconds && p.defaultSeconds <= p.maxSeconds,
        'poll bounds must satisfy minSeconds <= defaultSeconds <= maxSeconds',
      ),
    ),
    () => ({ ...DEFAULT_POLL }),
  ),
  /**
   * Keep downloaded compressed artifacts in the data directory until the image is written, so
   * a resumed brotli install does not download the prefix again (costs its size on disk).
   */
  spoolCompressedArtifacts: v.optional(v.boolean(), false),
  /**
   * Warn ("no valid offer for N days") when no release has passed the trust decision for this
   * many days: updates withheld on the way look the same as none published (offer-freshness.ts).
   * 0 = never warn.
   */
  freezeWarningDays: v.optional(v.pipe(int, v.minValue(0), v.maxValue(3650)), DEFAULT_FREEZE_WARNING_DAYS),
  /** Download limit in bytes per second (token bucket); absent = unlimited. */
  bandwidthLimitBytesPerSecond: v.optional(v.pipe(int, v.minValue(1))),
  healthChecks: v.optional(
    v.array(
      v.strictObject({
        command: commandSchema,
        timeoutSeconds: v.optional(v.pipe(v.number(), v.gtValue(0)), 60),
      }),
    ),
    () => [],
  ),
  /**
   * Health after commit (agent-bake.ts): for a bake window after a commit the health checks re-run
   * every `intervalSeconds` and the agent reports `healthy` / `unhealthy`. The window is the
   * offer's (the rollout stage's `bakeMinutes`), else `bakeMinutes` here (0: none). More than
   * `maxBootsInBake` boots inside the window is a crash loop (unhealthy).
   */
  health: v.optional(
    v.strictObject({
      intervalSeconds: v.optional(v.pipe(int, v.minValue(1), v.maxValue(86_400)), 60),
      bakeMinutes: v.optional(v.pipe(int, v.minValue(0), v.maxValue(30 * 1440)), 0),
      maxBootsInBake: v.optional(v.pipe(int, v.minValue(1), v.maxValue(1000)), 3),
    }),
    () => ({ intervalSeconds: 60, bakeMinutes: 0, maxBootsInBake: 3 }),
  ),
  rebootCommand: v.optional(commandSchema, () => ['systemctl', 'reboot']),
  kernelCmdlinePath: v.optional(nonEmpty, '/proc/cmdline'),
  /**
   * Identity of the current boot: tells "rebooted" from "the agent restarted". A simulated device
   * (file backend, `abota-agent simulate-reboot`) keeps it in a file of its own.
   */
  bootIdPath: v.optional(nonEmpty, DEFAULT_BOOT_ID_PATH),
});

export type AgentConfig = v.InferOutput<typeof agentConfigSchema>;
export type AgentConfigInput = v.InferInput<typeof agentConfigSchema>;
export type SlotConfig = v.InferOutput<typeof slotSchema>;
export type ImageTarget = v.InferOutput<typeof imageTargetSchema>;

/** ABOTA_* variables that override single settings (systemd Environment=, containers). */
const ENV_OVERRIDES: Record<string, (c: Record<string, unknown>, v: string) => void> = {
  ABOTA_SERVER_URL: (c, v) => {
    c['server'] = { ...((c['server'] as object | undefined) ?? {}), url: v };
  },
  ABOTA_ALLOW_INSECURE_HTTP: (c, v) => {
    c['server'] = { ...((c['server'] as object | undefined) ?? {}), allowInsecureHttp: v === '1' };
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
  const r = v.safeParse(agentConfigSchema, raw);
  if (!r.success) {
    throw new ClientError(
      'ERR_CONFIG_INVALID',
      `${where} is not a valid agent config: ${describeIssues(r.issues)}`,
    );
  }
  return r.output;
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
        : bc.backend === 'uefi'
          ? { ...bc, efivarsPath: abs(bc.efivarsPath), espPath: abs(bc.espPath) }
          : { ...bc, fwEnvConfigPath: abs(bc.fwEnvConfigPath) };
  return {
    ...c,
    bootControl,
    deviceKeyPath: abs(c.deviceKeyPath),
    trustRootPath: abs(c.trustRootPath),
    dataDir: abs(c.dataDir),
    kernelCmdlinePath: abs(c.kernelCmdlinePath),
    bootIdPath: abs(c.bootIdPath),
    slots: { A: slot(c.slots.A), B: slot(c.slots.B) },
  };
}
