// Request and response schemas of the rollout admin API (the single source for validation,
// types and the OpenAPI document, like schemas.ts, which holds the rest of the API).
import { z } from '@hono/zod-openapi';
import { text } from './schemas.js';
import { DEVICE_STATES, ROLLOUT_KINDS, ROLLOUT_LIFECYCLE } from './values.js';

const Uuid = z.uuid();
const Id = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'expected 1..63 of a-z 0-9 . _ - starting with a letter or digit');
const Tag = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:=/-]{0,127}$/, 'tags are 1..128 of A-Z a-z 0-9 . _ : = / -');
const GroupName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:=/-]{0,121}$/, 'group names are 1..122 of A-Z a-z 0-9 . _ : = / -');
const HHMM = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'expected "HH:MM" (24-hour)');

export const RolloutSelectorSchema = z
  .strictObject({
    hardware: z.array(Id).max(64).optional(),
    tags: z.array(Tag).max(64).optional().openapi({ description: 'The device carries every listed tag' }),
    groups: z
      .array(GroupName)
      .max(64)
      .optional()
      .openapi({ description: 'The device is in at least one group (carries the tag "group:<name>")' }),
    deviceIds: z.array(Uuid).max(10_000).optional(),
    currentVersion: text(200).optional().openapi({
      description: 'Running-version constraint: space-separated clauses such as ">=1.0.0 <1.2.0"',
    }),
  })
  .openapi('RolloutSelector');

export const RolloutStageSchema = z
  .strictObject({
    percent: z
      .number()
      .gt(0)
      .max(100)
      .openapi({ description: 'Share of the selected devices, 0.01 % steps' }),
    minBakeSeconds: z
      .int()
      .min(0)
      .max(90 * 86_400)
      .optional(),
    bakeMinutes: z
      .int()
      .min(0)
      .max(30 * 1440)
      .optional()
      .openapi({
        description:
          'Health bake window after commit (default 0: off). Devices re-run their health checks and report `healthy`/`unhealthy` for this long after committing; the stage advances only once `minCommitted` devices stayed healthy that long, and an `unhealthy` or rolled-back-after-commit device counts as failed',
      }),
    minCommitted: z.int().min(0).max(1_000_000).optional(),
    maxFailurePercent: z.number().min(0).max(100).optional(),
    minSample: z.int().min(1).max(1_000_000).optional(),
    maxConcurrent: z.int().min(1).max(1_000_000).optional(),
    minDevices: z.int().min(0).max(1_000_000).optional().openapi({
      description:
        'The stage reaches at least this many selected devices whatever its percent gives (default 1, so a small fleet gets a canary)',
    }),
  })
  .openapi('RolloutStage');

export const MaintenanceWindowSchema = z
  .strictObject({
    timezone: z.enum(['utc', 'device-local']),
    start: HHMM,
    end: HHMM,
    days: z.array(z.int().min(0).max(6)).max(7).optional().openapi({ description: '0 = Sunday' }),
  })
  .openapi('MaintenanceWindow');

export const AutoRollbackPolicySchema = z
  .strictObject({
    toVersion: text(128, 1).optional().openapi({
      description:
        "Release of the rollout's product to return to (default: the newest earlier release that is not yanked)",
    }),
  })
  .openapi('AutoRollbackPolicy');

export const RolloutCreateSchema = z
  .strictObject({
    id: Uuid.optional().openapi({
      description:
        "The new rollout's id (default: a fresh one). Pass the rolloutId a preview answered with to get exactly the stage cohorts it counted: a device's stage is a hash of (rollout id, device id)",
    }),
    releaseId: Uuid,
    name: text(256).optional(),
    selector: RolloutSelectorSchema.optional(),
    allowDowngrade: z.boolean().optional(),
    stages: z
      .array(RolloutStageSchema)
      .min(1)
      .max(20)
      .optional()
      .openapi({ description: 'Default: one stage at 100 %' }),
    maintenanceWindow: MaintenanceWindowSchema.optional(),
    start: z.boolean().optional().openapi({
      description:
        'false creates a draft (default: start at once; for a product that requires approval, once approved)',
    }),
    autoRollback: z
      .union([z.literal(false), AutoRollbackPolicySchema])
      .optional()
      .openapi({
        description:
          'Automatic fleet rollback when a stage crosses its failure threshold (default false: pause only)',
      }),
    lateJoiners: z.boolean().optional().openapi({
      description:
        'Devices that register or are retagged while it runs join it when they match (default true); false freezes the population at start',
    }),
  })
  .openapi('RolloutCreate');

export const RolloutApproveSchema = z
  .strictObject({ comment: text(1024, 1).optional() })
  .openapi('RolloutApprove');

export const RolloutReasonSchema = z
  .strictObject({ reason: text(1024, 1).optional() })
  .openapi('RolloutReason');

export const RolloutRollbackSchema = z
  .strictObject({
    releaseId: Uuid.optional(),
    version: text(128, 1).optional().openapi({ description: "A release of the rollout's product" }),
    name: text(256).optional(),
    stages: z.array(RolloutStageSchema).min(1).max(20).optional(),
  })
  .openapi('RolloutRollback');

const Counts = z.partialRecord(z.enum(DEVICE_STATES), z.int());

