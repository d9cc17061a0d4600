// The one drizzle schema (PostgreSQL dialect) shared by the embedded PGlite default and a real
// PostgreSQL. Migrations in ../../drizzle are generated from this file by drizzle-kit; change
// both together (`npx drizzle-kit generate` in services/update-server).
import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';

const createdAt = () => timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow();
const ts = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

/** A product: a family of devices that share one trust root (docs/trust-model.md). */
export const products = pgTable('products', {
  id: text('id').primaryKey(),
  description: text('description').notNull().default(''),
  /** The current signed trust root (root.json) releases of this product are verified against. */
  trustRoot: jsonb('trust_root').notNull(),
  trustRootVersion: integer('trust_root_version').notNull(),
  /**
   * Four-eyes approval: a rollout of this product created by one API key starts only after a
   * different operator or admin key approves it (routes/admin/rollout-approve.ts).
   */
  requireApproval: boolean('require_approval').notNull().default(false),
  createdAt: createdAt(),
  updatedAt: ts('updated_at').notNull().defaultNow(),
});

/**
 * Every trust root a product has had (root N, N+1, …), so a device still on root N can be
 * served the rotations it needs to reach the current one (TUF §5.3; docs/trust-model.md). Roots
 * rotated before this table existed are not recorded (only the then-current one is).
 */
export const productTrustRoots = pgTable(
  'product_trust_roots',
  {
    product: text('product')
      .notNull()
      .references(() => products.id, { onDelete: 'cascade' }),
    version: integer('version').notNull(),
    /** The signed root.json (General JWS) exactly as accepted. */
    trustRoot: jsonb('trust_root').notNull(),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.product, t.version] })],
);

/** Content-addressed blobs known to be in the blob store (recorded when an upload completes). */
export const blobs = pgTable('blobs', {
  digest: text('digest').primaryKey(), // "sha256:<hex>"
  sizeBytes: bigint('size_bytes', { mode: 'number' }).notNull(),
  createdAt: createdAt(),
});

export const releases = pgTable(
  'releases',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    product: text('product')
      .notNull()
      .references(() => products.id),
    version: text('version').notNull(),
    securityVersion: integer('security_version').notNull(),
    compatible: jsonb('compatible').$type<string[]>().notNull(),
    expires: ts('expires').notNull(),
    /** The General JWS JSON exactly as pushed; devices verify it themselves. */
    manifestJws: text('manifest_jws').notNull(),
    /** The decoded payload, for listing and queries only (never trusted by devices). */
    manifest: jsonb('manifest').notNull(),
    yanked: boolean('yanked').notNull().default(false),
    yankedReason: text('yanked_reason'),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('releases_product_version_uq').on(t.product, t.version)],
);

/** Which blobs a release references (artifacts and hash trees): drives blob access checks. */
export const releaseBlobs = pgTable(
  'release_blobs',
  {
    releaseId: uuid('release_id')
      .notNull()
      .references(() => releases.id, { onDelete: 'cascade' }),
    digest: text('digest')
      .notNull()
      .references(() => blobs.digest),
    /** Where the manifest references it, e.g. "images.rootfs.artifact". */
    role: text('role').notNull(),
  },
  (t) => [primaryKey({ columns: [t.releaseId, t.digest] }), index('release_blobs_digest_idx').on(t.digest)],
);

/**
 * Deltas registered for a release (docs/CONTRACTS.md "Deltas end to end"): unsigned payloads
 * (packages/delta FORMAT.md) that turn the `image` of `sourceVersion` into the release's image.
 * Not part of the signed manifest — devices verify every produced block against the target's
 * verity tree. One per (release, image, source root hash); removed with their release.
 */
