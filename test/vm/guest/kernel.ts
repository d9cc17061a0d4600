// The guest kernel: Debian's cloud kernel as scripts/vm-kernel.mjs fetches and caches it.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface GuestKernel {
  version: string;
  vmlinuz: string;
  /** Holds lib/modules/<version>/. */
  modulesDir: string;
  config: string;
}

const SCRIPT = fileURLToPath(new URL('../../../scripts/vm-kernel.mjs', import.meta.url));

export function guestKernel(): GuestKernel {
  const r = spawnSync(process.execPath, [SCRIPT], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`scripts/vm-kernel.mjs failed: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as GuestKernel;
}
