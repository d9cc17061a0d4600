// Commands inside the guest over SSH: dropbear's client (dbclient, package dropbear-bin) with
// a key made for the run, to the hostfwd on 127.0.0.1. The guest's host key is new at every
// factory disk, so it is not checked (loopback only, nothing leaves the machine).
import { execFile, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { findTool } from '@abota/testkit';

export interface SshKey {
  privateKeyPath: string;
  /** The OpenSSH public key line for authorized_keys. */
  publicKey: string;
}

function tool(name: string): string {
  const path = findTool(name);
  if (path === undefined) throw new Error(`${name} is not installed (Debian package dropbear-bin)`);
  return path;
}

/** Make an ed25519 key in `dir` with dropbearkey. */
export function makeSshKey(dir: string): SshKey {
  const privateKeyPath = join(dir, 'guest-ssh-key');
  const gen = spawnSync(tool('dropbearkey'), ['-t', 'ed25519', '-f', privateKeyPath], { encoding: 'utf8' });
  if (gen.status !== 0) throw new Error(`dropbearkey failed: ${gen.stderr}`);
  const line = /^(ssh-ed25519 \S+)/m.exec(gen.stdout)?.[1];
  if (line === undefined) throw new Error(`dropbearkey printed no public key: ${gen.stdout}`);
  return { privateKeyPath, publicKey: `${line} abota-vm-test` };
}

export interface SshResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run `command` (a shell line) as root in the guest behind 127.0.0.1:`port`. */
export function sshRun(key: SshKey, port: number, command: string, timeoutMs = 60_000): Promise<SshResult> {
  return new Promise((resolve) => {
    execFile(
      tool('dbclient'),
      ['-y', '-y', '-i', key.privateKeyPath, '-p', String(port), 'root@127.0.0.1', command],
      { timeout: timeoutMs, maxBuffer: 4 << 20 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Retry `command` until it exits 0 (dropbear starts after init's rcS); its result. */
export async function sshWhenUp(
  key: SshKey,
  port: number,
  command: string,
  timeoutMs = 300_000,
): Promise<SshResult> {
  const deadline = performance.now() + timeoutMs;
  let last: SshResult | undefined;
  while (performance.now() < deadline) {
    last = await sshRun(key, port, command, 60_000);
    if (last.code === 0) return last;
    await new Promise((r) => setTimeout(r, 2000));
  }
  throw new Error(`ssh ${command} did not succeed in ${timeoutMs} ms: ${JSON.stringify(last)}`);
}
