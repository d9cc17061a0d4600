// @abota/update-server/api is what a client of the server loads from it: the route types and, from
// @abota/api, the schemas of the HTTP API. Loading it must not load the server itself — no database driver,
// query builder, logger or blob store — so the CLI does not start any of them. Checked on the
// built entry (dist/api.js) in a fresh Node process that records every module it resolves.
import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';

/** A module resolve hook (runs on Node's loader thread) printing each resolved URL to stderr. */
const HOOK = `import { writeSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  writeSync(2, 'resolved ' + result.url + '\\n');
  return result;
}`;
const REGISTER = `import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOK)}));`;

function modulesLoadedBy(specifier: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [
        '--import',
        `data:text/javascript,${encodeURIComponent(REGISTER)}`,
        '--input-type=module',
        '-e',
        `await import(${JSON.stringify(specifier)});`,
      ],
      { cwd: new URL('..', import.meta.url).pathname, timeout: 60_000 },
      (error, _stdout, stderr) => {
        if (error !== null) return reject(new Error(`${error.message}\n${stderr}`));
        resolve(
          stderr
            .split('\n')
            .filter((line) => line.startsWith('resolved '))
            .map((line) => line.slice('resolved '.length)),
        );
      },
    );
  });
}

describe('@abota/update-server/api', () => {
  it('loads the API schemas (zod) without the server: no database driver, drizzle, logger or blob store', async () => {
    const loaded = await modulesLoadedBy('@abota/update-server/api');
    expect(loaded.some((url) => url.endsWith('/dist/api.js'))).toBe(true);
    expect(loaded.some((url) => url.includes('/zod/'))).toBe(true);
    const server = loaded.filter((url) =>
      /\/node_modules\/(drizzle-orm|@electric-sql\/pglite|pg|pino|@aws-sdk|@hono\/node-server|@abota\/blobstore)\//.test(
        url,
      ),
    );
    expect(server).toEqual([]);
    const own = loaded
      .filter((url) => url.includes('/update-server/dist/'))
      .map((url) => url.replace(/.*\/dist\//, ''));
    expect([...new Set(own)].sort()).toEqual(['api.js']);
    // The schemas' one home, @abota/api (what the `abota` CLI installs instead of the server).
    const api = loaded
      .filter((url) => url.includes('/packages/api/dist/'))
      .map((url) => url.replace(/.*\/dist\//, ''));
    expect([...new Set(api)].sort()).toEqual([
      'index.js',
      'rollout.js',
      'schemas.js',
      'uploads.js',
      'values.js',
    ]);
  });

  it('the whole server entry, for contrast, does load them (so the check above can fail)', async () => {
    const loaded = await modulesLoadedBy('@abota/update-server');
    expect(loaded.some((url) => url.includes('/node_modules/drizzle-orm/'))).toBe(true);
    expect(loaded.some((url) => url.includes('/node_modules/@electric-sql/pglite/'))).toBe(true);
  });
});
