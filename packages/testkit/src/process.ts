// Run the real abota binaries the way a user does — a child process with its own arguments and
// environment — and capture what they print, or keep a long-running one (abota-server) and read
// its output as it comes.
import { type ChildProcess, spawn } from 'node:child_process';

export interface ProcessResult {
  /** Exit status, or null when a signal ended the process. */
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Bytes written to stdin, then closed (default: stdin closed at once). */
  input?: string;
  /** Kill the process after this long and fail (default 3 min). */
  timeoutMs?: number;
}

/** `node <script> ...args` to completion (killed and failed after `timeoutMs`). */
export async function runNode(
  script: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<ProcessResult> {
  const running = startNode(script, args, options);
  const timeoutMs = options.timeoutMs ?? 180_000;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      running.child.kill('SIGKILL');
      reject(
        new Error(`${script} ${args.join(' ')}: no exit after ${timeoutMs} ms\n${running.output().stderr}`),
      );
    }, timeoutMs);
  });
  try {
    const code = await Promise.race([running.exited, timedOut]);
    return { code, ...running.output() };
  } finally {
    clearTimeout(timer);
  }
}

/** A long-running child: its output so far, a way to wait for a line, and its end. */
export interface RunningProcess {
  child: ChildProcess;
  pid: number;
  output(): { stdout: string; stderr: string };
  /**
   * Resolves with the first stdout/stderr line matching `pattern`; rejects if the process ends
   * first or after `timeoutMs` (default 3 min: a first PGlite start on a loaded CI machine is slow).
   */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves with the exit status once the process has ended. */
  exited: Promise<number | null>;
  /** SIGTERM (or the given signal) and wait for the end. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function startNode(script: string, args: readonly string[], options: RunOptions = {}): RunningProcess {
  const child = spawn(process.execPath, [script, ...args], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin?.end(options.input ?? '');
  let stdout = '';
  let stderr = '';
  const waiters = new Set<() => void>();
  const onData = (): void => {
    for (const w of waiters) w();
  };
  child.stdout?.setEncoding('utf8').on('data', (t: string) => {
    stdout += t;
    onData();
  });
  child.stderr?.setEncoding('utf8').on('data', (t: string) => {
    stderr += t;
    onData();
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  let ended = false;
  void exited.then(() => {
    ended = true;
    onData();
  });
  return {
    child,
    pid: child.pid ?? -1,
    output: () => ({ stdout, stderr }),
    waitFor: (pattern, timeoutMs = 180_000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const line = `${stdout}\n${stderr}`.split('\n').find((l) => pattern.test(l));
          if (line !== undefined) done(() => resolve(line));
          else if (ended)
            done(() => reject(new Error(`process ended before ${pattern}:\n${stdout}\n${stderr}`)));
        };
        const timer = setTimeout(
          () => done(() => reject(new Error(`no ${pattern} within ${timeoutMs} ms:\n${stdout}\n${stderr}`))),
          timeoutMs,
        );
        const done = (settle: () => void): void => {
          clearTimeout(timer);
          waiters.delete(check);
          settle();
        };
        waiters.add(check);
        check();
      }),
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (!ended) child.kill(signal);
      return exited;
    },
  };
}
