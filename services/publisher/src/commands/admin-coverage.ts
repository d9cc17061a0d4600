// Which `abota` command makes each operation of the update server's admin API, and why the few
// without one have none. admin-coverage.test.ts holds this against /openapi.json of a real
// server: a new admin route without a command (or a reason here) fails the test.

/** "METHOD /path" (as in /openapi.json) → the `abota` command that calls it. */
export const ADMIN_COMMANDS: Readonly<Record<string, string>> = {
  'POST /v1/admin/products': 'product create',
  'GET /v1/admin/products': 'product list',
  'GET /v1/admin/products/{id}': 'product show',
  'PATCH /v1/admin/products/{id}': 'product set',
  'PUT /v1/admin/products/{id}/trust-root': 'product set-root',
  'POST /v1/admin/releases': 'release push',
  'GET /v1/admin/releases': 'release list',
  'GET /v1/admin/releases/{id}': 'release show',
  'POST /v1/admin/releases/{id}/yank': 'release yank',
  'POST /v1/admin/releases/{id}/deltas': 'release push',
  'GET /v1/admin/releases/{id}/deltas': 'release deltas',
  'DELETE /v1/admin/releases/{id}/deltas/{deltaId}': 'release remove-delta',
  'GET /v1/admin/blobs': 'blob list',
  'GET /v1/admin/blobs/sha256/{hex}': 'blob show',
  'PUT /v1/admin/blobs/sha256/{hex}': 'release push',
  'DELETE /v1/admin/blobs/sha256/{hex}': 'blob delete',
  'POST /v1/admin/uploads': 'release push',
  'GET /v1/admin/uploads': 'release push',
  'GET /v1/admin/uploads/{id}': 'release push',
  'PUT /v1/admin/uploads/{id}/parts/{n}': 'release push',
  'POST /v1/admin/uploads/{id}/complete': 'release push',
  'GET /v1/admin/devices': 'device list',
  'GET /v1/admin/devices/{id}': 'device show',
  'PUT /v1/admin/devices/{id}/tags': 'device tags',
  'POST /v1/admin/devices/{id}/decommission': 'device decommission',
  'POST /v1/admin/provisioning-tokens': 'token create',
  'GET /v1/admin/provisioning-tokens': 'token list',
  'POST /v1/admin/provisioning-tokens/{id}/revoke': 'token revoke',
  'POST /v1/admin/api-keys': 'apikey create',
  'GET /v1/admin/api-keys': 'apikey list',
  'POST /v1/admin/api-keys/{id}/revoke': 'apikey revoke',
  'POST /v1/admin/rollouts': 'rollout create',
  'POST /v1/admin/rollouts/preview': 'rollout create',
  'GET /v1/admin/rollouts': 'rollout list',
  'GET /v1/admin/rollouts/{id}/status': 'rollout status',
  'POST /v1/admin/rollouts/{id}/start': 'rollout start',
  'POST /v1/admin/rollouts/{id}/pause': 'rollout pause',
  'POST /v1/admin/rollouts/{id}/resume': 'rollout resume',
  'POST /v1/admin/rollouts/{id}/abort': 'rollout abort',
  'POST /v1/admin/rollouts/{id}/advance': 'rollout advance',
  'POST /v1/admin/rollouts/{id}/rollback': 'rollout rollback',
  'POST /v1/admin/rollouts/{id}/approve': 'rollout approve',
};

/** Admin operations with no command of their own, each with the reason. */
export const WITHOUT_COMMAND: Readonly<Record<string, string>> = {
  'DELETE /v1/admin/uploads/{id}':
    'an interrupted `release push` resumes its session when run again, and the server removes sessions idle past uploadSessionIdleSeconds',
  'GET /v1/admin/rollouts/{id}':
    '`abota rollout status <id>` shows the same rollout with its per-stage device counts (GET .../status)',
  'GET /v1/admin/rollouts/{id}/events':
    '`abota rollout status --watch` polls .../status; the server-sent event stream is for dashboards',
};
