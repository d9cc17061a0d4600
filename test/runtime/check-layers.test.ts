// scripts/check-layers.mjs (`npm run check:layers`, run by `npm run lint` and so by CI): the
// repository passes, and a small tree with each kind of violation fails with a line naming it.
import { spawnSync } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { makeTempDir } from '@abota/testkit';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const script = join(root, 'scripts', 'check-layers.mjs');
const made: string[] = [];
afterAll(async () => {
  for (const dir of made) await rm(dir, { recursive: true, force: true });
});

function checkLayers(dir?: string): { status: number | null; output: string } {
  const r = spawnSync(process.execPath, [script, ...(dir === undefined ? [] : ['--root', dir])], {
    encoding: 'utf8',
  });
  return { status: r.status, output: r.stdout + r.stderr };
}

/** A monorepo with packages/lib and services/svc; `files` adds or replaces source files. */
async function tree(
  files: Record<string, string> = {},
  libDeps: Record<string, string> = {},
): Promise<string> {
  const dir = await makeTempDir('abota-layers-');
  made.push(dir);
  const all: Record<string, string> = {
    'package.json': JSON.stringify({ name: 'mono', workspaces: ['packages/*', 'services/*'] }),
    'packages/lib/package.json': JSON.stringify({ name: '@x/lib', dependencies: libDeps }),
    'packages/lib/src/index.ts': "export { a } from './a.js';\n",
    'packages/lib/src/a.ts': 'export const a = 1;\n',
    'services/svc/package.json': JSON.stringify({ name: '@x/svc', dependencies: { '@x/lib': '*' } }),
    'services/svc/src/index.ts': "import { a } from '@x/lib';\nexport const b = a;\n",
    ...files,
  };
  for (const [path, text] of Object.entries(all)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  return dir;
}

describe('check-layers', () => {
  it('passes on this repository', () => {
    const r = checkLayers();
    expect(r.output).toMatch(/no package imports a service, no import circle/);
    expect(r.status).toBe(0);
  });

  it('passes on a clean tree', async () => {
    expect(checkLayers(await tree()).status).toBe(0);
  });

  it('fails on a package importing a service, by name (type-only too) or by relative path', async () => {
    const r = checkLayers(
      await tree({
        'packages/lib/src/a.ts': "import type { b } from '@x/svc';\nexport const a = 1 as typeof b;\n",
        'packages/lib/test/t.test.ts': "await import('../../../services/svc/src/index.ts');\n",
      }),
    );
    expect(r.status).toBe(1);
    expect(r.output).toMatch(/packages\/lib\/src\/a\.ts: imports '@x\/svc' \(services\/svc/);
    expect(r.output).toMatch(/packages\/lib\/test\/t\.test\.ts: imports '\.\.\/\.\.\/\.\.\/services\/svc/);
  });

  it('fails on a package depending on a service in package.json (a workspace circle as well)', async () => {
    const r = checkLayers(await tree({}, { '@x/svc': '*' }));
    expect(r.status).toBe(1);
    expect(r.output).toMatch(/packages\/lib\/package\.json: dependencies names @x\/svc/);
    expect(r.output).toMatch(/workspaces: dependency circle/);
  });

  it('fails on an import circle inside src/, a type-only one included', async () => {
    const r = checkLayers(
      await tree({
        'packages/lib/src/a.ts':
          "import type { C } from './c.js';\nexport const a = 1;\nexport type A = C;\n",
        'packages/lib/src/c.ts': "import { a } from './a.js';\nexport type C = typeof a;\n",
      }),
    );
    expect(r.status).toBe(1);
    expect(r.output).toMatch(
      /packages\/lib\/src: import circle packages\/lib\/src\/a\.ts → packages\/lib\/src\/c\.ts → packages\/lib\/src\/a\.ts/,
    );
  });
});
