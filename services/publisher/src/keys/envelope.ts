// Passphrase-encrypted key files: scrypt (RFC 7914) derives an AES-256-GCM key; the envelope's
// kid and KDF parameters are authenticated as additional data, so none can be swapped.
import { createCipheriv, createDecipheriv, randomBytes, scrypt } from 'node:crypto';
import { exportPrivateJwk, type SigningKey } from '@abota/manifest';
import { KeysError } from './errors.js';

export const ENCRYPTED_KEY_TYPE = 'abota-encrypted-jwk';
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

export function parseEnvelope(content: unknown, path: string): EncryptedKeyFile {
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

export async function decryptEnvelope(
  e: EncryptedKeyFile,
  passphrase: string,
  path: string,
): Promise<unknown> {
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
