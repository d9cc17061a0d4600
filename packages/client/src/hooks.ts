// Running the operator's hook commands (health checks, reboot) as argv arrays without a shell,
// with a timeout and a bounded capture of their output for the report message.
// node:child_process is loaded at the first hook, not at start: it brings net, dgram and 26
// other modules the install path never uses (README "Memory").

export interface CommandResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** Last bytes of stdout+stderr (bounded), for messages. */
  outputTail: string;
}

export type CommandRunner = (argv: readonly string[], timeoutMs: number) => Promise<CommandResult>;

const OUTPUT_TAIL_BYTES = 2048;

export const runCommand: CommandRunner = (argv, timeoutMs) =>
  new Promise((resolve) => {
    const [cmd, ...args] = argv;
    let tail = '';
    let timedOut = false;
    const { spawn } = process.getBuiltinModule('node:child_process');
    const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (d: Buffer): void => {
      tail = (tail + d.toString('utf8')).slice(-OUTPUT_TAIL_BYTES);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ exitCode: null, signal: null, timedOut: false, outputTail: e.message });
    });
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      resolve({ exitCode, signal, timedOut, outputTail: tail.trim() });
    });
  });

export function describeResult(argv: readonly string[], r: CommandResult): string {
  const how = r.timedOut
    ? 'timed out'
    : r.exitCode !== null
      ? `exited with status ${r.exitCode}`
      : r.signal !== null
        ? `was killed by ${r.signal}`
        : `could not be started`;
  return `\`${argv.join(' ')}\` ${how}${r.outputTail ? `: ${r.outputTail.slice(-300)}` : ''}`;
}
