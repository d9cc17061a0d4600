// What every route module receives: the injected parts (database, blob store, clock, config,
// logger) plus the per-process metrics and device key cache, and the Hono context variables
// the auth middlewares set.
import type { KeyObject } from 'node:crypto';
import type { ApiKeyRole } from '@abota/api';
import type { BlobStore } from '@abota/blobstore';
import type { Clock } from './clock.js';
import type { AppConfig } from './config.js';
import type { Db } from './db/database.js';
import type { Logger } from './logger.js';
import type { PollBatcher } from './db/poll-statement.js';
import type { Metrics } from './metrics.js';
import type { TokenBuckets } from './rate-limit.js';
import type { RolloutEngine } from './rollout/engine.js';

export { type Clock, systemClock } from './clock.js';

export { API_KEY_ROLES, type ApiKeyRole } from '@abota/api';

export interface AuthedApiKey {
  id: string;
  name: string;
  role: ApiKeyRole;
}

/** A token whose signature and claims verified; its jti is not consumed yet. */
export interface VerifiedDeviceToken {
  deviceId: string;
  /** Primary key in used_jwt_ids: "<deviceId>:<jti>" (jti values are only unique per device). */
  jtiKey: string;
  /** Until when the jti must be remembered: exp + clock tolerance. */
  jtiExpiresAt: Date;
}

export interface AuthedDevice {
  id: string;
  product: string;
  hardware: string;
  tags: string[];
  currentVersion: string | null;
}

export interface AppDeps {
  db: Db;
  blobs: BlobStore;
  clock: Clock;
  config: AppConfig;
  logger: Logger;
  metrics: Metrics;
  /**
   * Device public keys as node:crypto KeyObjects (Ed25519, verified synchronously; bounded, oldest
   * dropped first: auth/device-jwt.ts). Safe to cache without cross-replica invalidation:
   * a device id is a random UUID bound to one key for life; decommissioning is checked on the
   * database row on every request, not in this cache.
   */
  deviceKeys: Map<string, KeyObject>;
  /** The poll statement, batched across concurrent polls (db/poll-statement.ts). */
  polls: PollBatcher;
  /** Rollout offers (cached), automatic stage transitions, cross-replica invalidation. */
  rollouts: RolloutEngine;
  /** Per-process token buckets of the device routes and the console's sign-in (rate-limit.ts). */
  limits: {
    register: TokenBuckets;
    source: TokenBuckets;
    device: TokenBuckets;
    signIn: TokenBuckets;
    signInTotal: TokenBuckets;
  };
}

export interface AppEnv {
  Variables: {
    device: AuthedDevice;
    /** Set by the poll route's authentication (jti not yet consumed). */
    deviceToken: VerifiedDeviceToken;
    apiKey: AuthedApiKey;
    /** "device:<id>" or "apikey:<id>", for the audit log. */
    actor: string;
  };
}
