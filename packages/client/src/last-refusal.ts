// Why the last release was refused or failed (last-refusal.json in the data directory), so
// `abota-agent status` can say it after the fact: a release refused before anything was written
// (bad signature, downgrade, security version) leaves no install journal to show. Cleared when
// a later install succeeds. A damaged file is ignored — it only explains, it decides nothing.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseGeneralJws } from '@abota/manifest';
import * as v from 'valibot';
import { readJsonFile, writeFileAtomic } from './atomic-file.js';

export const LAST_REFUSAL_FILE = 'last-refusal.json';

const lastRefusalSchema = v.object({
  version: v.pipe(v.string(), v.maxLength(256)),
  code: v.pipe(v.string(), v.maxLength(64)),
  message: v.pipe(v.string(), v.maxLength(1000)),
  at: v.string(),
  rolloutId: v.optional(v.string()),
});
export type LastRefusal = v.InferOutput<typeof lastRefusalSchema>;

export async function readLastRefusal(dataDir: string): Promise<LastRefusal | undefined> {
  const raw = await readJsonFile(join(dataDir, LAST_REFUSAL_FILE)).catch(() => undefined);
  const r = v.safeParse(lastRefusalSchema, raw);
  return r.success ? r.output : undefined;
}

export async function writeLastRefusal(dataDir: string, refusal: LastRefusal): Promise<void> {
  const bounded: LastRefusal = {
    ...refusal,
    version: refusal.version.slice(0, 256),
    code: refusal.code.slice(0, 64),
    message: refusal.message.slice(0, 1000),
  };
  await writeFileAtomic(join(dataDir, LAST_REFUSAL_FILE), `${JSON.stringify(bounded, null, 2)}\n`);
}

export async function clearLastRefusal(dataDir: string): Promise<void> {
  await rm(join(dataDir, LAST_REFUSAL_FILE), { force: true });
}

/**
 * The version a manifest JWS claims, read without verifying it — only to label a refusal of a
 * release that came without an offer (offline install) whose signature may be the very problem.
 */
export function claimedVersion(manifestJws: string): string | undefined {
  try {
    const payload = parseGeneralJws(manifestJws, 'manifest').payload;
    const version = (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { version?: unknown })
      .version;
    return typeof version === 'string' ? version.slice(0, 256) : undefined;
  } catch {
    return undefined;
  }
}
