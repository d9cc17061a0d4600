// @abota/update-server/api: what a client of the HTTP API takes from the server without running it.
// The type of the mounted routes (hono/client `hc` is typed by it; a type, erased at run time) and
// the zod schemas of the bodies, so a client checks answers at its trust boundary with the same
// schemas the server validates and documents with. Loading this entry loads zod and
// @hono/zod-openapi only — no database driver, logger or blob store (test/api-entry.test.ts).
export type { App as ServerRoutes } from './app.js';
export { API_KEY_ROLES, type ApiKeyRole } from './context.js';
export { ROLLOUT_LIFECYCLE } from './rollout/model.js';
export { RolloutSchema, RolloutStatusSchema } from './rollout/schemas.js';
export {
  ApiKeySchema,
  BlobInfoSchema,
  BlobListItemSchema,
  BlobPutResponseSchema,
  DeltaListSchema,
  DeltaSchema,
  DeviceDetailSchema,
  DeviceSchema,
  ErrorSchema,
  IdParam,
  ProductIdParam,
  ProductSchema,
  ProvisioningTokenSchema,
  listOf,
  pageOf,
  ReleaseSchema,
  Sha256HexParam,
} from './schemas.js';
export { UploadListSchema, UploadPartSchema, UploadSchema } from './upload-schemas.js';
