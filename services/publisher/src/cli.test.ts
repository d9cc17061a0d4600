import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

describe('abota bin', () => {
  it('is linked at the repo root and prints help with exit 0', async () => {
    const { stdout } = await run('npx', ['--no-install', 'abota', '--help'], {
      cwd: new URL('../../..', import.meta.url),
    });
    expect(stdout).toContain('Usage: abota');
    expect(stdout).toContain('verity');
  });
});
