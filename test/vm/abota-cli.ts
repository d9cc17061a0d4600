// The real `abota` CLI (services/publisher/bin/abota.js) as a child process: what an operator
// runs, with its exit status and output, and without sharing this process' stdout or event loop.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ABOTA_BIN = join(
  fileURLToPath(new URL('../../', import.meta.url)),
  'services',
  'publisher',
  'bin',
  'abota.js',
);

/** Run `abota args…`; resolves stdout, rejects with the command line and its whole output. */
export function runAbotaCli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [ABOTA_BIN, ...args],
      { env, maxBuffer: 16 << 20 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`abota ${args.join(' ')}: ${error.message}\n${stdout}${stderr}`));
        else resolve(stdout);
      },
    );
  });
}
