// @abota/update-server: the update server as a library (createApp, the drizzle schema, the
// config loader, database opening) for the `abota-server` bin, end-to-end tests and the demo.
export { type App, type CreateAppOptions, createApp } from './app.js';
export { bootstrapAdminKey } from './auth/api-keys.js';
export { generateSecret, hashSecret } from './auth/secrets.js';
export { type AppConfig, DEFAULT_APP_CONFIG, loadConfig, type ServerConfig } from './config.js';
export { type ApiKeyRole, type Clock, systemClock } from './context.js';
export {
  type Database,
  type DatabaseOptions,
  type Db,
  MIGRATIONS_FOLDER,
  openDatabase,
} from './db/database.js';
export * as schema from './db/schema.js';
export { ServerError, type ServerErrorCode } from './errors.js';
export { createLogger, type Logger } from './logger.js';
export { gcUploadSessions, pruneUsedJwtIds } from './maintenance.js';
export { Metrics } from './metrics.js';
export { BUCKET_COUNT, inRolloutPercent, rolloutBucket } from './rollout/bucket.js';
export { type EvaluationResult, RolloutEngine, type RolloutEngineOptions } from './rollout/engine.js';
export type {
  MaintenanceWindow,
  Selector as RolloutSelector,
  StageSpec as RolloutStageSpec,
} from './rollout/model.js';
export type { RolloutStatusView } from './rollout/status.js';
export { type RunningServer, startServer } from './server.js';
