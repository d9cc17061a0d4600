#!/usr/bin/env node
// `npm test`: run every workspace's vitest suite through Turborepo (one package at a time on
// a 2-core machine), then print one closing line for the whole repository:
// "Tests: N passed, N failed, N skipped" from each suite's JSON report, after the failed tests
// themselves (workspace, file, name, the first lines of the error): Turborepo interleaves the
// packages' output, so a failure shown early is otherwise far above the end of a long log.
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
const failures = [];
// ANSI colour codes out of the error text.
const plain = (text) => text.replace(/\u001b\[[0-9;]*m/g, '');
for (const ws of workspaces) {
  if (!existsSync(reportOf(ws))) continue;
  const r = JSON.parse(readFileSync(reportOf(ws), 'utf8'));
  passed += r.numPassedTests ?? 0;
  failed += r.numFailedTests ?? 0;
  skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  for (const file of r.testResults ?? []) {
    const where = `${ws.slice(root.length)}/${file.name.startsWith(ws) ? file.name.slice(ws.length + 1) : file.name}`;
    const failedTests = (file.assertionResults ?? []).filter((t) => t.status === 'failed');
    if (failedTests.length === 0 && file.status === 'failed')
      failures.push({ where, name: '(the file failed to run)', message: file.message ?? '' });
    for (const t of failedTests)
      failures.push({ where, name: t.fullName ?? t.title, message: (t.failureMessages ?? []).join('\n') });
  }
}
if (failures.length > 0) {
  console.log(`\nFailed tests (${failures.length}):`);
  for (const f of failures) {
    console.log(`\n  ${f.where} > ${f.name}`);
    const lines = plain(f.message)
      .split('\n')
      .filter((line) => !/node_modules\/|^\s+at new Promise|^\s+at process\.process/.test(line));
    for (const line of lines.slice(0, 20)) console.log(`    ${line}`);
  }
}
const status = turbo.status ?? 1;
if (status !== 0 && failed === 0) failed = 1; // a suite that crashed before reporting still fails the run
console.log(`\nTests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(status);
