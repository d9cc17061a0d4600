// @abota/update-server/api: what a client of the HTTP API takes from the server without running it.
// The type of the mounted routes (hono/client `hc` is typed by it; a type, erased at run time), and
// again the schemas of the bodies, whose one home is @abota/api: a client that checks answers at
// run time imports them from there, so it need not install the server (its database drivers).
// Loading this entry loads @abota/api (zod, @hono/zod-openapi) only — no database driver, logger
// or blob store (test/api-entry.test.ts).
export * from '@abota/api';
export type { App as ServerRoutes } from './app.js';
