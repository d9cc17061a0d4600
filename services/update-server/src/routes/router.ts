// The one factory every route module builds its sub-app with: an OpenAPIHono over the server's
// context whose request validation failures answer 400 ERR_VALIDATION with the field paths, never
// the raw zod dump. app.ts mounts the sub-apps with `.route()` (hono's composition), so `typeof`
// each sub-app carries its paths, inputs and outputs for the typed client (hono/client `hc`).
import { OpenAPIHono } from '@hono/zod-openapi';
import type { AppEnv } from '../context.js';
import { errorBody } from '../errors.js';

export function createRouter(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result, c) => {
      if (!result.success) {
        const message = result.error.issues
          .slice(0, 8)
          .map((i) => `${i.path.length === 0 ? '(body)' : i.path.join('.')}: ${i.message}`)
          .join('; ');
        return c.json(errorBody('ERR_VALIDATION', message), 400);
      }
      return undefined;
    },
  });
}

/** A JSON body (request or response) of a route definition: `...json(Schema)`. */
export const json = <T>(schema: T) => ({ content: { 'application/json': { schema } } });
