#!/usr/bin/env node
// `npm run test:vm`: build the CLI and the agent package, run the real-VM tests (test/vm, QEMU under TCG), then print
// one closing line like scripts/test.mjs: "VM tests: N passed, N failed, N skipped" and the wall time.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const report = join(root, 'test', 'vm', '.vitest', 'results.json');
const started = Date.now();
rmSync(report, { force: true });

const build = spawnSync('npx', ['turbo', 'run', 'build', '--output-logs=errors-only'], {
  cwd: root,
  stdio: 'inherit',
});
let status = build.status ?? 1;
// The guest installs the agent from its package, as a device would (test/vm/guest/guest-tree.ts).
if (status === 0) {
  const pkg = spawnSync('node', ['scripts/package-agent.mjs', '--json'], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  status = pkg.status ?? 1;
}
if (status === 0) {
  const vitest = spawnSync(
    'npx',
    ['vitest', 'run', '--config', 'vm/vitest.config.ts', ...process.argv.slice(2)],
    {
      cwd: join(root, 'test'),
      stdio: 'inherit',
    },
  );
  status = vitest.status ?? 1;
}
let passed = 0;
let failed = 0;
let skipped = 0;
if (existsSync(report)) {
  const r = JSON.parse(readFileSync(report, 'utf8'));
  passed = r.numPassedTests ?? 0;
  failed = r.numFailedTests ?? 0;
  skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
}
if (status !== 0 && failed === 0) failed = 1;
const seconds = ((Date.now() - started) / 1000).toFixed(0);
console.log(`\nVM tests: ${passed} passed, ${failed} failed, ${skipped} skipped (${seconds} s)`);
process.exit(status);
