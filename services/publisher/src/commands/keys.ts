// `abota keys init|rotate|show`: the trust root (root.json) and the private keys behind it.
// Layout of a keys directory (packages/manifest/README.md "Trust model"):
//   DIR/root.json                 the current signed trust root (General JWS)
//   DIR/roots/<N>.root.json       every earlier root, so devices can walk N → N+1 → …
//   DIR/keys/<role>-<n>.jwk.json  Ed25519 private JWKs (or scrypt + AES-256-GCM envelopes of
//                                 them when a passphrase is set), mode 0600, never printed
// Private keys are written once (O_EXCL) and never overwritten; root.json is replaced atomically.
import { createCipheriv, createDecipheriv, randomBytes, scrypt } from 'node:crypto';
import { constants } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import {
  createTrustRoot,
  exportPrivateJwk,
  generateSigningKey,
  importSigningKey,
  isManifestError,
  ROLE_NAMES,
  type RoleName,
  type SignedRoot,
  type SigningKey,
  signTrustRoot,
  type TrustRoot,
  verifyTrustRoot,
} from '@abota/manifest';
import type { Command } from 'commander';
import { printJson } from '../output.js';

export const ROOT_FILE = 'root.json';
export const KEYS_DIR = 'keys';
export const ROOTS_DIR = 'roots';

/** Key files are a few hundred bytes; anything much larger is not one. */
const MAX_KEY_FILE_BYTES = 64 * 1024;
/** root.json is verified by @abota/manifest, which enforces its own 1 MiB JWS limit. */
const MAX_ROOT_FILE_BYTES = 1024 * 1024;

export type KeysErrorCode =
  | 'ERR_USAGE'
  // The keys directory given is a file (or under one), not a directory.
  | 'ERR_KEYS_DIR_INVALID'
  | 'ERR_ROOT_EXISTS'
  | 'ERR_ROOT_NOT_FOUND'
  | 'ERR_KEY_FILE_INVALID'
  | 'ERR_KEY_FILE_PERMISSIONS'
  | 'ERR_KEY_MISSING'
  | 'ERR_KEY_PASSPHRASE'
  | 'ERR_KEY_PASSPHRASE_REQUIRED'
  | 'ERR_ROOT_HISTORY_CONFLICT';

/** A failure of a keys command, printed by the CLI as `code: message`. */
export class KeysError extends Error {
  override readonly name = 'KeysError';
  readonly code: KeysErrorCode;
  readonly exitCode: number;

  constructor(code: KeysErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.exitCode = code === 'ERR_USAGE' || code === 'ERR_KEYS_DIR_INVALID' ? 2 : 1;
  }
}

/**
 * A keys directory path that names a file (ENOTDIR on DIR/root.json) is a wrong argument, not an
 * I/O failure: say which path and what was expected instead of the raw errno.
 */
function keysDirError(dir: string, err: unknown): unknown {
  if ((err as NodeJS.ErrnoException).code !== 'ENOTDIR') return err;
  return new KeysError(
    'ERR_KEYS_DIR_INVALID',
    `${dir} is a file, not a keys directory (expected the directory abota keys init creates: root.json and keys/)`,
    { cause: err },
  );
}

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

