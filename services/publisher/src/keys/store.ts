// The key files of a keys directory (layout in ./trust-root.ts): find, read, unlock (plain JWK
// or ./envelope.ts) and write them. Private keys are written once (O_EXCL), mode 0600, never
// overwritten or printed; root files are published atomically.
import { constants } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import {
  exportPrivateJwk,
  generateSigningKey,
  importSigningKey,
  isManifestError,
  type RoleName,
  type SigningKey,
  type TrustRoot,
} from '@abota/manifest';
import {
  decryptEnvelope,
  ENCRYPTED_KEY_TYPE,
  type EncryptedKeyFile,
  encryptKeyFile,
  parseEnvelope,
} from './envelope.js';
import { KeysError } from './errors.js';

export const ROOT_FILE = 'root.json';
export const KEYS_DIR = 'keys';
export const ROOTS_DIR = 'roots';

/** Key files are a few hundred bytes; anything much larger is not one. */
const MAX_KEY_FILE_BYTES = 64 * 1024;

/** Environment variable holding the key-file passphrase unless --passphrase-env names another. */
export const PASSPHRASE_ENV = 'ABOTA_KEY_PASSPHRASE';
const MIN_PASSPHRASE_LENGTH = 8;

/** How key files are unlocked and (for new files) protected. */
export interface KeyAccess {
  /** Decrypts encrypted key files; when set, new key files are written encrypted with it. */
  passphrase?: string | undefined;
  /**
   * Where the root role's private keys live when not in DIR/keys: a directory kept offline
   * (removable media) and attached only for `keys init` / `keys rotate`. Release builds never
   * need it.
   */
  rootKeysDir?: string | undefined;
}

/** One file under DIR/keys: its kid is known without decrypting it. */
export interface KeyFileEntry {
  path: string;
  kid: string;
  /** Plain JWK files are imported while scanning; encrypted ones on unlock. */
  key?: SigningKey;
  envelope?: EncryptedKeyFile;
}

/** Read and check one private key file (plain JWK or passphrase-encrypted). */
export async function readKeyFile(path: string, access: KeyAccess = {}): Promise<SigningKey> {
  return unlockKeyFile(await scanKeyFile(path), access);
}

// Refuses group/other-readable files like ssh does; bounds the size before parsing.
async function scanKeyFile(path: string): Promise<KeyFileEntry> {
  const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new KeysError(
      'ERR_KEY_MISSING',
      `key file ${path}: ${err.code === 'ENOENT' ? 'not found' : err.message}`,
    );
  });
  if ((info.mode & 0o077) !== 0) {
    throw new KeysError(
      'ERR_KEY_FILE_PERMISSIONS',
      `key file ${path} is accessible by group/others (mode ${(info.mode & 0o777).toString(8)}); run chmod 600 on it`,
    );
  }
  if (info.size > MAX_KEY_FILE_BYTES) {
    throw new KeysError('ERR_KEY_FILE_INVALID', `key file ${path}: ${info.size} bytes is not a key file`);
  }
  let content: unknown;
  try {
    content = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new KeysError(
      'ERR_KEY_FILE_INVALID',
      `key file ${path}: not JSON (expected an Ed25519 private JWK)`,
      {
        cause: err,
      },
    );
  }
  if ((content as { type?: unknown } | null)?.type === ENCRYPTED_KEY_TYPE) {
    const envelope = parseEnvelope(content, path);
    return { path, kid: envelope.kid, envelope };
  }
  const key = await importKeyFile(content, path);
  return { path, kid: key.kid, key };
}

async function importKeyFile(jwk: unknown, path: string): Promise<SigningKey> {
  try {
    return await importSigningKey(jwk);
  } catch (err) {
    if (isManifestError(err)) {
      throw new KeysError('ERR_KEY_FILE_INVALID', `key file ${path}: ${err.message}`, { cause: err });
    }
    throw err;
  }
}

async function unlockKeyFile(entry: KeyFileEntry, access: KeyAccess): Promise<SigningKey> {
  if (entry.key !== undefined) return entry.key;
  if (access.passphrase === undefined || access.passphrase === '') {
    throw new KeysError(
      'ERR_KEY_PASSPHRASE_REQUIRED',
      `key file ${entry.path} is encrypted; set ${PASSPHRASE_ENV} (or name the variable with --passphrase-env)`,
    );
  }
  const jwk = await decryptEnvelope(entry.envelope!, access.passphrase, entry.path);
  const key = await importKeyFile(jwk, entry.path);
  if (key.kid !== entry.kid) {
    throw new KeysError(
      'ERR_KEY_FILE_INVALID',
      `key file ${entry.path}: says kid ${entry.kid} but holds ${key.kid}`,
    );
  }
  return key;
}

/** The directories private keys are looked for in: DIR/keys, then the offline root-keys directory. */
export function keyDirectories(dir: string, access: KeyAccess): string[] {
  return [join(dir, KEYS_DIR), ...(access.rootKeysDir === undefined ? [] : [access.rootKeysDir])];
}

