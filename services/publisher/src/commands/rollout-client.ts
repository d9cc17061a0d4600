// The rollout documents `abota rollout` reads, as the server's own schemas define them
// (@abota/api, src/rollout.ts): no shape is written twice.
import type { ReleaseSchema, RolloutPreviewSchema, RolloutSchema, RolloutStatusSchema } from '@abota/api';

export type RolloutView = ReturnType<typeof RolloutSchema.parse>;
export type RolloutStatusDocument = ReturnType<typeof RolloutStatusSchema.parse>;
export type RolloutPreviewDocument = ReturnType<typeof RolloutPreviewSchema.parse>;
export type StageView = RolloutView['stages'][number];
export type Counts = RolloutStatusDocument['status']['overall']['counts'];
export type ReleaseView = ReturnType<typeof ReleaseSchema.parse>;
export type MaintenanceWindowView = NonNullable<RolloutView['maintenanceWindow']>;
