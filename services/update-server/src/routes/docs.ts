// The OpenAPI 3.1 document (generated from the same zod schemas that validate requests) and a
// self-contained HTML page listing the operations — no external CDN, works offline.
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { Hono } from 'hono';
import type { AppEnv } from '../context.js';
import { createRouter } from './router.js';

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

export const DOCUMENT_CONFIG = {
  openapi: '3.1.0',
  info: {
    title: 'abota update server',
    version: '1',
    description:
      'Device API (/v1/device/*, Ed25519 JWTs) and admin API (/v1/admin/*, API keys). Errors: { "error": { "code", "message" } }.',
  },
};

type OpenApiDocument = ReturnType<OpenAPIHono['getOpenAPI31Document']>;

/**
 * `/openapi.json` and `/docs` over the whole app's document, which only the app that mounts every
 * sub-app has: it passes a function reading its own registry (app.ts). The security schemes are
 * registered here and reach that registry when this sub-app is mounted. Typed as a plain Hono:
 * clients have no use for the document's type, and it is too large for declaration files.
 */
export function docsRoutes(openApiDocument: () => OpenApiDocument): Hono<AppEnv> {
  const app = createRouter();
  app.openAPIRegistry.registerComponent('securitySchemes', 'apiKey', {
    type: 'http',
    scheme: 'bearer',
    description: 'Admin API key: Authorization: Bearer abk_...',
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'deviceJwt', {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description:
      'JWT signed (EdDSA) by the device key: iss = sub = device id, aud, iat, exp ≤ iat + 300 s, unique jti',
  });
  return app
    .get('/openapi.json', (c) => c.json(openApiDocument()))
    .get('/docs', (c) => {
      const document = openApiDocument();
      const rows: string[] = [];
      for (const [path, item] of Object.entries(document.paths ?? {})) {
        for (const [method, op] of Object.entries(item ?? {})) {
          if (typeof op !== 'object' || op === null || !('responses' in op)) continue;
          const summary = 'summary' in op && typeof op.summary === 'string' ? op.summary : '';
          const tags = 'tags' in op && Array.isArray(op.tags) ? op.tags.join(', ') : '';
          rows.push(
            `<tr><td>${escapeHtml(tags)}</td><td><code>${method.toUpperCase()}</code></td><td><code>${escapeHtml(path)}</code></td><td>${escapeHtml(summary)}</td></tr>`,
          );
        }
      }
      return c.html(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>abota update server API</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style>
</head><body><h1>abota update server API</h1>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1). Errors are <code>{ "error": { "code", "message" } }</code>.</p>
<table><thead><tr><th>group</th><th>method</th><th>path</th><th>what it does</th></tr></thead><tbody>
${rows.join('\n')}
</tbody></table></body></html>`);
    });
}