/** Every key file under DIR/keys (and the root-keys directory), by kid (not decrypted). Unreadable files are errors. */
export async function scanKeyDirectory(
  dir: string,
  access: KeyAccess = {},
): Promise<Map<string, KeyFileEntry>> {
  const byKid = new Map<string, KeyFileEntry>();
  for (const keysDir of keyDirectories(dir, access)) await scanOneKeyDirectory(keysDir, byKid);
  return byKid;
}

async function scanOneKeyDirectory(keysDir: string, byKid: Map<string, KeyFileEntry>): Promise<void> {
  const names = await readdir(keysDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  for (const name of names.filter((n) => n.endsWith('.jwk.json')).sort()) {
    const entry = await scanKeyFile(join(keysDir, name));
    const other = byKid.get(entry.kid);
    if (other !== undefined) {
      throw new KeysError(
        'ERR_KEY_FILE_INVALID',
        `key files ${other.path} and ${entry.path} both hold key ${entry.kid}; keep one (move copies out of ${keysDir})`,
      );
    }
    byKid.set(entry.kid, entry);
  }
}

export async function selectRoleKeys(
  root: TrustRoot,
  role: RoleName,
  available: Map<string, KeyFileEntry>,
  dir: string,
  access: KeyAccess,
): Promise<SigningKey[]> {
  const { threshold, keyIds } = root.roles[role];
  const entries = keyIds.flatMap((kid) => {
    const entry = available.get(kid);
    return entry === undefined ? [] : [entry];
  });
  if (entries.length < threshold) {
    const missing = keyIds.filter((kid) => !available.has(kid));
    throw new KeysError(
      'ERR_KEY_MISSING',
      `the ${role} role of root v${root.version} needs ${threshold} signing key(s); found ${entries.length} in ${keyDirectories(dir, access).join(' and ')} (missing: ${missing.join(', ')})${role === 'root' && access.rootKeysDir === undefined ? '; root keys kept offline: attach them and pass --root-keys-dir' : ''}`,
    );
  }
  const keys: SigningKey[] = [];
  for (const entry of entries) keys.push(await unlockKeyFile(entry, access));
  return keys;
}

/**
 * Create DIR/keys/<role>-<n>.jwk.json (next free n) with mode 0600, never overwriting; encrypted
 * with the passphrase when there is one.
 */
export async function writeNewKeys(
  dir: string,
  role: RoleName,
  count: number,
  access: KeyAccess,
): Promise<{ key: SigningKey; path: string }[]> {
  const keysDir =
    role === 'root' && access.rootKeysDir !== undefined ? access.rootKeysDir : join(dir, KEYS_DIR);
  await mkdir(keysDir, { recursive: true, mode: 0o700 });
  const existing = new Set(await readdir(keysDir));
  const written: { key: SigningKey; path: string }[] = [];
  let n = 1;
  for (let i = 0; i < count; i++) {
    while (existing.has(`${role}-${n}.jwk.json`)) n++;
    const name = `${role}-${n}.jwk.json`;
    existing.add(name);
    const key = await generateSigningKey();
    const path = join(keysDir, name);
    const content = access.passphrase ? await encryptKeyFile(key, access.passphrase) : exportPrivateJwk(key);
    await writeFileExclusive(path, `${JSON.stringify(content, null, 2)}\n`, 0o600);
    written.push({ key, path });
  }
  return written;
}

async function writeFileExclusive(path: string, content: string, mode: number): Promise<void> {
  const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Write `content` to a temporary file beside `path`, fsync, then publish it. */
export async function writeAtomically(
  path: string,
  content: string,
  opts: { replace: boolean },
): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  await writeFileExclusive(tmp, content, 0o644);
  try {
    if (opts.replace) {
      await rename(tmp, path);
    } else {
      // link() fails with EEXIST instead of replacing: no window where an existing root is lost.
      await link(tmp, path);
      await unlink(tmp);
    }
  } catch (err) {
    await unlink(tmp).catch(() => {});
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new KeysError('ERR_ROOT_EXISTS', `${path} already exists; use abota keys rotate to change it`);
    }
    throw err;
  }
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * The key-file passphrase: from the variable named by --passphrase-env (which must then be set),
 * else from $ABOTA_KEY_PASSPHRASE. Never from argv, where other users could read it.
 */
export function passphraseFromEnv(variable: string | undefined, env = process.env): string | undefined {
  const name = variable ?? PASSPHRASE_ENV;
  const value = env[name];
  if (value === undefined || value === '') {
    if (variable !== undefined)
      throw new KeysError('ERR_USAGE', `--passphrase-env ${name}: the variable is not set`);
    return undefined;
  }
  if (value.length < MIN_PASSPHRASE_LENGTH) {
    throw new KeysError(
      'ERR_USAGE',
      `the passphrase in $${name} is shorter than ${MIN_PASSPHRASE_LENGTH} characters`,
    );
  }
  return value;
}
