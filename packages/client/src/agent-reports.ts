// How the agent tells the update server what it did: best-effort progress reports, and the
// reports of finished steps kept in the outbox (report-outbox.ts) until the server accepts them.
import type { AgentLog } from './agent-log.js';
import type { ClientError } from './errors.js';
import type { DeviceReport, UpdateServerClient } from './http/server-api.js';
import type { InstallJournal } from './install/journal.js';
import { ReportOutbox } from './report-outbox.js';

export interface DeviceReporterOptions {
  dataDir: string;
  /** Whether an update server is configured at all (no server: nothing is reported). */
  hasServer: boolean;
  client: () => Promise<UpdateServerClient>;
  log: AgentLog;
  /** Minimum time between two "downloading" progress reports. */
  reportIntervalMs?: number;
}

export class DeviceReporter {
  private readonly outbox: ReportOutbox;
  private lastProgressReportMs = Number.NEGATIVE_INFINITY;

  constructor(private readonly o: DeviceReporterOptions) {
    this.outbox = new ReportOutbox(o.dataDir);
  }

  /**
   * Best effort: a report that fails is logged, never fails the install. With `key` it is kept
   * in the outbox (report-outbox.ts) until the server accepts it, across restarts.
   */
  async report(r: DeviceReport, key?: string): Promise<void> {
    if (!this.o.hasServer) return;
    if (key === undefined) {
      await this.send(r);
      return;
    }
    // Through the outbox, after anything older still in it: the server sees the steps in order.
    await this.outbox.put(key, r);
    await this.flush();
  }

  /** Save a report durably before the step it reports is journalled (sent later by `report`). */
  async keep(key: string, r: DeviceReport): Promise<void> {
    if (this.o.hasServer) await this.outbox.put(key, r);
  }

  private async send(r: DeviceReport): Promise<boolean> {
    try {
      const client = await this.o.client();
      if (client.deviceId === undefined) return false;
      await client.report(r);
      return true;
    } catch (e) {
      this.o.log({
        level: 'warn',
        message: `report ${r.state} failed: ${(e as Error).message}`,
        code: (e as ClientError).code,
      });
      return false;
    }
  }

  /** Send the reports a previous run could not deliver, oldest first; stop at the first failure. */
  async flush(): Promise<void> {
    if (!this.o.hasServer) return;
    for (const e of await this.outbox.list()) {
      if (!(await this.send(e.report))) return;
      await this.outbox.remove(e.key);
    }
  }

  /** The installer's progress callback: a "downloading" report at most every reportIntervalMs. */
  progress(j: InstallJournal): void {
    if (j.phase !== 'writing') return;
    const now = performance.now();
    if (now - this.lastProgressReportMs < (this.o.reportIntervalMs ?? 15_000)) return;
    this.lastProgressReportMs = now;
    void this.report({
      ...rollout(j),
      version: j.version,
      state: 'downloading',
      progress: percent(j),
    });
  }
}

export function percent(j: InstallJournal): number {
  if (j.phase === 'boot-pending' || j.phase === 'committed' || j.phase === 'written') return 100;
  return j.progress.bytesTotal === 0 ? 0 : Math.floor((100 * j.progress.bytesDone) / j.progress.bytesTotal);
}

export function rollout(j: { rolloutId?: string | undefined }): { rolloutId?: string } {
  return j.rolloutId !== undefined ? { rolloutId: j.rolloutId } : {};
}