// ---------------------------------------------------------------------------------------------
// Reading

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
interface KeyFileEntry {
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

/** The directories private keys are looked for in: DIR/keys, then the offline root-keys directory. */
function keyDirectories(dir: string, access: KeyAccess): string[] {
  return [join(dir, KEYS_DIR), ...(access.rootKeysDir === undefined ? [] : [access.rootKeysDir])];
}

/** Every key file under DIR/keys (and the root-keys directory), by kid (not decrypted). Unreadable files are errors. */
async function scanKeyDirectory(dir: string, access: KeyAccess = {}): Promise<Map<string, KeyFileEntry>> {
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

async function selectRoleKeys(
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

// ---------------------------------------------------------------------------------------------
// Passphrase-encrypted key files: scrypt (RFC 7914) derives an AES-256-GCM key; the envelope's
// kid and KDF parameters are authenticated as additional data, so none can be swapped.

const ENCRYPTED_KEY_TYPE = 'abota-encrypted-jwk';
// N 2^15, r 8 = 32 MiB and ~0.2 s per unlock on our CI machine. That is below OWASP's 2^17 for
// passwords of unknown strength, chosen so a release job unlocking several keys stays quick;
// the parameters are stored per file, so they can be raised without breaking old files.
const SCRYPT_DEFAULT = { N: 2 ** 15, r: 8, p: 1 } as const;
const SCRYPT_MAX_N = 2 ** 20;

export interface EncryptedKeyFile {
  type: typeof ENCRYPTED_KEY_TYPE;
  version: 1;
  kid: string;
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string };
  cipher: { name: 'aes-256-gcm'; iv: string; tag: string };
  ciphertext: string;
}

function envelopeAad(e: Pick<EncryptedKeyFile, 'kid' | 'kdf'>): Buffer {
  return Buffer.from(
    `${ENCRYPTED_KEY_TYPE}/1/${e.kid}/scrypt/${e.kdf.N}/${e.kdf.r}/${e.kdf.p}/${e.kdf.salt}`,
  );
}

function deriveKey(passphrase: string, kdf: EncryptedKeyFile['kdf']): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(
      passphrase.normalize('NFC'),
      Buffer.from(kdf.salt, 'base64url'),
      32,
      { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 256 * kdf.N * kdf.r * kdf.p },
      (err, key) => (err ? reject(err) : resolve(key)),
    );
  });
}

/** Encrypt a signing key's JWK file content with a passphrase. */
export async function encryptKeyFile(key: SigningKey, passphrase: string): Promise<EncryptedKeyFile> {
  const kdf = { name: 'scrypt' as const, ...SCRYPT_DEFAULT, salt: randomBytes(16).toString('base64url') };
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', await deriveKey(passphrase, kdf), iv);
  cipher.setAAD(envelopeAad({ kid: key.kid, kdf }));
  const ciphertext = Buffer.concat([
    cipher.update(JSON.stringify(exportPrivateJwk(key)), 'utf8'),
    cipher.final(),
  ]);
  return {
    type: ENCRYPTED_KEY_TYPE,
    version: 1,
    kid: key.kid,
    kdf,
    cipher: {
      name: 'aes-256-gcm',
      iv: iv.toString('base64url'),
      tag: cipher.getAuthTag().toString('base64url'),
    },
    ciphertext: ciphertext.toString('base64url'),
  };
}

function parseEnvelope(content: unknown, path: string): EncryptedKeyFile {
  const e = content as EncryptedKeyFile;
  const b64 = (v: unknown, bytes?: number): boolean =>
    typeof v === 'string' &&
    /^[A-Za-z0-9_-]+$/.test(v) &&
    (bytes === undefined || Buffer.from(v, 'base64url').length === bytes);
  const ok =
    e.version === 1 &&
    typeof e.kid === 'string' &&
    /^[A-Za-z0-9_-]{43}$/.test(e.kid) &&
    e.kdf?.name === 'scrypt' &&
    Number.isInteger(e.kdf.N) &&
    e.kdf.N >= 2 ** 14 &&
    e.kdf.N <= SCRYPT_MAX_N &&
    (e.kdf.N & (e.kdf.N - 1)) === 0 &&
    e.kdf.r === 8 &&
    Number.isInteger(e.kdf.p) &&
    e.kdf.p >= 1 &&
    e.kdf.p <= 4 &&
    b64(e.kdf.salt, 16) &&
    e.cipher?.name === 'aes-256-gcm' &&
    b64(e.cipher.iv, 12) &&
    b64(e.cipher.tag, 16) &&
    b64(e.ciphertext);
  if (!ok) {
    throw new KeysError(
      'ERR_KEY_FILE_INVALID',
      `key file ${path}: not a valid ${ENCRYPTED_KEY_TYPE} v1 envelope (scrypt N 2^14..2^20, r 8, p 1..4, aes-256-gcm)`,
    );
  }
  return e;
}

