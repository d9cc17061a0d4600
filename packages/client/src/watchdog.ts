// The systemd watchdog (systemd.service WatchdogSec=, sd_notify(3) WATCHDOG=1): the daemon loop
// beats while it makes progress (each poll, each downloaded chunk, each slice of its sleep), and
// a timer tells systemd "alive" only while the last beat is recent — so an await that never
// returns stops the pings and systemd restarts the agent (the journal resumes its install).
//
// sd_notify is a datagram to the unix socket in NOTIFY_SOCKET, and Node has no unix datagram
// sockets. The npm `sd-notify` package is a native addon over libsystemd (a compiler and
// libsystemd-dev at install, a .node file beside the bundled agent); instead the ping runs
// `systemd-notify WATCHDOG=1`, which ships with systemd on every device that has the unit. It
// runs at most every WatchdogSec/2 (minutes), so a short process costs nothing. systemd-notify
// waits until the manager has read the message (sd_notify_barrier, systemd ≥ 246), so the
// sender is still in the service's cgroup when it is attributed; the unit sets NotifyAccess=all
// because the sender is a child, not the main process. node:child_process is loaded at the
// first ping, not at start (the agent's RSS: hooks.ts).

export interface WatchdogOptions {
  /** WATCHDOG_USEC / 1000: systemd restarts the service after this long without a ping. */
  intervalMs: number;
  /** The notification itself (default: `systemd-notify WATCHDOG=1`). */
  notify?: () => Promise<void>;
  onError?: (e: Error) => void;
}

export class Watchdog {
  private lastBeatMs = performance.now();
  private timer: NodeJS.Timeout | undefined;
  private failed = false;

  constructor(private readonly o: WatchdogOptions) {}

  /**
   * From the environment systemd gives a service with WatchdogSec= (WATCHDOG_USEC, and
   * WATCHDOG_PID naming this process when set); undefined when there is no watchdog.
   */
  static fromEnv(
    env: Record<string, string | undefined>,
    o: Omit<WatchdogOptions, 'intervalMs'> = {},
  ): Watchdog | undefined {
    const usec = Number(env['WATCHDOG_USEC']);
    if (env['NOTIFY_SOCKET'] === undefined || !Number.isSafeInteger(usec) || usec <= 0) return undefined;
    if (env['WATCHDOG_PID'] !== undefined && Number(env['WATCHDOG_PID']) !== process.pid) return undefined;
    return new Watchdog({ ...o, intervalMs: Math.max(1, Math.floor(usec / 1000)) });
  }

  /** How long the loop may sleep between beats. */
  get beatEveryMs(): number {
    return Math.max(1, Math.floor(this.o.intervalMs / 4));
  }

  /** The loop made progress. */
  beat(): void {
    this.lastBeatMs = performance.now();
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.beat();
    this.ping();
    this.timer = setInterval(() => this.ping(), Math.max(1, Math.floor(this.o.intervalMs / 2)));
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private ping(): void {
    // A loop silent for a whole interval is stuck: stay quiet and let systemd restart it.
    if (performance.now() - this.lastBeatMs >= this.o.intervalMs) return;
    (this.o.notify ?? systemdNotify)().catch((e: unknown) => {
      if (this.failed) return;
      this.failed = true; // said once; the pings go on
      this.o.onError?.(e as Error);
    });
  }
}

/** sd_notify WATCHDOG=1 through systemd-notify (NOTIFY_SOCKET is inherited). */
export function systemdNotify(): Promise<void> {
  return new Promise((resolve, reject) => {
    // No --pid: that would send MAINPID= too, and the main process is already this one.
    const { spawn } = process.getBuiltinModule('node:child_process');
    const child = spawn('systemd-notify', ['WATCHDOG=1'], { stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`systemd-notify WATCHDOG=1 exited with status ${code}`)),
    );
  });
}
