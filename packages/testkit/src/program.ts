// Run any program to its end without blocking the event loop (a server in the test process
// must keep answering it), collecting what it prints.
import { type SpawnOptions, spawn } from 'node:child_process';

export interface ProgramResult {
  /** Exit status, or null when a signal ended the program. */
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runProgram(
  command: string,
  args: readonly string[],
  options: Pick<SpawnOptions, 'cwd' | 'env'> = {},
): Promise<ProgramResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}