export const releaseDeltas = pgTable(
  'release_deltas',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    releaseId: uuid('release_id')
      .notNull()
      .references(() => releases.id, { onDelete: 'cascade' }),
    /** "rootfs" | "boot" */
    image: text('image').notNull(),
    sourceVersion: text('source_version').notNull(),
    /** dm-verity root hash (hex) of the source image, as in the delta header. */
    sourceRootHash: text('source_root_hash').notNull(),
    /** Source image size from the delta header. */
    sourceSizeBytes: bigint('source_size_bytes', { mode: 'number' }).notNull(),
    /** The release image's root hash (hex), as in the delta header. */
    targetRootHash: text('target_root_hash').notNull(),
    digest: text('digest')
      .notNull()
      .references(() => blobs.digest),
    sizeBytes: bigint('size_bytes', { mode: 'number' }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('release_deltas_release_image_source_uq').on(t.releaseId, t.image, t.sourceRootHash),
    index('release_deltas_digest_idx').on(t.digest),
  ],
);

export const devices = pgTable(
  'devices',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    product: text('product')
      .notNull()
      .references(() => products.id),
    hardware: text('hardware').notNull(),
    /** Ed25519 public key as a JWK ({ kty: "OKP", crv: "Ed25519", x }); never a private key. */
    publicKeyJwk: jsonb('public_key_jwk').$type<{ kty: 'OKP'; crv: 'Ed25519'; x: string }>().notNull(),
    attributes: jsonb('attributes').$type<Record<string, string>>().notNull().default({}),
    tags: text('tags').array().notNull().default(sql`'{}'::text[]`),
    currentVersion: text('current_version'),
    bootedSlot: text('booted_slot'),
    installState: text('install_state'),
    lastSeenAt: ts('last_seen_at'),
    registeredAt: createdAt(),
    provisioningTokenId: uuid('provisioning_token_id'),
    decommissionedAt: ts('decommissioned_at'),
  },
  (t) => [
    index('devices_product_idx').on(t.product, t.id),
    index('devices_tags_idx').using('gin', t.tags),
    // The distinct running versions of a product by skip scan (src/rollout/progress-sql.ts).
    index('devices_product_version_idx').on(t.product, t.currentVersion),
  ],
);

/** Device reports. Idempotent per (device, rollout, state) through the unique index. */
export const deviceEvents = pgTable(
  'device_events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    deviceId: uuid('device_id')
      .notNull()
      .references(() => devices.id, { onDelete: 'cascade' }),
    rolloutId: uuid('rollout_id').references(() => rollouts.id, { onDelete: 'set null' }),
    version: text('version').notNull(),
    state: text('state').notNull(),
    errorCode: text('error_code'),
    message: text('message'),
    progress: integer('progress'),
    at: createdAt(),
  },
  (t) => [
    uniqueIndex('device_events_once_uq').on(t.deviceId, t.rolloutId, t.state),
    index('device_events_device_idx').on(t.deviceId, t.id),
  ],
);

/**
 * A rollout: one release offered to the devices its selector matches, in stages (canary
 * percentages with health rules, src/rollout/model.ts). `currentStage` only moves forward, by
 * a conditional UPDATE so that one replica applies each transition (src/rollout/engine.ts).
 */
