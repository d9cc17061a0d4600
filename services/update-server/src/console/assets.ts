// The console's static files: its own CSS and JS (services/update-server/console-assets, shipped
// with the package) and uPlot (the npm package, served from node_modules — no CDN). Read and
// compressed (brotli, gzip) once at start-up; served under a content-hashed URL
// (/console/static/<name>?v=<hash>) with a year of immutable caching, or revalidated by ETag.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import type { Context } from 'hono';

/** Next to src/ and dist/, like the drizzle migrations. */
const ASSETS_DIR = fileURLToPath(new URL('../../console-assets/', import.meta.url));
const require = createRequire(import.meta.url);

const SOURCES = {
  'console.css': `${ASSETS_DIR}console.css`,
  'console.js': `${ASSETS_DIR}console.js`,
  'rollouts.js': `${ASSETS_DIR}rollouts.js`,
  'rollouts.css': `${ASSETS_DIR}rollouts.css`,
  'uplot.js': require.resolve('uplot/dist/uPlot.iife.min.js'),
  'uplot.css': require.resolve('uplot/dist/uPlot.min.css'),
} as const;

export type AssetName = keyof typeof SOURCES;

export interface Asset {
  name: AssetName;
  type: string;
  body: Buffer;
  br: Buffer;
  gzip: Buffer;
  hash: string;
  /** Where pages link it: content-hashed, so it can be cached for good. */
  url: string;
}

let loaded: Map<string, Asset> | undefined;

export function consoleAssets(): Map<string, Asset> {
  if (loaded !== undefined) return loaded;
  const map = new Map<string, Asset>();
  for (const [name, path] of Object.entries(SOURCES) as [AssetName, string][]) {
    const body = readFileSync(path);
    const hash = createHash('sha256').update(body).digest('hex').slice(0, 16);
    map.set(name, {
      name,
      type: name.endsWith('.css') ? 'text/css; charset=utf-8' : 'text/javascript; charset=utf-8',
      body,
      br: brotliCompressSync(body, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }),
      gzip: gzipSync(body, { level: 9 }),
      hash,
      url: `/console/static/${name}?v=${hash}`,
    });
  }
  loaded = map;
  return map;
}

export const assetUrl = (name: AssetName): string => consoleAssets().get(name)!.url;

/** Compressed bytes a browser downloads for these assets (gzip, what every browser accepts). */
export const shippedBytes = (names: readonly AssetName[]): number =>
  names.reduce((sum, n) => sum + consoleAssets().get(n)!.gzip.length, 0);

export function serveAsset(c: Context, name: string): Response {
  const asset = consoleAssets().get(name);
  if (asset === undefined) return c.text('no such console asset', 404);
  const etag = `"${asset.hash}"`;
  const headers: Record<string, string> = {
    'content-type': asset.type,
    etag,
    vary: 'accept-encoding',
    'x-content-type-options': 'nosniff',
    'cache-control':
      c.req.query('v') === asset.hash ? 'public, max-age=31536000, immutable' : 'public, max-age=300',
  };
  if (c.req.header('if-none-match') === etag) return new Response(null, { status: 304, headers });
  const accept = c.req.header('accept-encoding') ?? '';
  let body = asset.body;
  if (/\bbr\b/.test(accept)) {
    body = asset.br;
    headers['content-encoding'] = 'br';
  } else if (/\bgzip\b/.test(accept)) {
    body = asset.gzip;
    headers['content-encoding'] = 'gzip';
  }
  return new Response(new Uint8Array(body), { status: 200, headers });
}
