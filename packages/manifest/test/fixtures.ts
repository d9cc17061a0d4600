// Shared test material: real Ed25519 keys, real signed roots and manifests (no mocks).
import { base64url } from 'jose';
import { canonicalJsonBytes } from '../src/canonical-json.js';
import { type GeneralJws, JWS_TYPE_RELEASE, JWS_TYPE_ROOT, signGeneralJws } from '../src/jws.js';
import { generateSigningKey, type SigningKey } from '../src/keys.js';
import type { ReleaseManifest } from '../src/manifest-schema.js';
import { createTrustRoot, type SignedRoot, signTrustRoot, type TrustRoot } from '../src/root.js';

export const NOW = new Date('2026-12-01T00:00:00Z');
export const LATER = '2027-06-01T00:00:00Z';
export const EARLIER = '2026-11-01T00:00:00Z';

export function exampleManifest(overrides: Partial<ReleaseManifest> = {}): ReleaseManifest {
  return {
    schemaVersion: 1,
    product: 'eflow-vm',
    compatible: ['hyperv-x64', 'qemu-x64'],
    version: '1.2.0',
    securityVersion: 3,
    created: '2026-11-25T12:00:00Z',
    expires: '2027-05-25T12:00:00Z',
    images: {
      rootfs: {
        sizeBytes: 536870912,
        verity: {
          hashType: 1,
          algorithm: 'sha256',
          dataBlockSize: 4096,
          hashBlockSize: 4096,
          dataBlocks: 131072,
          salt: 'ab'.repeat(32),
          rootHash: 'cd'.repeat(32),
          superblock: true,
          uuid: '12345678-1234-4234-8234-123456789abc',
          hashOffset: 0,
          hashTree: { digest: `sha256:${'ef'.repeat(32)}`, sizeBytes: 4243456 },
        },
        artifact: {
          digest: `sha256:${'01'.repeat(32)}`,
          sizeBytes: 123456,
          codec: 'zstd',
          uncompressedSizeBytes: 536870912,
        },
      },
    },
    ...overrides,
  };
}

export async function keys(n: number): Promise<SigningKey[]> {
  return Promise.all(Array.from({ length: n }, () => generateSigningKey()));
}

export interface RootFixture {
  rootKeys: SigningKey[];
  releaseKeys: SigningKey[];
  root: TrustRoot;
  signed: SignedRoot;
}

/** A signed version-1 root with fresh keys. */
export async function makeRoot(
  opts: {
    rootKeys?: number;
    rootThreshold?: number;
    releaseKeys?: number;
    releaseThreshold?: number;
    expires?: string;
  } = {},
): Promise<RootFixture> {
  const rootKeys = await keys(opts.rootKeys ?? 1);
  const releaseKeys = await keys(opts.releaseKeys ?? 1);
  const root = await createTrustRoot({
    version: 1,
    expires: opts.expires ?? LATER,
    rootKeys,
    rootThreshold: opts.rootThreshold ?? 1,
    releaseKeys,
    releaseThreshold: opts.releaseThreshold ?? 1,
  });
  return { rootKeys, releaseKeys, root, signed: await signTrustRoot(root, rootKeys) };
}

/** Sign ANY value (even an invalid manifest) the way a compromised or buggy signer could. */
export async function signRaw(
  value: unknown,
  keys: SigningKey[],
  typ: 'release' | 'root' = 'release',
): Promise<GeneralJws> {
  return signGeneralJws(
    canonicalJsonBytes(value),
    keys,
    typ === 'release' ? JWS_TYPE_RELEASE : JWS_TYPE_ROOT,
  );
}

/** Sign exact bytes (e.g. non-canonical JSON). */
export async function signBytes(bytes: Uint8Array, keys: SigningKey[]): Promise<GeneralJws> {
  return signGeneralJws(bytes, keys, JWS_TYPE_RELEASE);
}

/** Replace the payload of a signed document, keeping its signatures (a tampering attacker). */
export function withPayload(jws: GeneralJws, value: unknown): GeneralJws {
  return { ...jws, payload: base64url.encode(canonicalJsonBytes(value)) };
}

export function decodePayload(jws: GeneralJws): unknown {
  return JSON.parse(new TextDecoder().decode(base64url.decode(jws.payload)));
}
