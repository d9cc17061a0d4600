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

/** Exit status for an error: the error's own `exitCode` when it has one, else 1. */
export function exitStatusFor(err: unknown): number {
  if (isCodedError(err) && typeof err.exitCode === 'number') return err.exitCode;
  return 1;
}

/** Print a failure for a person (stderr) or for a script (JSON on stdout); return the exit status. */
export function reportFailure(err: unknown, json: boolean): number {
  const code = isCodedError(err) ? err.code : 'ERR_INTERNAL';
  const message = err instanceof Error ? err.message : String(err);
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
