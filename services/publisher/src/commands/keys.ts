// The actions of `abota keys init|rotate|show` (their table is ../cli/keys.ts): flags to
// options of ../keys/trust-root.ts, summaries to output.
import { ROLE_NAMES, type RoleName } from '@abota/manifest';
import type { RoleFlags } from '../cli/flags.js';
import { KeysError } from '../keys/errors.js';
import { PASSPHRASE_ENV, passphraseFromEnv } from '../keys/store.js';
import {
  initTrustRoot,
  type RoleLayout,
  rotateTrustRoot,
  showTrustRoot,
  type TrustRootSummary,
} from '../keys/trust-root.js';
import { printJson } from '../output.js';
import { parseDurationText } from '../duration.js';

/** "365d", "12h", "2w" → milliseconds (1 second … 100 years); the one parser is ../duration.ts. */
export function parseDuration(text: string): number {
  const seconds = /^\d{1,6}[smhdw]$/.test(text) ? parseDurationText(text) : undefined;
  if (seconds === undefined || !(seconds >= 1 && seconds <= 100 * 365 * 86_400)) {
    throw new KeysError(
      'ERR_USAGE',
      `--expires ${JSON.stringify(text)}: expected a duration like 365d, 12h, 2w, 90m`,
    );
  }
  return seconds * 1000;
}

function parseCount(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,3}$/.test(text))
    throw new KeysError('ERR_USAGE', `${flag}: expected a whole number, got ${JSON.stringify(text)}`);
  return Number(text);
}

function printSummary(action: string, summary: TrustRootSummary, json: boolean): void {
  if (json) {
    printJson({ ok: true, ...summary });
    return;
  }
  const lines = [
    `${action} ${summary.rootFile}: version ${summary.version}, expires ${summary.expires}${summary.expired ? ' (EXPIRED)' : ''}`,
  ];
  for (const role of ROLE_NAMES) {
    const r = summary.roles[role];
    lines.push(`  ${role}: ${r.threshold} of ${r.keys.length}`);
    for (const k of r.keys) lines.push(`    ${k.kid}  ${k.keyFile ?? '(no private key here)'}`);
  }
  if (summary.newKeyFiles.length > 0)
    lines.push(`  new key files (mode 0600): ${summary.newKeyFiles.length}`);
  if (summary.history.length > 0) lines.push(`  earlier roots: ${summary.history.join(', ')}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

/**
 * Private keys written in the clear are one copied file away from a forged release or trust
 * root: say so on stderr (also with --json, whose stdout stays one document).
 */
function warnIfUnencrypted(
  summary: TrustRootSummary,
  passphrase: string | undefined,
  rootKeysDir: string | undefined,
) {
  if (passphrase !== undefined || summary.newKeyFiles.length === 0) return;
  process.stderr.write(
    `abota: warning: ${summary.newKeyFiles.length} private key file(s) written UNENCRYPTED (mode 0600): ${summary.newKeyFiles.join(', ')}; ` +
      `set ${PASSPHRASE_ENV} (or --passphrase-env VAR) to encrypt new key files${rootKeysDir === undefined ? ', and keep the root keys offline (--root-keys-dir on removable media)' : ''}\n`,
  );
}

/** `abota keys init DIR` */
export async function init(dir: string, flags: RoleFlags): Promise<void> {
  const rootKeys = parseCount('--root-keys', flags.rootKeys) ?? 1;
  const releaseKeys = parseCount('--release-keys', flags.releaseKeys) ?? 1;
  const passphrase = passphraseFromEnv(flags.passphraseEnv);
  const summary = await initTrustRoot(dir, {
    root: { keys: rootKeys, threshold: parseCount('--root-threshold', flags.rootThreshold) ?? 1 },
    release: {
      keys: releaseKeys,
      threshold: parseCount('--release-threshold', flags.releaseThreshold) ?? 1,
    },
    expiresInMs: parseDuration(flags.expires ?? '365d'),
    passphrase,
    rootKeysDir: flags.rootKeysDir,
  });
  warnIfUnencrypted(summary, passphrase, flags.rootKeysDir);
  printSummary('created', summary, flags.json === true);
}

/** `abota keys rotate DIR` */
export async function rotate(dir: string, flags: RoleFlags): Promise<void> {
  const role = (keysFlag: string | undefined, thresholdFlag: string | undefined, name: RoleName) => {
    const layout: Partial<RoleLayout> = {};
    const k = parseCount(`--${name}-keys`, keysFlag);
    const t = parseCount(`--${name}-threshold`, thresholdFlag);
    if (k !== undefined) layout.keys = k;
    if (t !== undefined) layout.threshold = t;
    return layout;
  };
  const passphrase = passphraseFromEnv(flags.passphraseEnv);
  const summary = await rotateTrustRoot(dir, {
    root: role(flags.rootKeys, flags.rootThreshold, 'root'),
    release: role(flags.releaseKeys, flags.releaseThreshold, 'release'),
    expiresInMs: parseDuration(flags.expires ?? '365d'),
    passphrase,
    rootKeysDir: flags.rootKeysDir,
  });
  warnIfUnencrypted(summary, passphrase, flags.rootKeysDir);
  printSummary('rotated', summary, flags.json === true);
}

/** `abota keys show DIR` */
export async function show(dir: string, flags: { json?: boolean; rootKeysDir?: string }): Promise<void> {
  printSummary(
    'trust root',
    await showTrustRoot(dir, new Date(), { rootKeysDir: flags.rootKeysDir }),
    flags.json === true,
  );
}
