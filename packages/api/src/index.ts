// @abota/api — the HTTP API of the update server as data: the zod schemas of every request and
// response body (validation, TypeScript types and the OpenAPI document in one place) and the
// enumerations they carry. The server validates and documents with them; a client (the `abota`
// CLI) checks answers at its trust boundary with the same schemas, without installing the server.
// Depends on zod and @hono/zod-openapi only: no database driver, logger or blob store.
export * from './rollout.js';
export * from './schemas.js';
export * from './uploads.js';
export * from './values.js';