export const rollouts = pgTable(
  'rollouts',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    releaseId: uuid('release_id')
      .notNull()
      .references(() => releases.id),
    product: text('product')
      .notNull()
      .references(() => products.id),
    name: text('name').notNull().default(''),
    selector: jsonb('selector').$type<RolloutSelector>().notNull(),
    /** draft | active (running at currentStage) | paused | aborted | completed */
    state: text('state').notNull().default('active'),
    /** Why it is paused or aborted (operator text, or the engine's numbers). */
    stateReason: text('state_reason'),
    /** normal | rollback (a rollback wins over normal rollouts for the same device). */
    kind: text('kind').notNull().default('normal'),
    maintenanceWindow: jsonb('maintenance_window').$type<RolloutMaintenanceWindow>(),
    /** When it left draft; the newest started rollout wins among equally specific ones. */
    startedAt: ts('started_at'),
    allowDowngrade: boolean('allow_downgrade').notNull().default(false),
    stages: jsonb('stages')
      .$type<RolloutStage[]>()
      .notNull()
      .default([{ percent: 100 }]),
    currentStage: integer('current_stage').notNull().default(0),
    stageStartedAt: ts('stage_started_at').notNull().defaultNow(),
    /** Audit actor that created it ("apikey:<id>", or system:rollout-engine for automatic rollbacks). */
    createdBy: text('created_by'),
    /**
     * Devices that register or are retagged while it runs join it when they match (true), or
     * the population is frozen at start (false; rollout_frozen_membership, src/rollout/late-joiners.ts).
     */
    lateJoiners: boolean('late_joiners').notNull().default(true),
    /** Automatic fleet rollback when a stage crosses its failure threshold; null = off (src/rollout/auto-rollback.ts). */
    autoRollback: jsonb('auto_rollback').$type<RolloutAutoRollback>(),
    /** Four-eyes: created for a product that requires approval; starts only once approvedBy is set. */
    approvalRequired: boolean('approval_required').notNull().default(false),
    approvedBy: text('approved_by'),
    approvedAt: ts('approved_at'),
    /** Created to start at once: the approval starts it (otherwise it stays a draft for `start`). */
    startOnApproval: boolean('start_on_approval').notNull().default(false),
    /**
     * When rollout_candidates was first filled for it (src/rollout/counters.ts); null: not yet,
     * the next progress count fills it (once per rollout, the only count that reads the fleet).
     */
    candidatesSeededAt: ts('candidates_seeded_at'),
    /**
     * The stage bucket limits rollout_stage_counts is grouped by (stage-limits.ts, as of the last
     * count that changed them); null: not grouped yet.
     */
    stageLimits: integer('stage_limits').array(),
    createdAt: createdAt(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  (t) => [
    index('rollouts_product_state_idx').on(t.product, t.state),
    // At most one automatic rollback per rollout, whatever the replicas do.
    uniqueIndex('rollouts_auto_rollback_uq')
      .on(sql`(${t.selector}->>'fromRollout')`)
      .where(sql`${t.createdBy} = 'system:rollout-engine' AND ${t.kind} = 'rollback'`),
  ],
);

/** The release an automatic rollback returns to, resolved when the rollout is created. */
export interface RolloutAutoRollback {
  toReleaseId: string;
  toVersion: string;
}

export interface RolloutSelector {
  product?: string | undefined;
  hardware?: string[] | undefined;
  /** A device must carry every listed tag. */
  tags?: string[] | undefined;
  /** A device must be in one of the groups (carry the tag `group:<name>`). */
  groups?: string[] | undefined;
  deviceIds?: string[] | undefined;
  /** Running-version constraint such as ">=1.0.0 <1.2.0". */
  currentVersion?: string | undefined;
  /** Only devices offered that rollout (rollbacks). */
  fromRollout?: string | undefined;
}
export interface RolloutStage {
  percent: number;
  minBakeSeconds?: number | undefined;
  bakeMinutes?: number | undefined;
  minCommitted?: number | undefined;
  maxFailurePercent?: number | undefined;
  minSample?: number | undefined;
  maxConcurrent?: number | undefined;
}
export interface RolloutMaintenanceWindow {
  timezone: 'utc' | 'device-local';
  start: string;
  end: string;
  days?: number[] | undefined;
}

/** Per-device progress inside a rollout; a row appears when the device is first offered it. */
export const rolloutDevices = pgTable(
  'rollout_devices',
  {
    rolloutId: uuid('rollout_id')
      .notNull()
      .references(() => rollouts.id, { onDelete: 'cascade' }),
    deviceId: uuid('device_id')
      .notNull()
      .references(() => devices.id, { onDelete: 'cascade' }),
    /** offered | downloading | installing | installed | rebooting | committed | failed | rolled-back */
    state: text('state').notNull(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
    /**
     * First download of one of the release's blobs through the device route after the offer. A
     * failure report from a device that never downloaded is not a release failure (issue #16).
     */
    blobsFetchedAt: ts('blobs_fetched_at'),
    /** When the device reported `committed` (server clock): its health bake window starts here. */
    committedAt: ts('committed_at'),
    /** The longest the device reported staying healthy since its commit (`healthy` reports). */
    healthySeconds: integer('healthy_seconds'),
  },
  (t) => [
    primaryKey({ columns: [t.rolloutId, t.deviceId] }),
    index('rollout_devices_state_idx').on(t.rolloutId, t.state),
  ],
);

/**
 * Rollout progress counters (src/rollout/counters.ts): devices per (rollout, bucket, state),
 * kept by triggers on rollout_devices, rollout_candidates and devices in the same statement as
 * each change (drizzle/0009_rollout_counters.sql), so a stage evaluation reads these rows instead
 * of the fleet. `state` is the member's state, or '' for a candidate (selected, not offered yet,
 * still needs the release); `live`: the device is not decommissioned.
 */
export const rolloutCounts = pgTable(
  'rollout_counts',
  {
    rolloutId: uuid('rollout_id')
      .notNull()
      .references(() => rollouts.id, { onDelete: 'cascade' }),
    bucket: integer('bucket').notNull(),
    state: text('state').notNull(),
    fetched: boolean('fetched').notNull(),
    live: boolean('live').notNull(),
    n: integer('n').notNull(),
  },
  (t) => [primaryKey({ columns: [t.rolloutId, t.bucket, t.state, t.fetched, t.live] })],
);

/**
 * rollout_counts summed by stage (the stage of a bucket under rollouts.stage_limits): what an
 * evaluation reads, one row per (stage, state). Kept by a trigger on rollout_counts; rebuilt from
 * it when a count finds the limits changed (counters.ts).
 */
export const rolloutStageCounts = pgTable(
  'rollout_stage_counts',
  {
    rolloutId: uuid('rollout_id')
      .notNull()
      .references(() => rollouts.id, { onDelete: 'cascade' }),
    /** width_bucket(bucket, stage_limits): the stage index, the number of stages beyond the last. */
    stage: integer('stage').notNull(),
    state: text('state').notNull(),
    fetched: boolean('fetched').notNull(),
    live: boolean('live').notNull(),
    n: integer('n').notNull(),
  },
  (t) => [primaryKey({ columns: [t.rolloutId, t.stage, t.state, t.fetched, t.live] })],
);

/**
 * A running rollout's candidates: devices its selector picks that were not offered it yet and
 * still need the release (the rows progress-sql.ts recounts from the fleet), kept in step by
 * src/rollout/counters.ts from the changes rollout_dirty lists.
 */
export const rolloutCandidates = pgTable(
  'rollout_candidates',
  {
    rolloutId: uuid('rollout_id')
      .notNull()
      .references(() => rollouts.id, { onDelete: 'cascade' }),
    deviceId: uuid('device_id')
      .notNull()
      .references(() => devices.id, { onDelete: 'cascade' }),
  },
  (t) => [primaryKey({ columns: [t.rolloutId, t.deviceId] })],
);

/**
 * Devices whose candidacy in a running rollout may have changed (registered, retagged, new
 * version or hardware, decommissioned, offered, or moved in the rollout a rollback selects
 * from): written by triggers, consumed by the next count of that rollout (counters.ts).
 */
export const rolloutDirty = pgTable(
  'rollout_dirty',
  {
    rolloutId: uuid('rollout_id')
      .notNull()
      .references(() => rollouts.id, { onDelete: 'cascade' }),
    deviceId: uuid('device_id').notNull(),
  },
  (t) => [primaryKey({ columns: [t.rolloutId, t.deviceId] })],
);

/**
 * The fleet's version distribution over time as changes per (product, UTC day, version): +1 the
 * day a device starts running a version, -1 the day it stops (console/pages/fleet-history.ts).
 * Kept by triggers on devices and device_events; the chart sums it (O(days × versions)).
 */
export const fleetVersionDays = pgTable(
  'fleet_version_days',
  {
    product: text('product').notNull(),
    /** Days since 1970-01-01 (UTC). */
    day: integer('day').notNull(),
    version: text('version').notNull(),
    delta: integer('delta').notNull(),
  },
  (t) => [primaryKey({ columns: [t.product, t.day, t.version] })],
);

/**
 * Frozen populations (rollouts with lateJoiners = false): whether a device is part of the
 * population the rollout had when it started. A row is written only for devices that may have
 * changed since the start: registered after it (false), or retagged while it runs (whether its
 * tags before the first such change matched). No row: the device was there at the start.
 */
export const rolloutFrozenMembership = pgTable(
  'rollout_frozen_membership',
  {
    rolloutId: uuid('rollout_id')
      .notNull()
      .references(() => rollouts.id, { onDelete: 'cascade' }),
    deviceId: uuid('device_id')
      .notNull()
      .references(() => devices.id, { onDelete: 'cascade' }),
    inPopulation: boolean('in_population').notNull(),
    /** registered | retagged */
    reason: text('reason').notNull(),
    at: ts('at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.rolloutId, t.deviceId] }),
    index('rollout_frozen_device_idx').on(t.deviceId),
  ],
);

export const provisioningTokens = pgTable('provisioning_tokens', {
  id: uuid('id').primaryKey().defaultRandom(),
  /** SHA-256 (hex) of the token; the token itself is shown once at creation. */
  tokenHash: text('token_hash').notNull().unique(),
  product: text('product')
    .notNull()
    .references(() => products.id),
  description: text('description').notNull().default(''),
  expiresAt: ts('expires_at').notNull(),
  revokedAt: ts('revoked_at'),
  maxUses: integer('max_uses'),
  uses: integer('uses').notNull().default(0),
  createdAt: createdAt(),
});

export const apiKeys = pgTable('api_keys', {
  id: uuid('id').primaryKey().defaultRandom(),
  /** SHA-256 (hex) of the whole key "abk_..."; the key itself is shown once at creation. */
  keyHash: text('key_hash').notNull().unique(),
  name: text('name').notNull(),
  /** admin | publisher | operator | viewer */
  role: text('role').notNull(),
  createdAt: createdAt(),
  lastUsedAt: ts('last_used_at'),
  revokedAt: ts('revoked_at'),
});

export const auditLog = pgTable(
  'audit_log',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    at: createdAt(),
    /** "apikey:<id>" or "device:<id>" */
    actor: text('actor').notNull(),
    action: text('action').notNull(),
    target: text('target').notNull(),
    details: jsonb('details').notNull().default({}),
  },
  (t) => [index('audit_log_target_idx').on(t.target)],
);

/** JWT ids already accepted; kept until the token's own expiry (replay protection across replicas). */
export const usedJwtIds = pgTable(
  'used_jwt_ids',
  {
    jti: text('jti').primaryKey(),
    deviceId: uuid('device_id').notNull(),
    expiresAt: ts('expires_at').notNull(),
  },
  (t) => [index('used_jwt_ids_expires_idx').on(t.expiresAt)],
);

/**
 * Web console sessions (src/console): an admin API key exchanged for a cookie. Only the SHA-256
 * of the session id is stored; a session dies at `expiresAt`, at sign-out (`revokedAt`) and with
 * its API key (revoked key = no session, checked on every request).
 */
export const consoleSessions = pgTable(
  'console_sessions',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    /** SHA-256 (hex) of the session id sent as the cookie; the id itself is never stored. */
    tokenHash: text('token_hash').notNull().unique(),
    apiKeyId: uuid('api_key_id')
      .notNull()
      .references(() => apiKeys.id, { onDelete: 'cascade' }),
    createdAt: createdAt(),
    expiresAt: ts('expires_at').notNull(),
    revokedAt: ts('revoked_at'),
  },
  (t) => [index('console_sessions_expires_idx').on(t.expiresAt)],
);
