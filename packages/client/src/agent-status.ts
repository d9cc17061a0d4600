// What `abota-agent status` shows: the booted slot and its release, the slots the device state
// records, the install in progress (from its journal) and the last refusal.
import { percent } from './agent-reports.js';
import type { BootControl, SlotName } from './bootctl/index.js';
import type { AgentConfig } from './config.js';
import { type DeviceState, readDeviceState, runningVersion, securityFloor } from './device-state.js';
import { type InstallJournal, readJournal } from './install/journal.js';
import { type LastRefusal, readLastRefusal } from './last-refusal.js';
import {
  type FreezeWarning,
  freezeWarning,
  type OfferFreshness,
  readOfferFreshness,
} from './offer-freshness.js';

export interface AgentStatus {
  deviceId: string | undefined;
  bootedSlot: SlotName;
  primarySlot: SlotName | undefined;
  version: string;
  /** The booted slot is the trial boot of an install, not committed yet. */
  trial?: boolean;
  securityVersionFloor: number;
  slots: DeviceState['slots'];
  install:
    | {
        phase: InstallJournal['phase'];
        version: string;
        targetSlot: SlotName;
        progressPercent: number;
        bytesDone: number;
        bytesTotal: number;
        updatedAt: string;
        error?: { code: string; message: string };
        /** Per image: how it is written and what it cost to download. */
        images: Record<
          string,
          {
            method: 'delta' | 'full' | undefined;
            downloadedBytes: number;
            artifactSizeBytes?: number;
            deltaSizeBytes?: number;
            deltaFallback?: { code: string; message: string };
          }
        >;
      }
    | undefined;
  /** The last release refused or failed (until an install succeeds): which, why and when. */
  lastRefusal: LastRefusal | undefined;
  /** How long since a release last passed the trust decision (offer-freshness.ts). */
  offers: {
    since: string | undefined;
    lastValidOffer: OfferFreshness['lastValidOffer'];
    warning: FreezeWarning | undefined;
  };
}

export async function agentStatus(
  config: AgentConfig,
  bootControl: BootControl,
  now: Date,
): Promise<AgentStatus> {
  const state = await readDeviceState(config);
  const booted = await bootControl.getBootedSlot();
  const j = await readJournal(config.dataDir);
  // Booted into an install's trial: the slot runs that release, which no state records yet.
  const trial = j?.phase === 'boot-pending' && j.targetSlot === booted;
  return {
    lastRefusal: await readLastRefusal(config.dataDir),
    offers: offersOf(await readOfferFreshness(config.dataDir), now, config.freezeWarningDays),
    deviceId: config.deviceId ?? state.deviceId,
    bootedSlot: booted,
    primarySlot: await bootControl.getPrimarySlot().catch(() => undefined),
    version: trial ? j.version : runningVersion(config, state, booted).version,
    ...(trial ? { trial: true } : {}),
    securityVersionFloor: securityFloor(config, state),
    slots: state.slots,
    install:
      j === undefined
        ? undefined
        : {
            phase: j.phase,
            version: j.version,
            targetSlot: j.targetSlot,
            progressPercent: percent(j),
            bytesDone: j.progress.bytesDone,
            bytesTotal: j.progress.bytesTotal,
            updatedAt: j.updatedAt,
            ...(j.error ? { error: j.error } : {}),
            images: Object.fromEntries(
              Object.entries(j.images).map(([name, p]) => [
                name,
                {
                  method: p.method,
                  downloadedBytes: p.downloadedBytes ?? 0,
                  ...(p.artifactSizeBytes !== undefined ? { artifactSizeBytes: p.artifactSizeBytes } : {}),
                  ...(p.delta !== undefined ? { deltaSizeBytes: p.delta.sizeBytes } : {}),
                  ...(p.deltaFallback !== undefined ? { deltaFallback: p.deltaFallback } : {}),
                },
              ]),
            ),
          },
  };
}

function offersOf(f: OfferFreshness | undefined, now: Date, warnAfterDays: number): AgentStatus['offers'] {
  return {
    since: f?.since,
    lastValidOffer: f?.lastValidOffer,
    warning: freezeWarning(f, now, warnAfterDays),
  };
}
