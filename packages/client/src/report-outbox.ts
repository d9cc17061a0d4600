// Reports that must reach the update server even if the agent stops right after the step they
// report (committed, failed, rolled-back, installed): each is saved here (atomically, before or
// together with the journal step it reports), removed once the server accepted it, and sent
// again on the next start (Agent.afterBoot / checkOnce). At-least-once: a cut between the send
// and the removal sends it twice; the server keeps events, so a repeat is harmless.
import { join } from 'node:path';
import { readJsonFile, writeFileAtomic } from './atomic-file.js';
import type { DeviceReport } from './http/server-api.js';

export const OUTBOX_FILE = 'report-outbox.json';

/** Oldest entries are dropped beyond this: the file stays small on a device offline for months. */
export const MAX_OUTBOX_REPORTS = 32;

export interface OutboxEntry {
  /** One entry per key (install id + state): the same step reported again replaces it. */
  key: string;
  report: DeviceReport;
}

interface OutboxFile {
  format: 'abota-report-outbox';
  version: 1;
  reports: OutboxEntry[];
}

export class ReportOutbox {
  readonly path: string;
  /** Serialises read–modify–write of the file within the process. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(dataDir: string) {
    this.path = join(dataDir, OUTBOX_FILE);
  }

  /** The pending reports, oldest first. A missing or unreadable file is an empty outbox. */
  async list(): Promise<OutboxEntry[]> {
    const raw = (await readJsonFile(this.path).catch(() => undefined)) as Partial<OutboxFile> | undefined;
    if (raw?.format !== 'abota-report-outbox' || !Array.isArray(raw.reports)) return [];
    return raw.reports.filter(
      (e): e is OutboxEntry =>
        typeof e === 'object' &&
        e !== null &&
        typeof e.key === 'string' &&
        typeof e.report === 'object' &&
        e.report !== null,
    );
  }

  /** Save `report` durably (replacing an entry with the same key); the oldest go beyond the bound. */
  put(key: string, report: DeviceReport): Promise<void> {
    return this.edit((all) =>
      [...all.filter((e) => e.key !== key), { key, report }].slice(-MAX_OUTBOX_REPORTS),
    );
  }

  remove(key: string): Promise<void> {
    return this.edit((all) => all.filter((e) => e.key !== key));
  }

  private edit(f: (all: OutboxEntry[]) => OutboxEntry[]): Promise<void> {
    const next = this.chain.then(async () => {
      const before = await this.list();
      const after = f(before);
      if (after.length === 0 && before.length === 0) return;
      const file: OutboxFile = { format: 'abota-report-outbox', version: 1, reports: after };
      await writeFileAtomic(this.path, `${JSON.stringify(file)}\n`);
    });
    this.chain = next.catch(() => {});
    return next;
  }
}
