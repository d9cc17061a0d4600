// How the CLI talks to people and to scripts: human text on a terminal, one JSON document
// with --json, errors as `code: message` (no stack traces) mapped to exit statuses.
import { SingleBar } from 'cli-progress';

/** An error with a stable code that the CLI knows how to print and map to an exit status. */
export interface CodedError {
  code: string;
  message: string;
  exitCode?: number;
}

function isCodedError(err: unknown): err is CodedError & Error {
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'string';
}

/** Exit status for an error: the error's own `exitCode` when it has one, 2 for any *_USAGE code, else 1. */
export function exitStatusFor(err: unknown): number {
  if (isCodedError(err) && typeof err.exitCode === 'number') return err.exitCode;
  if (isCodedError(err) && /_USAGE$/.test(err.code)) return 2;
  return 1;
}

/**
 * A Node system error (ENOENT, ENOTDIR, EACCES...) that no command turned into its own code: one
 * stable code, the errno once (its message already starts with it), the path it concerns.
 */
function asFileError(err: unknown): { code: string; message: string } | undefined {
  const e = err as NodeJS.ErrnoException;
  if (!(err instanceof Error) || typeof e.syscall !== 'string' || typeof e.code !== 'string')
    return undefined;
  const detail = e.message.startsWith(`${e.code}: `) ? e.message.slice(e.code.length + 2) : e.message;
  return { code: 'ERR_FILE_ACCESS', message: `${detail} (${e.code})` };
}

/** Print a failure for a person (stderr) or for a script (JSON on stdout); return the exit status. */
export function reportFailure(err: unknown, json: boolean): number {
  const fileError = asFileError(err);
  const code = fileError?.code ?? (isCodedError(err) ? err.code : 'ERR_INTERNAL');
  const message = fileError?.message ?? (err instanceof Error ? err.message : String(err));
  if (json) {
    process.stdout.write(`${JSON.stringify({ ok: false, error: { code, message } })}\n`);
  } else {
    process.stderr.write(`abota: ${code}: ${message}\n`);
    if (code === 'ERR_INTERNAL' && process.env['ABOTA_DEBUG'] && err instanceof Error && err.stack) {
      process.stderr.write(`${err.stack}\n`);
    }
  }
  return exitStatusFor(err);
}

/** Print a JSON result document on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export interface Progress {
  /** Advance to `done` units out of the total given at creation. */
  update(done: number): void;
  stop(): void;
}

/**
 * A progress bar on stderr when it is a terminal and --json is off; silent otherwise, so
 * CI logs and JSON consumers see no control characters.
 */
export function startProgress(label: string, total: number, opts: { json: boolean }): Progress {
  if (opts.json || !process.stderr.isTTY || total <= 0) {
    return { update() {}, stop() {} };
  }
  const bar = new SingleBar({
    format: `${label} [{bar}] {percentage}% | {value}/{total} | ETA {eta_formatted}`,
    stream: process.stderr,
    hideCursor: true,
    clearOnComplete: false,
  });
  bar.start(total, 0);
  return {
    update(done) {
      bar.update(done);
    },
    stop() {
      bar.stop();
    },
  };
}
