// Device identity: an Ed25519 private key (JWK file, mode 0600) and short-lived EdDSA JWTs signed
// with it for every /v1/device/* call (docs/CONTRACTS.md: iss = sub = deviceId, aud, iat,
// exp ≤ 5 min, random jti). The server stores only the public key; no shared secret exists.
// The compact JWS (RFC 7515 §7.1) is built here with node:crypto's Ed25519 (RFC 8037 §3.1)
// rather than jose: the agent's peak RSS is bounded by what it loads (README "Memory").
import { createPrivateKey, generateKeyPairSync, type KeyObject, randomUUID, sign } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import * as v from 'valibot';
import { readJsonFile, writeFileAtomic } from '../atomic-file.js';
import { ClientError } from '../errors.js';

const key32Schema = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/));
const privateJwkSchema = v.object({
  kty: v.literal('OKP'),
  crv: v.literal('Ed25519'),
  x: key32Schema,
  d: key32Schema,
});

function base64urlJson(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

/** The protected header of every device JWT: EdDSA (RFC 8037), typ JWT (RFC 7519 §5.1). */
const JWT_HEADER = base64urlJson({ alg: 'EdDSA', typ: 'JWT' });

export interface PublicJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
}

export class DeviceKey {
  private constructor(
    private readonly key: KeyObject,
    readonly publicJwk: PublicJwk,
  ) {}

  /**
   * Load the key. A key file readable by group or others is refused: anyone who reads it can
   * impersonate the device.
   */
  static async load(path: string): Promise<DeviceKey> {
    let mode: number;
    try {
      mode = (await stat(path)).mode;
    } catch (e) {
      throw new ClientError(
        'ERR_DEVICE_KEY',
        `device key ${path} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); ` +
          'run `abota-agent register --token T` to create one',
      );
    }
    if ((mode & 0o077) !== 0) {
      throw new ClientError(
        'ERR_DEVICE_KEY',
        `device key ${path} has mode ${(mode & 0o777).toString(8)}; it must be readable by its owner only (chmod 600)`,
      );
    }
    let raw: unknown;
    try {
      raw = await readJsonFile(path);
    } catch (e) {
      throw new ClientError('ERR_DEVICE_KEY', `device key ${path} is not JSON: ${(e as Error).message}`);
    }
    const r = v.safeParse(privateJwkSchema, raw);
    if (!r.success) {
      throw new ClientError(
        'ERR_DEVICE_KEY',
        `device key ${path} is not an Ed25519 private JWK (kty OKP, crv Ed25519, x, d)`,
      );
    }
    const key = createPrivateKey({ key: { ...r.output }, format: 'jwk' });
    return new DeviceKey(key, { kty: 'OKP', crv: 'Ed25519', x: r.output.x });
  }

  /** Create a new key file (exclusive create, 0600); refuses to overwrite an existing key. */
  static async generate(path: string): Promise<DeviceKey> {
    const { privateKey } = generateKeyPairSync('ed25519');
    const jwk = privateKey.export({ format: 'jwk' });
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(path, 'wx', 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return DeviceKey.load(path);
      throw new ClientError('ERR_DEVICE_KEY', `cannot create device key ${path}: ${(e as Error).message}`);
    }
    await fh.close();
    await writeFileAtomic(path, `${JSON.stringify({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, d: jwk.d })}\n`);
    return DeviceKey.load(path);
  }

  /** A JWT for one request; a fresh random jti every time so the server can refuse replays. */
  async signJwt(o: {
    deviceId: string;
    audience: string;
    lifetimeSeconds: number;
    now: Date;
  }): Promise<string> {
    const iat = Math.floor(o.now.getTime() / 1000);
    const claims = {
      iss: o.deviceId,
      sub: o.deviceId,
      aud: o.audience,
      iat,
      exp: iat + o.lifetimeSeconds,
      jti: randomUUID(),
    };
    const signingInput = `${JWT_HEADER}.${base64urlJson(claims)}`;
    // Ed25519 takes no digest argument (null): the message is signed as is (RFC 8032 §5.1.6).
    const signature = sign(null, Buffer.from(signingInput, 'ascii'), this.key);
    return `${signingInput}.${signature.toString('base64url')}`;
  }
}
