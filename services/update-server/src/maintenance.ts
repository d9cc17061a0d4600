// Periodic database housekeeping, safe to run on every replica at once (plain deletes).
import { lt } from 'drizzle-orm';
import type { Db } from './db/database.js';
import { usedJwtIds } from './db/schema.js';

/** Forgets JWT ids whose tokens have expired (a replay of them fails the exp check anyway). */
export async function pruneUsedJwtIds(db: Db, now: Date): Promise<number> {
  const deleted = await db
    .delete(usedJwtIds)
    .where(lt(usedJwtIds.expiresAt, now))
    .returning({ jti: usedJwtIds.jti });
  return deleted.length;
}
