// Test support: gate tests on the real reference tools (veritysetup, grub-editenv, fw_printenv,
// ...) and give each test a private temporary directory.
//
// Tests that need a tool FAIL when ABOTA_REQUIRE_TOOLS=1 (CI) and the tool is missing; on a
// developer machine without the tool they are skipped with a message naming the Debian package.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'vitest';

export { type ProgramResult, runProgram } from './program.js';

const SEARCH_PATH = `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin:/usr/local/sbin`;

/** The absolute path of a command, or undefined when it is not installed. */
export function findTool(command: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v "$0"`, command], {
    env: { ...process.env, PATH: SEARCH_PATH },
    encoding: 'utf8',
  });
  const path = r.stdout.trim();
  return r.status === 0 && path !== '' ? path : undefined;
}

export function toolsRequired(): boolean {
  return process.env['ABOTA_REQUIRE_TOOLS'] === '1';
}

/**
 * `describe` that runs only when `command` is installed. Missing tool: with
 * ABOTA_REQUIRE_TOOLS=1 a failing test says what to install; otherwise the block is skipped
 * with a console note naming the Debian package.
 */
export function describeWithTool(
  command: string,
  debianPackage: string,
  name: string,
  body: (toolPath: string) => void,
): void {
  const path = findTool(command);
  if (path !== undefined) {
    describe(name, () => body(path));
    return;
  }
  const why = `${command} is not installed (Debian package ${debianPackage}: apt-get install ${debianPackage})`;
  if (toolsRequired()) {
    describe(name, () => {
      it(`needs ${command}`, () => {
        throw new Error(`${why}; ABOTA_REQUIRE_TOOLS=1 forbids skipping`);
      });
    });
    return;
  }
  console.warn(`skipping "${name}": ${why}`);
  describe.skipIf(true)(name, () => body(command));
}

/** Create a temporary directory; the caller removes it (or uses `withTempDir`). */
export async function makeTempDir(prefix = 'abota-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Run `fn` with a fresh temporary directory that is removed afterwards, whatever happens. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>, prefix = 'abota-test-'): Promise<T> {
  const dir = await makeTempDir(prefix);
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
export { type ProcessResult, type RunningProcess, type RunOptions, runNode, startNode } from './process.js';
export { type ReleaseBuildArgs, releaseBuildArgs } from './cli-args.js';
export { TcpOutageProxy } from './tcp-outage.js';

/** sha256 (hex) of a whole file, read as a stream: the one file-digest helper of the tests. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * A private key and self-signed certificate made by `openssl req -x509` in `dir` (`name`.key,
 * `name`.crt): TLS test servers, Secure Boot test keys (the PK/KEK/db a VM enrols, sbsign's key).
 * `keyArgs` chooses the key (default RSA 2048, what sbsign and UEFI firmware take).
 */
export function selfSignedCertificate(
  dir: string,
  name: string,
  subject: string,
  o: { keyArgs?: readonly string[]; extraArgs?: readonly string[]; days?: number; openssl?: string } = {},
): { key: string; cert: string } {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  const made = spawnSync(o.openssl ?? 'openssl', [
    'req',
    '-x509',
    '-newkey',
    ...(o.keyArgs ?? ['rsa:2048']),
    '-nodes',
    '-keyout',
    key,
    '-out',
    cert,
    '-days',
    String(o.days ?? 30),
    '-subj',
    subject,
    ...(o.extraArgs ?? []),
  ]);
  if (made.status !== 0) throw new Error(`openssl req -x509 failed: ${String(made.stderr)}`);
  return { key, cert };
}
export { seeded } from './seeded.js';
