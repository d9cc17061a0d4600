// The trust root of a keys directory (packages/manifest/README.md "Trust model"):
//   DIR/root.json                 the current signed trust root (General JWS)
//   DIR/roots/<N>.root.json       every earlier root, so devices can walk N → N+1 → …
//   DIR/keys/<role>-<n>.jwk.json  the private keys (./store.ts)
// Read and verify root.json and its history, the signing keys of a role, and the operations
// behind `abota keys init|rotate|show`; root.json is replaced atomically. Roots are signed with
// jose (@abota/manifest/jose), as releases are (../release/build.ts).
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  createTrustRoot,
  ROLE_NAMES,
  type RoleName,
  type SignedRoot,
  type SigningKey,
  signTrustRoot,
  type TrustRoot,
  verifyTrustRoot,
} from '@abota/manifest';
import { joseEngine } from '@abota/manifest/jose';
import { KeysError, keysDirError } from './errors.js';
import {
  exists,
  type KeyAccess,
  PASSPHRASE_ENV,
  ROOT_FILE,
  ROOTS_DIR,
  scanKeyDirectory,
  selectRoleKeys,
  writeAtomically,
  writeNewKeys,
} from './store.js';

/** root.json is verified by @abota/manifest, which enforces its own 1 MiB JWS limit. */
const MAX_ROOT_FILE_BYTES = 1024 * 1024;

export interface RoleLayout {
  keys: number;
  threshold: number;
}

export interface KeysInitOptions extends KeyAccess {
  root: RoleLayout;
  release: RoleLayout;
  /** Lifetime of the root from `now`, in milliseconds. */
  expiresInMs: number;
  now?: Date;
}

export interface KeysRotateOptions extends KeyAccess {
  /** New key count for a role → that role gets fresh keys; a threshold alone keeps the keys. */
  root?: Partial<RoleLayout>;
  release?: Partial<RoleLayout>;
  expiresInMs: number;
  now?: Date;
}

/** What init/rotate/show report: public information only. */
export interface TrustRootSummary {
  dir: string;
  rootFile: string;
  version: number;
  expires: string;
  expired: boolean;
  roles: Record<RoleName, { threshold: number; keys: { kid: string; keyFile: string | null }[] }>;
  /** Key files written by this command (init/rotate). */
  newKeyFiles: string[];
  /** Earlier roots kept for the device chain walk. */
  history: string[];
}

/** Read and verify DIR/root.json (signed by a threshold of its own root keys). */
export async function readTrustRoot(
  dir: string,
): Promise<{ root: TrustRoot; signedRoot: SignedRoot; text: string }> {
  const path = join(dir, ROOT_FILE);
  let text: string;
  try {
    const info = await stat(path);
    if (info.size > MAX_ROOT_FILE_BYTES) {
      throw new KeysError('ERR_ROOT_NOT_FOUND', `${path}: ${info.size} bytes exceeds ${MAX_ROOT_FILE_BYTES}`);
    }
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new KeysError('ERR_ROOT_NOT_FOUND', `${path} not found; create one with: abota keys init ${dir}`);
    }
    throw keysDirError(dir, err);
  }
  const root = await verifyTrustRoot(text);
  return { root, signedRoot: JSON.parse(text) as SignedRoot, text };
}

/**
 * Every root a device may need to walk from any earlier version to the current one: the
 * verified-shape DIR/roots/<N>.root.json files in version order, then DIR/root.json. Ship these
 * with a release; devices skip the ones not newer than their own root (verifyRootChain).
 */
