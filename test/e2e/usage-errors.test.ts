// Usage errors of the three command lines, run as a user runs them (the real bins as child
// processes): every command of `abota`, `abota-agent` and `abota-server` exits 2 on a usage
// error, and a command missing several required arguments and options names all of them at once.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildProgram } from '@abota/publisher';
import { releaseBuildArgs, runNode, withTempDir } from '@abota/testkit';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';

const bin = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));
const ABOTA = bin('services/publisher/bin/abota.js');
const AGENT = bin('packages/client/bin/abota-agent.js');
const SERVER = bin('services/update-server/bin/abota-server.js');
/** No server, key or config from the developer's environment may satisfy a missing flag. */
const CLEAN_ENV = {
  ABOTA_SERVER: undefined,
  ABOTA_API_KEY: undefined,
  ABOTA_CONFIG: '/nonexistent/agent.json',
};

interface Leaf {
  path: string[];
  /** Required arguments and mandatory options, as `<name>` / `--flag`. */
  required: string[];
}

function leaves(cmd: Command, path: string[] = []): Leaf[] {
  if (cmd.commands.length > 0) return cmd.commands.flatMap((c) => leaves(c, [...path, c.name()]));
  const required = [
    ...cmd.registeredArguments.filter((a) => a.required).map((a) => `<${a.name()}>`),
    ...cmd.options.filter((o) => o.mandatory).map((o) => o.long ?? o.flags),
  ];
  return [{ path, required }];
}

/** Runs `fn` over `items` with at most `limit` at a time (2 cores shared with other suites). */
async function eachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  const queue = [...items];
  await Promise.all(
    Array.from({ length: limit }, async () => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) await fn(item);
    }),
  );
}

describe('abota: every command', () => {
  const program = buildProgram();
  const all = leaves(program);
  const groups = program.commands.filter((c) => c.commands.length > 0).map((c) => c.name());

  it('enumerates the whole CLI, including commands with several required inputs', () => {
    expect(all.length).toBeGreaterThanOrEqual(25);
    expect(all.find((l) => l.path.join(' ') === 'release build')?.required.length).toBeGreaterThanOrEqual(8);
  });

  it('exits 2 naming every missing argument and option, or 2 on an unknown option', async () => {
    const failures: string[] = [];
    await eachLimited(all, 3, async ({ path, required }) => {
      const args = required.length > 0 ? path : [...path, '--no-such-option'];
      const r = await runNode(ABOTA, args, { env: CLEAN_ENV });
      const missingNamed = required.filter((name) => !r.stderr.includes(name));
      if (r.code !== 2 || missingNamed.length > 0)
        failures.push(
          `abota ${args.join(' ')}: exit ${r.code}${missingNamed.length > 0 ? `, does not name ${missingNamed.join(' ')}` : ''}: ${r.stderr.trim().split('\n')[0]}`,
        );
      if (r.stderr.includes('    at ')) failures.push(`abota ${args.join(' ')}: printed a stack trace`);
    });
    expect(failures).toEqual([]);
  }, 180_000);

  it('exits 2 for a command group without a subcommand and for an unknown command', async () => {
    for (const args of [[groups[0] ?? 'keys'], ['no-such-command']]) {
      const r = await runNode(ABOTA, args, { env: CLEAN_ENV });
      expect(r.code, `abota ${args.join(' ')}`).toBe(2);
    }
  });

  it('exits 2 when a server command has no server, naming --server', async () => {
    const r = await runNode(ABOTA, ['rollout', 'list'], { env: CLEAN_ENV });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--server');
  });

  it('exits 0 for --help', async () => {
    const r = await runNode(ABOTA, ['release', 'build', '--help'], { env: CLEAN_ENV });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: abota release build');
  });
});

describe('abota-agent: every command', () => {
  it('exits 2 naming every missing argument and option, or 2 on an unknown option', async () => {
    const help = await runNode(AGENT, ['--help'], { env: CLEAN_ENV });
    expect(help.code).toBe(0);
    const commands = [...help.stdout.matchAll(/^ {2}([a-z-]+) \[options\]/gm)]
      .map((m) => m[1] ?? '')
      .filter((c) => c !== 'help');
    expect(commands).toEqual(expect.arrayContaining(['run', 'status', 'check', 'install', 'register']));
    const failures: string[] = [];
    await eachLimited(commands, 3, async (name) => {
      const usage = await runNode(AGENT, [name, '--help'], { env: CLEAN_ENV });
      const required = [
        ...[...(usage.stdout.split('\n')[0] ?? '').matchAll(/<([a-z-]+)>/g)].map((m) => `<${m[1]}>`),
        ...[...usage.stdout.matchAll(/(--[a-z-]+) <[a-z-]+>\s+.*\(required\)/g)].map((m) => m[1] ?? ''),
      ];
      const args = required.length > 0 ? [name] : [name, '--no-such-option'];
      const r = await runNode(AGENT, args, { env: CLEAN_ENV });
      const missingNamed = required.filter((n) => !r.stderr.includes(n));
      if (r.code !== 2 || missingNamed.length > 0)
        failures.push(
          `abota-agent ${args.join(' ')}: exit ${r.code}, unnamed ${missingNamed.join(' ')}: ${r.stderr}`,
        );
    });
    expect(failures).toEqual([]);
  }, 120_000);

  it('names the option and the argument together when both are missing', async () => {
    const r = await runNode(AGENT, ['register'], { env: CLEAN_ENV });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('missing option --token <token>');
  });
});

describe('abota-server', () => {
  it('exits 2 on usage errors, naming every bad option', async () => {
    const r = await runNode(SERVER, ['--what', '--host'], { env: CLEAN_ENV });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--what');
    expect(r.stderr).toContain('--host needs a value');
  });
});

describe('abota given a file where a keys directory belongs', () => {
  it('says so with ERR_KEYS_DIR_INVALID and exit 2, not a raw doubled errno', async () => {
    await withTempDir(async (dir) => {
      const file = join(dir, 'keys.txt');
      await writeFile(file, 'not a directory');
      const image = join(dir, 'rootfs.img');
      await writeFile(image, Buffer.alloc(8192));
      for (const args of [
        ['keys', 'show', file],
        ['keys', 'rotate', file],
        ['keys', 'init', file],
        releaseBuildArgs({ image, keys: file, out: join(dir, 'out') }),
      ]) {
        const r = await runNode(ABOTA, args, { env: CLEAN_ENV });
        expect(r.code, `abota ${args.join(' ')}`).toBe(2);
        expect(r.stderr).toContain(`abota: ERR_KEYS_DIR_INVALID: ${file} is a file, not a keys directory`);
        expect(r.stderr).not.toContain('ENOTDIR');
      }
    });
  });
});
