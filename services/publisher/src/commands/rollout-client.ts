// The rollout documents `abota rollout` reads, as the server's own schemas define them
// (@abota/update-server/api, from its src/rollout/schemas.ts): no shape is written twice.
import type { ReleaseSchema, RolloutSchema, RolloutStatusSchema } from '@abota/update-server/api';

export type RolloutView = ReturnType<typeof RolloutSchema.parse>;
export type RolloutStatusDocument = ReturnType<typeof RolloutStatusSchema.parse>;
export type StageView = RolloutView['stages'][number];
export type Counts = RolloutStatusDocument['status']['overall']['counts'];
export type ReleaseView = ReturnType<typeof ReleaseSchema.parse>;
export type MaintenanceWindowView = NonNullable<RolloutView['maintenanceWindow']>;
