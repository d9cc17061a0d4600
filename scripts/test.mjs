#!/usr/bin/env node
// `npm test`: run every workspace's vitest suite through Turborepo (one package at a time on
// a 2-core machine), then print one closing line for the whole repository:
// "Tests: N passed, N failed, N skipped" from each suite's JSON report.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { requireNode } from './require-node.mjs';

requireNode();

const root = new URL('..', import.meta.url).pathname;
const workspaces = ['packages', 'services']
  .flatMap((dir) => readdirSync(join(root, dir)).map((name) => join(root, dir, name)))
  .concat([join(root, 'test')]);
const reportOf = (ws) => join(ws, '.vitest', 'results.json');

for (const ws of workspaces) rmSync(reportOf(ws), { force: true });

const turbo = spawnSync(
  'npx',
  ['turbo', 'run', 'test', '--concurrency=1', '--continue', ...process.argv.slice(2)],
  { cwd: root, stdio: 'inherit' },
);

let passed = 0;
let failed = 0;
let skipped = 0;
for (const ws of workspaces) {
  if (!existsSync(reportOf(ws))) continue;
  const r = JSON.parse(readFileSync(reportOf(ws), 'utf8'));
  passed += r.numPassedTests ?? 0;
  failed += r.numFailedTests ?? 0;
  skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
}
const status = turbo.status ?? 1;
if (status !== 0 && failed === 0) failed = 1; // a suite that crashed before reporting still fails the run
console.log(`\nTests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(status);
