// The admin API (/v1/admin/*): API-key authenticated, one module per resource.
import type { App } from '../app.js';
import type { AppDeps } from '../context.js';
import { registerCredentialRoutes } from './admin/credentials.js';
import { registerDeltaRoutes } from './admin/deltas.js';
import { registerDeviceAdminRoutes } from './admin/devices.js';
import { registerProductRoutes } from './admin/products.js';
import { registerReleaseRoutes } from './admin/releases.js';
import { registerRolloutAdvanceRoute } from './admin/rollout-advance.js';
import { registerRolloutRoutes } from './admin/rollouts.js';

export function registerAdminRoutes(app: App, deps: AppDeps): void {
  registerProductRoutes(app, deps);
  registerReleaseRoutes(app, deps);
  registerDeltaRoutes(app, deps);
  registerDeviceAdminRoutes(app, deps);
  registerCredentialRoutes(app, deps);
  registerRolloutRoutes(app, deps);
  registerRolloutAdvanceRoute(app, deps);
}
