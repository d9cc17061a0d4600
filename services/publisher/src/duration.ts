// Durations on the command line, the one parser: "90s", "15m", "2h", "1d", "2w" (and, where a
// flag allows it, a bare number of seconds).
import { AdminApiError } from './server-api/error.js';

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 7 * 86_400 };

/** `text` in seconds, or undefined when it is not a duration (`bareSeconds`: "90" means 90 s). */
export function parseDurationText(text: string, o: { bareSeconds?: boolean } = {}): number | undefined {
  const m = /^(\d+)([smhdw]?)$/.exec(text);
  if (m === null || (m[2] === '' && o.bareSeconds !== true)) return undefined;
  return Number(m[1]) * UNIT_SECONDS[m[2] === '' ? 's' : m[2]!]!;
}

/** A flag's "90", "90s", "15m", "2h", "1d" → seconds (ERR_USAGE naming the flag otherwise). */
export function parseDurationSeconds(flag: string, text: string): number {
  const seconds = parseDurationText(text.trim(), { bareSeconds: true });
  if (seconds === undefined) {
    throw new AdminApiError('ERR_USAGE', `${flag} "${text}" is not a duration such as 90s, 15m, 2h or 1d`);
  }
  return seconds;
}