/** How the devices of a stage, or of the whole rollout, stand. */
const Tally = {
  targeted: z.int(),
  counts: Counts,
  committed: z.int(),
  failures: z.int(),
  inFlight: z.int(),
  notOffered: z.int(),
  failurePercent: z.number(),
};

export const RolloutSchema = z
  .object({
    id: Uuid,
    releaseId: Uuid,
    releaseVersion: z.string(),
    product: z.string(),
    name: z.string(),
    kind: z.enum(ROLLOUT_KINDS),
    selector: z.record(z.string(), z.unknown()),
    state: z.enum(ROLLOUT_LIFECYCLE),
    stateReason: z.string().nullable(),
    allowDowngrade: z.boolean(),
    stages: z.array(RolloutStageSchema),
    currentStage: z.int(),
    maintenanceWindow: MaintenanceWindowSchema.nullable(),
    startedAt: z.string().nullable(),
    stageStartedAt: z.string(),
    createdAt: z.string(),
    updatedAt: z.string(),
    createdBy: z.string().nullable().openapi({ description: 'Audit actor that created it (apikey:<id>)' }),
    lateJoiners: z.boolean(),
    autoRollback: z
      .object({ toReleaseId: Uuid, toVersion: z.string() })
      .nullable()
      .openapi({ description: 'The release an automatic rollback returns to; null = off' }),
    approval: z
      .object({
        required: z.boolean(),
        approvedBy: z.string().nullable(),
        approvedAt: z.string().nullable(),
      })
      .openapi({ description: 'Four-eyes approval (products with requireApproval)' }),
    deviceCounts: z.record(z.string(), z.int()).optional(),
  })
  .openapi('Rollout');

export const RolloutListQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: text(200).optional(),
  product: Id.optional(),
  state: z.enum(ROLLOUT_LIFECYCLE).optional(),
});

const StageStatusSchema = z.object({
  stage: z.int(),
  percent: z.number(),
  minBakeSeconds: z.int(),
  minCommitted: z.int(),
  maxFailurePercent: z.number(),
  minSample: z.int(),
  maxConcurrent: z.int().nullable(),
  phase: z.enum(['done', 'current', 'pending']),
  ...Tally,
});

export const RolloutStatusSchema = z
  .object({
    rollout: RolloutSchema,
    status: z.object({
      state: z.enum(ROLLOUT_LIFECYCLE),
      stateReason: z.string().nullable(),
      currentStage: z.int(),
      stageCount: z.int(),
      timeInStageSeconds: z.int().nullable(),
      overall: z.object(Tally),
      stages: z.array(StageStatusSchema),
      next: z.object({
        action: z.enum(['advance', 'pause', 'complete', 'wait', 'none']),
        reason: z.string(),
        notBefore: z.string().nullable(),
      }),
    }),
    at: z.string().openapi({ description: 'Server time the status was computed at' }),
  })
  .openapi('RolloutStatus');

/** How many devices one stage of a previewed rollout would reach. */
const StagePreviewSchema = z.object({
  stage: z.int(),
  percent: z.number(),
  minDevices: z.int(),
  maxConcurrent: z.int().nullable(),
  bucketLimit: z
    .int()
    .openapi({ description: 'Exclusive bucket limit (of 10,000) after widening to minDevices' }),
  targeted: z
    .int()
    .openapi({ description: 'Devices this stage adds (its cohort, as rollout status counts it)' }),
  cumulative: z
    .int()
    .openapi({ description: 'Devices reached once this stage runs (this and earlier stages)' }),
  inWindowNow: z.int().openapi({
    description: "Of the stage's cohort, devices whose maintenance window is open now (all without a window)",
  }),
});

export const RolloutPreviewSchema = z
  .object({
    rolloutId: Uuid.openapi({
      description:
        'The id the cohorts were computed for: create the rollout with this id to get exactly these devices',
    }),
    releaseId: Uuid,
    releaseVersion: z.string(),
    product: z.string(),
    devices: z
      .object({
        product: z
          .int()
          .openapi({ description: "Live (not decommissioned) devices of the release's product" }),
        selected: z.int().openapi({ description: 'Of those, devices the selector picks' }),
        incompatible: z
          .int()
          .openapi({ description: "Selected, but their hardware is not in the release's compatible list" }),
        upToDate: z.int().openapi({
          description:
            'Selected and compatible, but already on this version, or on a newer one without allowDowngrade',
        }),
        eligible: z.int().openapi({ description: 'Selected devices the release applies to' }),
        beyondLastStage: z
          .int()
          .openapi({ description: 'Eligible devices no stage reaches (the last stage is below 100 %)' }),
      })
      .openapi({ description: 'The funnel from the product fleet to the devices the rollout targets' }),
    versions: z
      .array(
        z.object({
          version: z.string().nullable(),
          selected: z.int(),
          eligible: z.int(),
        }),
      )
      .openapi({ description: 'Selected devices by running version (null: not reported yet)' }),
    stages: z.array(StagePreviewSchema),
    maintenanceWindow: MaintenanceWindowSchema.nullable(),
    at: z.string().openapi({ description: 'Server time the preview was computed at' }),
  })
  .openapi('RolloutPreview');
