// The action of `abota release push DIR` (its table is ../cli/release.ts): flags to
// ../release/push.ts, progress bar, summary, and how to resume after an interruption.
import { printJson, startProgress } from '../output.js';
import { type PushSummary, pushReleaseDir } from '../release/push.js';
import { connectFromEnvironment, type ServerFlags } from '../server-api/client.js';
import { AdminApiError } from '../server-api/error.js';

const MIB = 1024 * 1024;

function humanMiB(bytes: number): string {
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

function printPushSummary(s: PushSummary): void {
  const uploaded = s.blobs.filter((b) => b.action === 'uploaded').length;
  const lines = [
    `${s.created ? 'pushed' : 'already on the server:'} ${s.product} ${s.version} → ${s.server} (release id ${s.releaseId})`,
    `  blobs: ${uploaded} uploaded (${humanMiB(s.uploadedBytes)}${s.resumedBytes > 0 ? `, ${humanMiB(s.resumedBytes)} resumed from an interrupted push` : ''}), ${s.blobs.length - uploaded} already present (${humanMiB(s.skippedBytes)})`,
    ...(s.deltas.length === 0
      ? []
      : [
          `  deltas: ${s.deltas.map((d) => `${d.image} from ${d.sourceVersion} (${d.created ? 'registered' : 'already registered'})`).join(', ')}`,
        ]),
    `  ${s.durationsMs.total} ms${s.retries > 0 ? `, ${s.retries} retried call(s)` : ''}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** Failures after which the same push, run again, carries on where this one stopped. */
const RESUMABLE = new Set(['ERR_INTERRUPTED', 'ERR_SERVER_UNREACHABLE', 'ERR_UNAVAILABLE', 'ERR_INTERNAL']);

/** An interrupted push or a server that went away: say how to carry on. */
function withResumeHint(err: unknown): unknown {
  if (!(err instanceof AdminApiError)) return err;
  if (!RESUMABLE.has(err.code) && !(err.status !== undefined && err.status >= 500)) return err;
  return new AdminApiError(
    err.code,
    `${err.message}; run the same command again to resume (what the server already stored is not sent again)`,
    { ...(err.status === undefined ? {} : { status: err.status }), cause: err },
  );
}

/** `push` */
export async function push(dir: string, flags: ServerFlags & { resumableOverMib?: string }): Promise<void> {
  const json = flags.json === true;
  let sessionThresholdBytes: number | undefined;
  if (flags.resumableOverMib !== undefined) {
    const mib = Number(flags.resumableOverMib);
    if (!Number.isInteger(mib) || mib < 0 || mib > 1024 * 1024)
      throw new AdminApiError(
        'ERR_USAGE',
        `--resumable-over-mib "${flags.resumableOverMib}": expected a whole number of MiB (0 = every blob in parts)`,
      );
    sessionThresholdBytes = mib * MIB;
  }
  const client = connectFromEnvironment(flags);
  let bar: ReturnType<typeof startProgress> | undefined;
  // Ctrl-C / SIGTERM: stop sending; blobs already stored stay, so a re-run resumes from there.
  const interrupt = new AbortController();
  const onSignal = (): void => interrupt.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let summary: PushSummary;
  try {
    summary = await pushReleaseDir({
      dir,
      client,
      signal: interrupt.signal,
      ...(sessionThresholdBytes === undefined ? {} : { sessionThresholdBytes }),
      onProgress: (sent, total) => {
        bar ??= startProgress('release push (MiB)', Math.ceil(total / MIB), { json });
        bar.update(Math.floor(sent / MIB));
      },
    });
  } catch (err) {
    throw withResumeHint(err);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    bar?.stop();
  }
  if (json) printJson({ ok: true, ...summary });
  else printPushSummary(summary);
}
