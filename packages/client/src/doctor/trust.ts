// doctor: the trust root (signed by a threshold of its own root keys, walked through the
// rotations adopted in the data directory, not expired) and the clock. Release and root expiry
// are judged by the device clock, so a clock that went back to 1970 or 2000 (no RTC, no NTP)
// refuses everything or accepts what has expired: it must not be earlier than the agent's own
// build or the trust root file, neither of which can be from the future.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type SignedRoot, type TrustRoot, verifyRootChain, verifyTrustRoot } from '@abota/manifest';
import type { BuildInfo } from '../build-info.js';
import type { AgentConfig } from '../config.js';
import { codeOf, type DoctorFinding, problem } from './finding.js';

const EXPIRY_WARNING_MS = 30 * 24 * 3600 * 1000;
/** File times a few minutes ahead are copy or filesystem rounding, not a wrong clock. */
const CLOCK_SLACK_MS = 5 * 60 * 1000;

async function adoptedChain(dataDir: string): Promise<SignedRoot[]> {
  try {
    const texts = JSON.parse(await readFile(join(dataDir, 'trust-roots.json'), 'utf8')) as string[];
    return texts.map((t) => JSON.parse(t) as SignedRoot);
  } catch {
    return []; // none adopted yet; a damaged file is the agent's to report
  }
}

async function checkRoot(config: AgentConfig, now: Date): Promise<DoctorFinding[]> {
  const subject = 'trustRootPath';
  let text: string;
  try {
    text = await readFile(config.trustRootPath, 'utf8');
  } catch (e) {
    return [
      problem(
        'ERR_TRUST_ROOT',
        subject,
        `${config.trustRootPath} cannot be read: ${(e as Error).message}`,
        `install the product's root.json (from "abota keys init") at ${config.trustRootPath}; on a device it is part of the verity-protected rootfs`,
      ),
    ];
  }
  let root: TrustRoot;
  try {
    root = await verifyTrustRoot(text);
    // Expiry is judged below with its own finding; verify the rotations as of the root's own life.
    root = await verifyRootChain(
      root,
      await adoptedChain(config.dataDir),
      new Date(Date.parse(root.expires) - 1),
    );
  } catch (e) {
    return [
      problem(
        'ERR_TRUST_ROOT',
        subject,
        `${config.trustRootPath} does not verify (${codeOf(e) ?? 'error'}: ${(e as Error).message})`,
        'install the root.json the product was created with ("abota keys show DIR" prints its keys and thresholds); a root must be signed by a threshold of its root keys',
      ),
    ];
  }
  const left = Date.parse(root.expires) - now.getTime();
  if (left <= 0) {
    return [
      problem(
        'ERR_DOCTOR_TRUST_ROOT_EXPIRED',
        subject,
        `trust root v${root.version} expired at ${root.expires} (clock: ${now.toISOString()}): every release is refused`,
        'if the clock is right, ship a rotated root ("abota keys rotate", then a release built with it carries roots/) or re-image; if not, fix the clock',
      ),
    ];
  }
  if (left < EXPIRY_WARNING_MS) {
    return [
      problem(
        'ERR_DOCTOR_TRUST_ROOT_EXPIRING',
        subject,
        `trust root v${root.version} expires at ${root.expires}, in ${Math.floor(left / 86_400_000)} days`,
        'rotate it now ("abota keys rotate") and push a release built with the new root',
        'warning',
      ),
    ];
  }
  return [];
}

async function checkClock(config: AgentConfig, now: Date, build: BuildInfo): Promise<DoctorFinding[]> {
  const floors: { what: string; at: Date }[] = [];
  if (build.builtAt !== undefined)
    floors.push({ what: `this agent was built (${build.version})`, at: build.builtAt });
  try {
    floors.push({
      what: `${config.trustRootPath} was written`,
      at: (await stat(config.trustRootPath)).mtime,
    });
  } catch {
    // reported by the trust-root check
  }
  return floors
    .filter((f) => now.getTime() + CLOCK_SLACK_MS < f.at.getTime())
    .map((f) =>
      problem(
        'ERR_DOCTOR_CLOCK_BEHIND',
        'clock',
        `the clock says ${now.toISOString()}, before ${f.what} at ${f.at.toISOString()}`,
        'set the time (timedatectl set-ntp true, or chrony/systemd-timesyncd with a reachable NTP server): expiry checks of releases and trust roots depend on it',
      ),
    );
}

export async function checkTrust(config: AgentConfig, now: Date, build: BuildInfo): Promise<DoctorFinding[]> {
  return [...(await checkClock(config, now, build)), ...(await checkRoot(config, now))];
}
