// Periodic housekeeping, safe to run on every replica at once (plain deletes; aborting an
// upload session twice is harmless).
import type { BlobStore } from '@abota/blobstore';
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

/** Removes upload sessions with no new part for `idleSeconds` (their parts and staging objects too). */
export async function gcUploadSessions(blobs: BlobStore, now: Date, idleSeconds: number): Promise<number> {
  return blobs.gcUploads(new Date(now.getTime() - idleSeconds * 1000));
}
