// The admin API (/v1/admin/*): API-key authenticated, one sub-app per resource, mounted here in
// one chain so `AdminRoutes` carries every admin path, input and output (the publisher's typed
// client, hono/client `hc`, is typed by it). The streamed uploads (PUT of a blob or a part) are
// separate sub-apps (routes/blobs.ts, routes/uploads.ts): app.ts mounts them without the JSON limit.
import type { AppDeps } from '../context.js';
import { credentialRoutes } from './admin/credentials.js';
import { deltaRoutes } from './admin/deltas.js';
import { deviceAdminRoutes } from './admin/devices.js';
import { productRoutes } from './admin/products.js';
import { releaseRoutes } from './admin/releases.js';
import { rolloutAdvanceRoutes } from './admin/rollout-advance.js';
import { rolloutApproveRoutes } from './admin/rollout-approve.js';
import { rolloutRoutes } from './admin/rollouts.js';
import { createRouter } from './router.js';

export function adminRoutes(deps: AppDeps) {
  return createRouter()
    .route('/', productRoutes(deps))
    .route('/', releaseRoutes(deps))
    .route('/', deltaRoutes(deps))
    .route('/', deviceAdminRoutes(deps))
    .route('/', credentialRoutes(deps))
    .route('/', rolloutRoutes(deps))
    .route('/', rolloutAdvanceRoutes(deps))
    .route('/', rolloutApproveRoutes(deps));
}

export type AdminRoutes = ReturnType<typeof adminRoutes>;
