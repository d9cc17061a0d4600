// What the agent bundle loads at start (README "Memory"): it is CommonJS, because an ES-module
// entry starts node's ESM loader and reads every export of the builtins it imports (lazy getters
// such as util.parseArgs and crypto.webcrypto load their modules), and it leaves out the
// builtins its install path never uses. Together 1.6 MiB of the agent's resident memory on
// Node 24; this test fails when one of them comes back.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { makeTempDir } from '@abota/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_BUNDLE, unitEnvironment } from '../fixtures/agent-unit.js';

let dir: string;
beforeAll(async () => {
  dir = await makeTempDir('abota-agent-modules-');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the agent bundle at start', () => {
  it('is CommonJS and loads neither child_process, worker_threads, v8, vm nor the lazy util/crypto parts', async () => {
    expect(existsSync(AGENT_BUNDLE), `${AGENT_BUNDLE} is missing: npm run build`).toBe(true);
    // A preload that writes the builtins the process loaded when it exits.
    const list = join(dir, 'modules.json');
    const hook = join(dir, 'hook.cjs');
    await writeFile(
      hook,
      `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(list)}, JSON.stringify(process.moduleLoadList)));\n`,
    );
    const env = { ...process.env, ...(await unitEnvironment()) };
    const r = await promisify(execFile)(process.execPath, ['--require', hook, AGENT_BUNDLE, '--help'], {
      env,
    });
    expect(r.stdout).toContain('abota-agent');
    const loaded = (JSON.parse(await readFile(list, 'utf8')) as string[]).filter((m) =>
      m.startsWith('NativeModule '),
    );
    const unwanted = [
      'child_process',
      'worker_threads',
      'v8',
      'vm',
      'internal/crypto/webcrypto',
      'internal/util/diff',
    ].filter((m) => loaded.includes(`NativeModule ${m}`));
    expect(unwanted).toEqual([]);
    // CommonJS: the builtins are require()d (an ES module would import them).
    expect((await readFile(AGENT_BUNDLE, 'utf8')).includes('require("node:fs/promises")')).toBe(true);
  });
});