export async function loadRootChain(dir: string): Promise<SignedRoot[]> {
  const { signedRoot } = await readTrustRoot(dir);
  const names = await readdir(join(dir, ROOTS_DIR)).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  const versions = names
    .map((name) => /^(\d{1,10})\.root\.json$/.exec(name)?.[1])
    .filter((v): v is string => v !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
  const chain: SignedRoot[] = [];
  for (const version of versions) {
    const path = join(dir, ROOTS_DIR, `${version}.root.json`);
    const info = await stat(path);
    if (info.size > MAX_ROOT_FILE_BYTES) {
      throw new KeysError('ERR_ROOT_NOT_FOUND', `${path}: ${info.size} bytes exceeds ${MAX_ROOT_FILE_BYTES}`);
    }
    chain.push(JSON.parse(await readFile(path, 'utf8')) as SignedRoot);
  }
  chain.push(signedRoot);
  return chain;
}

/**
 * The private keys of one role of DIR/root.json that are present under DIR/keys — at least the
 * role's threshold of them, else ERR_KEY_MISSING. This is what `abota release build` signs with.
 * Encrypted key files are unlocked with `access.passphrase`, else $ABOTA_KEY_PASSPHRASE.
 */
export async function loadRoleSigningKeys(
  dir: string,
  role: RoleName,
  access: KeyAccess = {},
): Promise<{ root: TrustRoot; signedRoot: SignedRoot; rootText: string; keys: SigningKey[] }> {
  const { root, signedRoot, text } = await readTrustRoot(dir);
  const available = await scanKeyDirectory(dir, access);
  const passphrase = access.passphrase ?? process.env[PASSPHRASE_ENV];
  const keys = await selectRoleKeys(root, role, available, dir, { ...access, passphrase });
  return { root, signedRoot, rootText: text, keys };
}

function serialiseRoot(signed: SignedRoot): string {
  return `${JSON.stringify(signed, null, 2)}\n`;
}

function checkLayout(role: RoleName, layout: RoleLayout): void {
  if (!Number.isInteger(layout.keys) || layout.keys < 1 || layout.keys > 64) {
    throw new KeysError('ERR_USAGE', `--${role}-keys must be an integer from 1 to 64, got ${layout.keys}`);
  }
  if (!Number.isInteger(layout.threshold) || layout.threshold < 1 || layout.threshold > layout.keys) {
    throw new KeysError(
      'ERR_USAGE',
      `--${role}-threshold must be an integer from 1 to the number of ${role} keys (${layout.keys}), got ${layout.threshold}`,
    );
  }
}

/** `abota keys init`: fresh keys for both roles and a signed root.json version 1. */
export async function initTrustRoot(dir: string, opts: KeysInitOptions): Promise<TrustRootSummary> {
  checkLayout('root', opts.root);
  checkLayout('release', opts.release);
  const now = opts.now ?? new Date();
  const rootPath = join(dir, ROOT_FILE);
  if (await exists(rootPath).catch((err: unknown) => Promise.reject(keysDirError(dir, err)))) {
    throw new KeysError('ERR_ROOT_EXISTS', `${rootPath} already exists; use abota keys rotate to change it`);
  }
  await mkdir(dir, { recursive: true });
  const rootKeys = await writeNewKeys(dir, 'root', opts.root.keys, opts);
  const releaseKeys = await writeNewKeys(dir, 'release', opts.release.keys, opts);
  const root = await createTrustRoot({
    version: 1,
    expires: new Date(now.getTime() + opts.expiresInMs),
    rootKeys: rootKeys.map((k) => k.key),
    rootThreshold: opts.root.threshold,
    releaseKeys: releaseKeys.map((k) => k.key),
    releaseThreshold: opts.release.threshold,
  });
  const signed = await signTrustRoot(
    root,
    rootKeys.map((k) => k.key),
    undefined,
    { engine: joseEngine },
  );
  await writeAtomically(rootPath, serialiseRoot(signed), { replace: false });
  return summarise(
    dir,
    root,
    now,
    [...rootKeys, ...releaseKeys].map((k) => k.path),
    opts,
  );
}

/**
 * `abota keys rotate`: root version N+1 signed by a threshold of version N's root keys and of
 * its own (TUF §5.3). Version N is kept as DIR/roots/<N>.root.json for the device chain walk.
 */
export async function rotateTrustRoot(dir: string, opts: KeysRotateOptions): Promise<TrustRootSummary> {
  const now = opts.now ?? new Date();
  const { root: previous, text: previousText } = await readTrustRoot(dir);
  const available = await scanKeyDirectory(dir, opts);
  const oldRootKeys = await selectRoleKeys(previous, 'root', available, dir, opts);

  const layouts = {} as Record<RoleName, RoleLayout & { fresh: boolean }>;
  for (const role of ROLE_NAMES) {
    const asked = opts[role] ?? {};
    const fresh = asked.keys !== undefined;
    const keys = asked.keys ?? previous.roles[role].keyIds.length;
    const threshold = asked.threshold ?? Math.min(previous.roles[role].threshold, keys);
    checkLayout(role, { keys, threshold });
    layouts[role] = { keys, threshold, fresh };
  }

  const newKeyFiles: string[] = [];
  const roleKeys = {} as Record<RoleName, { kid: string; publicJwk: SigningKey['publicJwk'] }[]>;
  let newRootSigners: SigningKey[] = oldRootKeys;
  for (const role of ROLE_NAMES) {
    if (layouts[role].fresh) {
      const written = await writeNewKeys(dir, role, layouts[role].keys, opts);
      newKeyFiles.push(...written.map((k) => k.path));
      roleKeys[role] = written.map((k) => k.key);
      if (role === 'root') newRootSigners = written.map((k) => k.key);
    } else {
      roleKeys[role] = previous.roles[role].keyIds.map((kid) => ({ kid, publicJwk: previous.keys[kid]! }));
    }
  }
  const next = await createTrustRoot({
    version: previous.version + 1,
    expires: new Date(now.getTime() + opts.expiresInMs),
    rootKeys: roleKeys.root,
    rootThreshold: layouts.root.threshold,
    releaseKeys: roleKeys.release,
    releaseThreshold: layouts.release.threshold,
  });
  if (!layouts.root.fresh) {
    // Same root keys, maybe a higher threshold: the new root needs its own threshold of them.
    newRootSigners = await selectRoleKeys(next, 'root', available, dir, opts);
  }
  const signed = await signTrustRoot(next, [...oldRootKeys, ...newRootSigners], previous, {
    engine: joseEngine,
  });

  await mkdir(join(dir, ROOTS_DIR), { recursive: true });
  const historyPath = join(dir, ROOTS_DIR, `${previous.version}.root.json`);
  if (await exists(historyPath)) {
    if ((await readFile(historyPath, 'utf8')) !== previousText) {
      throw new KeysError(
        'ERR_ROOT_HISTORY_CONFLICT',
        `${historyPath} exists with different content than the current ${ROOT_FILE}; refusing to lose either`,
      );
    }
  } else {
    await writeAtomically(historyPath, previousText, { replace: false });
  }
  await writeAtomically(join(dir, ROOT_FILE), serialiseRoot(signed), { replace: true });
  return summarise(dir, next, now, newKeyFiles, opts);
}

/** `abota keys show`: roles, thresholds, kids (with their key files when present), expiry. */
export async function showTrustRoot(
  dir: string,
  now = new Date(),
  access: KeyAccess = {},
): Promise<TrustRootSummary> {
  const { root } = await readTrustRoot(dir);
  return summarise(dir, root, now, [], access);
}

async function summarise(
  dir: string,
  root: TrustRoot,
  now: Date,
  newKeyFiles: string[],
  access: KeyAccess = {},
): Promise<TrustRootSummary> {
  const available = await scanKeyDirectory(dir, access);
  const roles = {} as TrustRootSummary['roles'];
  for (const role of ROLE_NAMES) {
    roles[role] = {
      threshold: root.roles[role].threshold,
      keys: root.roles[role].keyIds.map((kid) => ({ kid, keyFile: available.get(kid)?.path ?? null })),
    };
  }
  const history = (await readdir(join(dir, ROOTS_DIR)).catch(() => [] as string[]))
    .filter((name) => /^\d+\.root\.json$/.test(name))
    .sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10))
    .map((name) => join(dir, ROOTS_DIR, name));
  return {
    dir,
    rootFile: join(dir, ROOT_FILE),
    version: root.version,
    expires: root.expires,
    expired: Date.parse(root.expires) <= now.getTime(),
    roles,
    newKeyFiles,
    history,
  };
}
