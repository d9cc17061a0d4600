// The agent of a simulated VM as a child process (its own process group, so a SIGKILL takes
// down whatever it started too — like a power cut). Runs the built entry under plain node, or
// the TypeScript source through tsx when the simulator itself runs from source (tests).
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface AgentProcessOptions {
  configPath: string;
  bootIdPath: string;
  /** Durable checkpoint interval of the installer (bytes); default the agent's own. */
  checkpointBytes?: number;
  env?: Record<string, string>;
  /** Load, then wait for `start()` before running the command (pre-started processes). */
  waitForStart?: boolean;
  /**
   * Run the built entry (dist/agent-process.js, plain node, workspace packages from their dist)
   * even when the simulator runs from source — for measurements without the tsx loader.
   */
  useBuild?: boolean;
}

export interface AgentExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class AgentProcess {
  stdout = '';
  stderr = '';
  readonly exited: Promise<AgentExit>;
  private exitInfo: AgentExit | undefined;

  private constructor(readonly child: ChildProcess) {
    child.stdout?.setEncoding('utf8').on('data', (t: string) => {
      this.stdout += t;
    });
    child.stderr?.setEncoding('utf8').on('data', (t: string) => {
      this.stderr += t;
    });
    this.exited = new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
    });
  }

  static spawn(args: readonly string[], o: AgentProcessOptions): AgentProcess {
    const here = import.meta.url;
    const fromSource = here.endsWith('.ts') && o.useBuild !== true;
    const entry = fileURLToPath(
      new URL(
        fromSource
          ? './agent-process.ts'
          : here.endsWith('.ts')
            ? '../dist/agent-process.js'
            : './agent-process.js',
        here,
      ),
    );
    const nodeArgs = fromSource ? ['--conditions=@abota/source', '--import', 'tsx'] : [];
    const child = spawn(process.execPath, [...nodeArgs, entry, ...args, '--config', o.configPath], {
      // The package directory: `--import tsx` resolves from here (the workspace root's node_modules).
      cwd: fileURLToPath(new URL('..', here)),
      env: {
        ...process.env,
        ...o.env,
        ABOTA_SIM_BOOT_ID_FILE: o.bootIdPath,
        ...(o.checkpointBytes !== undefined ? { ABOTA_SIM_CHECKPOINT_BYTES: String(o.checkpointBytes) } : {}),
        ...(o.waitForStart ? { ABOTA_SIM_WAIT_FOR_START: '1' } : {}),
      },
      stdio: [o.waitForStart ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      detached: true,
    });
    return new AgentProcess(child);
  }

  /** Let a process spawned with `waitForStart` run its command. */
  start(): void {
    this.child.stdin?.end('start\n');
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Signal the whole process group (the agent and any command it runs). */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (!this.running || this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, signal);
    } catch {
      // already gone
    }
  }

  /** SIGKILL and wait until it is gone. */
  async killAndWait(signal: NodeJS.Signals = 'SIGKILL'): Promise<AgentExit> {
    this.kill(signal);
    return this.exited;
  }
}
