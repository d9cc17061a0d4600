// When this device last saw a valid offer (offer-freshness.json in the data directory): the
// answer to TUF's "indefinite freeze" by withholding. A server, or anyone between it and the
// device, can answer every poll with "no update"; that answer is not signed, so the device cannot
// tell a withheld update from a quiet release cadence. What it can do is say how long it has gone
// without one: `abota-agent status` (and the daemon's log, once a day) warns "no valid offer for
// N days" when no release has passed the trust decision (signature, threshold, expiry, product,
// version) for `freezeWarningDays` (config; default 30, 0 = never warn). A fleet that publishes
// less often than that sets it longer. The clock starts when the agent first runs.
//
// A damaged file is replaced: it only informs, it decides nothing.
import { join } from 'node:path';
import * as v from 'valibot';
import { readJsonFile, writeFileAtomic } from './atomic-file.js';

export const OFFER_FRESHNESS_FILE = 'offer-freshness.json';
export const DEFAULT_FREEZE_WARNING_DAYS = 30;
const DAY_MS = 86_400_000;

const freshnessSchema = v.object({
  /** When the agent first ran on this data directory. */
  since: v.pipe(v.string(), v.isoTimestamp()),
  /** The last release that passed the trust decision, and when. */
  lastValidOffer: v.optional(
    v.object({ version: v.pipe(v.string(), v.maxLength(256)), at: v.pipe(v.string(), v.isoTimestamp()) }),
  ),
});
export type OfferFreshness = v.InferOutput<typeof freshnessSchema>;

export interface FreezeWarning {
  /** Whole days since the last valid offer (or since the agent first ran, if none yet). */
  days: number;
  message: string;
}

export async function readOfferFreshness(dataDir: string): Promise<OfferFreshness | undefined> {
  const raw = await readJsonFile(join(dataDir, OFFER_FRESHNESS_FILE)).catch(() => undefined);
  const r = v.safeParse(freshnessSchema, raw);
  return r.success ? r.output : undefined;
}

async function write(dataDir: string, f: OfferFreshness): Promise<void> {
  await writeFileAtomic(join(dataDir, OFFER_FRESHNESS_FILE), `${JSON.stringify(f, null, 2)}\n`);
}

/** The clock starts: called when the daemon or a check runs; keeps an existing record. */
export async function startOfferClock(dataDir: string, now: Date): Promise<OfferFreshness> {
  const current = await readOfferFreshness(dataDir);
  if (current !== undefined) return current;
  const fresh = { since: now.toISOString() };
  await write(dataDir, fresh);
  return fresh;
}

/** A release passed the trust decision (whether or not its install then succeeds). */
export async function noteValidOffer(dataDir: string, version: string, now: Date): Promise<void> {
  const current = await readOfferFreshness(dataDir);
  await write(dataDir, {
    since: current?.since ?? now.toISOString(),
    lastValidOffer: { version: version.slice(0, 256), at: now.toISOString() },
  });
}

/** The warning due at `now`, if any. */
export function freezeWarning(
  f: OfferFreshness | undefined,
  now: Date,
  warnAfterDays: number,
): FreezeWarning | undefined {
  if (f === undefined || warnAfterDays <= 0) return undefined;
  const from = f.lastValidOffer?.at ?? f.since;
  const days = Math.floor((now.getTime() - Date.parse(from)) / DAY_MS);
  if (!(days >= warnAfterDays)) return undefined;
  const last =
    f.lastValidOffer !== undefined
      ? `the last was ${f.lastValidOffer.version} on ${f.lastValidOffer.at}`
      : `none since the agent first ran on ${f.since}`;
  return {
    days,
    message:
      `no valid offer for ${days} days (${last}): updates may be withheld between the server and this ` +
      `device, or none was published; check the server's rollouts for this device (freezeWarningDays ${warnAfterDays})`,
  };
}
