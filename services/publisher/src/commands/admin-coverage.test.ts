// Every operation of the admin API has an `abota` command (or a stated reason not to): the
// operations come from /openapi.json of a real update server (startServer: PGlite, loopback),
// the commands from the CLI's own command table.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createLogger,
  generateSecret,
  loadConfig,
  type RunningServer,
  startServer,
} from '@abota/update-server';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../cli.js';
import { ADMIN_COMMANDS, WITHOUT_COMMAND } from './admin-coverage.js';

let dir: string;
let server: RunningServer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'abota-coverage-'));
  server = await startServer({
    config: loadConfig({
      ABOTA_DATA_DIR: dir,
      ABOTA_PORT: '0',
      ABOTA_HOST: '127.0.0.1',
      ABOTA_ADMIN_KEY: generateSecret('abk'),
    }),
    logger: createLogger({ level: 'silent' }),
  });
}, 60_000);

afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

/** "METHOD /path" of every /v1/admin operation the server documents. */
async function adminOperations(): Promise<string[]> {
  const res = await fetch(`${server.url}/openapi.json`);
  expect(res.status).toBe(200);
  const document = (await res.json()) as { paths: Record<string, Record<string, unknown>> };
  return Object.entries(document.paths)
    .filter(([path]) => path.startsWith('/v1/admin/'))
    .flatMap(([path, item]) => Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`));
}

function findCommand(program: Command, path: string): Command | undefined {
  let command: Command | undefined = program;
  for (const name of path.split(' ')) command = command?.commands.find((c) => c.name() === name);
  return command;
}

describe('the CLI covers the admin API', () => {
  it('every admin operation in /openapi.json has an abota command or a stated reason not to', async () => {
    const operations = await adminOperations();
    expect(operations.length).toBeGreaterThan(30);
    const uncovered = operations.filter(
      (op) => ADMIN_COMMANDS[op] === undefined && WITHOUT_COMMAND[op] === undefined,
    );
    expect(
      uncovered,
      'admin operations without an abota command (add one, or a reason to WITHOUT_COMMAND)',
    ).toEqual([]);
    const stale = [...Object.keys(ADMIN_COMMANDS), ...Object.keys(WITHOUT_COMMAND)].filter(
      (op) => !operations.includes(op),
    );
    expect(stale, 'entries for operations the server no longer has').toEqual([]);
  });

  it('each command named there exists, with --help and --json', () => {
    const program = buildProgram();
    const missing: string[] = [];
    for (const path of new Set(Object.values(ADMIN_COMMANDS))) {
      const command = findCommand(program, path);
      if (command === undefined || command.options.every((o) => o.long !== '--json')) missing.push(path);
      else expect(command.helpInformation()).toContain('--json');
    }
    expect(missing).toEqual([]);
  });
});
