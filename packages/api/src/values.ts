// The enumerations the HTTP API carries, as plain values: API key roles, rollout lifecycle and
// kinds, and the device states a rollout counts. The server's rollout model and auth use them;
// the schemas (schemas.ts, rollout.ts) validate with them.

export type ApiKeyRole = 'admin' | 'publisher' | 'operator' | 'viewer';
export const API_KEY_ROLES = ['admin', 'publisher', 'operator', 'viewer'] as const;

/** Rollout lifecycle. `active` is "running at stage currentStage" (kept for API compatibility). */
export const ROLLOUT_LIFECYCLE = ['draft', 'active', 'paused', 'completed', 'aborted'] as const;
export type RolloutLifecycle = (typeof ROLLOUT_LIFECYCLE)[number];

/** `rollback` rollouts return devices to an earlier release and win over normal ones. */
export const ROLLOUT_KINDS = ['normal', 'rollback'] as const;
export type RolloutKind = (typeof ROLLOUT_KINDS)[number];

/** What a device reports of an update (POST /v1/device/report `state`). */
export const REPORT_STATES = [
  'downloading',
  'installing',
  'installed',
  'rebooting',
  'committed',
  'failed',
  'rolled-back',
  'device-error',
  'healthy',
  'unhealthy',
] as const;

/** Device states inside a rollout (rollout_devices.state): offered by the server, then reported. */
export const DEVICE_STATES = ['offered', ...REPORT_STATES] as const;

/**
 * Health reports during a stage's bake window after commit (`bakeMinutes`): `healthy` records how
 * long the device has stayed healthy since it committed (its rollout state stays `committed`);
 * `unhealthy` (a failed health check, a crash loop) makes it a failure of the stage.
 */
export const HEALTH_REPORT_STATES = ['healthy', 'unhealthy'] as const;
export type DeviceState = (typeof DEVICE_STATES)[number];
