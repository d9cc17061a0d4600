// `abota --help` and `abota --version` load the command table only (./cli.ts, ./cli/): no
// action module, no @abota package, no admin client or progress bar. Measured on the built CLI
// (README "Start-up"): 182 → 35 modules, peak RSS 76 → 56 MiB.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('./cli.ts', import.meta.url));

// Runs main(argv) of the TypeScript sources in a fresh process and lists every module it loaded.
const PROBE = `
import { registerHooks } from 'node:module';
const loaded = [];
registerHooks({ load(url, context, next) { loaded.push(url); return next(url, context); } });
const { main } = await import(${JSON.stringify(cli)});
const argv = JSON.parse(process.env.PROBE_ARGV);
const write = process.stdout.write.bind(process.stdout);
process.stdout.write = () => true;
const status = await main(argv);
process.stdout.write = write;
write(JSON.stringify({ status, loaded }));
`;

async function modulesLoadedBy(argv: string[]): Promise<string[]> {
  const { stdout } = await run(
    process.execPath,
    ['--conditions=@abota/source', '--import', 'tsx', '--input-type=module', '-e', PROBE],
    { env: { ...process.env, PROBE_ARGV: JSON.stringify(argv) } },
  );
  const { status, loaded } = JSON.parse(stdout) as { status: number; loaded: string[] };
  expect(status).toBe(0);
  return loaded.filter((url) => !url.startsWith('node:'));
}

const TABLE =
  /\/services\/publisher\/src\/(cli\.ts|cli\/[a-z-]+\.ts|usage\.ts|release\/(codec|errors)\.ts)$|\/node_modules\/commander\//;

describe('abota start-up', () => {
  for (const argv of [['--help'], ['--version'], ['release', '--help']]) {
    it(`abota ${argv.join(' ')} loads only the command table`, async () => {
      const loaded = await modulesLoadedBy(argv);
      expect(loaded.some((url) => url.endsWith('/src/cli/release.ts'))).toBe(true);
      expect(loaded.filter((url) => !TABLE.test(url))).toEqual([]);
    });
  }

  it('the help of one command loads no action either', async () => {
    const loaded = await modulesLoadedBy(['keys', 'show', '--help']);
    expect(loaded.filter((url) => !TABLE.test(url))).toEqual([]);
  });
});
