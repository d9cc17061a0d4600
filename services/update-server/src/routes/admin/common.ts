// Shared bits of the admin routes: the JSON content helper (router.ts), cursor pagination,
// audit records.
import type { Db } from '../../db/database.js';
import { auditLog } from '../../db/schema.js';
import { ServerError } from '../../errors.js';

export { json } from '../router.js';

/** Opaque cursor = base64url of the last id of the previous page (lists are ordered by id). */
export function decodeCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined;
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  // Exactly a UUID (what page() encodes): anything else would reach a uuid column and fail there.
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id))
    throw new ServerError('ERR_VALIDATION', 'cursor is not one this server returned');
  return id;
}

export function page<T extends { id: string }>(
  rows: T[],
  limit: number,
): { items: T[]; nextCursor: string | null } {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return {
    items,
    nextCursor:
      rows.length > limit && last !== undefined ? Buffer.from(last.id, 'utf8').toString('base64url') : null,
  };
}

export const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());

export async function audit(
  db: Pick<Db, 'insert'>,
  actor: string,
  action: string,
  target: string,
  details: Record<string, unknown> = {},
): Promise<void> {
  await db.insert(auditLog).values({ actor, action, target, details });
}
