// What the actions of the commands that talk to an update server share: usage errors (exit 2),
// whole-number flags, ids checked before they go into a URL, and the fixed-width tables people
// read. Their flags (--server, --api-key-env, --json) are in ../cli/server-options.ts.
import { type ApiSchemas, apiSchemas } from '../server-api/client.js';
import { AdminApiError } from '../server-api/error.js';

export const usage = (message: string): AdminApiError => new AdminApiError('ERR_USAGE', message);

export function parsePositiveInt(flag: string, text: string | undefined, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d{1,10}$/.test(text) || n < 1 || n > max) {
    throw usage(`${flag} ${JSON.stringify(text)}: expected a whole number 1..${max}`);
  }
  return n;
}

/** Fixed-width columns; empty values as "-". */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}

/** What checkedId needs of a zod object schema of path parameters (the server's own). */
interface ParamSchema {
  safeParse(value: unknown): { success: boolean };
}

/**
 * A command-line id checked with the server's own path-parameter schema before it goes into a
 * URL path (hono/client puts parameters in verbatim): a usage error, exit 2, before any request.
 */
export async function checkedId(
  what: string,
  value: string,
  pick: (schemas: ApiSchemas) => ParamSchema,
  expected: string,
): Promise<string> {
  if (!pick(await apiSchemas()).safeParse({ id: value }).success)
    throw usage(`${what} ${JSON.stringify(value)}: expected ${expected}`);
  return value;
}