async function decryptEnvelope(e: EncryptedKeyFile, passphrase: string, path: string): Promise<unknown> {
  const key = await deriveKey(passphrase, e.kdf);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(e.cipher.iv, 'base64url'));
    decipher.setAAD(envelopeAad(e));
    decipher.setAuthTag(Buffer.from(e.cipher.tag, 'base64url'));
    const plain = Buffer.concat([decipher.update(Buffer.from(e.ciphertext, 'base64url')), decipher.final()]);
    return JSON.parse(plain.toString('utf8'));
  } catch (err) {
    throw new KeysError(
      'ERR_KEY_PASSPHRASE',
      `key file ${path}: wrong passphrase, or the file was modified (AES-GCM authentication failed)`,
      { cause: err },
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * Create DIR/keys/<role>-<n>.jwk.json (next free n) with mode 0600, never overwriting; encrypted
 * with the passphrase when there is one.
 */
async function writeNewKeys(
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
async function writeAtomically(path: string, content: string, opts: { replace: boolean }): Promise<void> {
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
  const signed = await signTrustRoot(next, [...oldRootKeys, ...newRootSigners], previous);

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

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Command line

const DURATION_UNITS_MS: Record<string, number> = {
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

/** "365d", "12h", "2w" → milliseconds (1 second … 100 years). */
export function parseDuration(text: string): number {
  const m = /^(\d{1,6})([smhdw])$/.exec(text);
  const ms = m === null ? Number.NaN : Number(m[1]) * DURATION_UNITS_MS[m[2]!]!;
  if (!(ms >= 1000 && ms <= 100 * 365 * 86_400_000)) {
    throw new KeysError(
      'ERR_USAGE',
      `--expires ${JSON.stringify(text)}: expected a duration like 365d, 12h, 2w, 90m`,
    );
  }
  return ms;
}

function parseCount(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,3}$/.test(text))
    throw new KeysError('ERR_USAGE', `${flag}: expected a whole number, got ${JSON.stringify(text)}`);
  return Number(text);
}

interface RoleFlags {
  rootKeys?: string;
  rootThreshold?: string;
  releaseKeys?: string;
  releaseThreshold?: string;
  expires?: string;
  passphraseEnv?: string;
  rootKeysDir?: string;
  json?: boolean;
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

const ROOT_KEYS_DIR_HELP =
  'directory for the root private keys instead of DIR/keys: keep it offline (removable media) and attach it only to init or rotate';

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

function addRoleOptions(command: Command): Command {
  return command
    .option('--root-keys-dir <dir>', ROOT_KEYS_DIR_HELP)
    .option('--root-keys <M>', 'number of root keys')
    .option('--root-threshold <N>', 'root signatures required (1..M)')
    .option('--release-keys <M>', 'number of release keys')
    .option('--release-threshold <N>', 'release signatures required (1..M)')
    .option('--expires <duration>', 'lifetime of the root, e.g. 365d, 12h, 2w', '365d')
    .option(
      '--passphrase-env <VAR>',
      `environment variable with the key-file passphrase (default ${PASSPHRASE_ENV}); new key files are encrypted with it`,
    )
    .option('--json', 'print one JSON document');
}

export function registerKeysCommands(program: Command): void {
  const keys = program.command('keys').description('create and rotate the trust root and release keys');

  addRoleOptions(
    keys
      .command('init')
      .argument('<dir>', 'directory for root.json and keys/')
      .description('create root and release keys and a signed root.json (version 1)'),
  ).action(async (dir: string, flags: RoleFlags) => {
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
  });

  addRoleOptions(
    keys
      .command('rotate')
      .argument('<dir>', 'directory holding root.json and keys/')
      .description(
        'write root version N+1 signed by old and new root keys; --<role>-keys gives that role fresh keys, ' +
          'a threshold alone keeps them; the old root is kept as roots/<N>.root.json',
      ),
  ).action(async (dir: string, flags: RoleFlags) => {
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
  });

  keys
    .command('show')
    .argument('<dir>', 'directory holding root.json')
    .description('print roles, thresholds, key ids and expiry of DIR/root.json (no private material)')
    .option('--root-keys-dir <dir>', 'also look for root private keys here')
    .option('--json', 'print one JSON document')
    .action(async (dir: string, flags: { json?: boolean; rootKeysDir?: string }) => {
      printSummary(
        'trust root',
        await showTrustRoot(dir, new Date(), { rootKeysDir: flags.rootKeysDir }),
        flags.json === true,
      );
    });
}
