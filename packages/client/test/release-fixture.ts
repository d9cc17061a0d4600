// Test support: real signed releases and real slot files. A release directory is built exactly
// as the publisher lays it out (docs/CONTRACTS.md): an image with a real dm-verity hash file from
// @abota/verity, its artifact (none, brotli or zstd) and hash tree under blobs/sha256/<hex>, a manifest
// signed with @abota/manifest under a real trust root. Nothing here hard-codes an answer.
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { constants, createBrotliCompress, createZstdCompress } from 'node:zlib';
import {
  canonicalJson,
  createTrustRoot,
  generateSigningKey,
  type ImageManifest,
  type ReleaseManifest,
  type SigningKey,
  signManifest,
  signTrustRoot,
  type TrustRoot,
} from '@abota/manifest';
import { sha256File } from '@abota/testkit';
import { formatVerity } from '@abota/verity';
import type { AgentConfigInput } from '../src/config.js';
import { parseAgentConfig } from '../src/config.js';
import { initialBootState, writeBootStateFile } from '../src/bootctl/index.js';

export const PRODUCT = 'eflow-vm';
export const HARDWARE = 'hyperv-x64';

export interface Trust {
  rootKey: SigningKey;
  releaseKey: SigningKey;
  root: TrustRoot;
  /** root.json content (General JWS, JSON text). */
  signedRootText: string;
}

export async function makeTrust(): Promise<Trust> {
  const rootKey = await generateSigningKey();
  const releaseKey = await generateSigningKey();
  const root = await createTrustRoot({
    version: 1,
    expires: new Date(Date.now() + 365 * 86_400_000),
    rootKeys: [rootKey],
    rootThreshold: 1,
    releaseKeys: [releaseKey],
    releaseThreshold: 1,
  });
  const signed = await signTrustRoot(root, [rootKey]);
  return { rootKey, releaseKey, root, signedRootText: JSON.stringify(signed) };
}

/**
 * Deterministic, partly compressible image bytes: runs of a repeated 64-byte pattern mixed with
 * pseudo-random blocks (so brotli has work to do and each block differs).
 */
export async function writeImage(path: string, sizeBytes: number, seed: number): Promise<void> {
  const out = createWriteStream(path);
  let state = seed >>> 0 || 1;
  const chunk = Buffer.alloc(64 * 1024);
  let written = 0;
  while (written < sizeBytes) {
    for (let i = 0; i < chunk.length; i += 4) {
      // xorshift32: cheap, deterministic
      state ^= state << 13;
      state >>>= 0;
      state ^= state >>> 17;
      state ^= state << 5;
      state >>>= 0;
      const compressible = (i >> 12) % 3 !== 0;
      chunk.writeUInt32LE(compressible ? (Math.imul((i >> 6) + written, 2654435761) + seed) >>> 0 : state, i);
    }
    const n = Math.min(chunk.length, sizeBytes - written);
    if (!out.write(chunk.subarray(0, n))) await new Promise<void>((r) => out.once('drain', () => r()));
    written += n;
  }
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
}

export { sha256File };

export interface ReleaseOptions {
  dir: string;
  trust: Trust;
  version: string;
  securityVersion?: number;
  codec?: 'none' | 'brotli' | 'zstd';
  sizeBytes?: number;
  seed?: number;
  product?: string;
  compatible?: string[];
  expires?: Date;
  /** Sign with this key instead of the release key (e.g. an unknown key). */
  signWith?: SigningKey;
  /** Also ship a boot image of this size. */
  bootSizeBytes?: number;
  /** Use this file as the rootfs image instead of generating one (e.g. an edited copy of an older release's). */
  rootfsImagePath?: string;
  /** Ship this file as the boot image (e.g. a FAT image holding a UKI); instead of bootSizeBytes. */
  bootImagePath?: string;
}

export interface Release {
  dir: string;
  imagePath: string;
  hashPath: string;
  manifest: ReleaseManifest;
  artifactPath: string;
  hashTreePath: string;
  boot?: BuiltImage;
}

async function putBlob(
  dir: string,
  path: string,
): Promise<{ digest: string; sizeBytes: number; blobPath: string }> {
  const hex = await sha256File(path);
  const blobDir = join(dir, 'blobs', 'sha256');
  await mkdir(blobDir, { recursive: true });
  const blobPath = join(blobDir, hex);
  await copyFile(path, blobPath);
  return { digest: `sha256:${hex}`, sizeBytes: (await stat(path)).size, blobPath };
}

interface BuiltImage {
  image: ImageManifest;
  imagePath: string;
  hashPath: string;
  artifactPath: string;
  hashTreePath: string;
}

async function buildImage(
  work: string,
  releaseDir: string,
  name: string,
  sizeBytes: number,
  seed: number,
  codec: 'none' | 'brotli' | 'zstd',
  fromPath?: string,
): Promise<BuiltImage> {
  const imagePath = join(work, `${name}.img`);
  const hashPath = join(work, `${name}.hash`);
  if (fromPath !== undefined) {
    await copyFile(fromPath, imagePath);
    sizeBytes = (await stat(imagePath)).size;
  } else await writeImage(imagePath, sizeBytes, seed);
  const f = await formatVerity({ dataPath: imagePath, hashPath });
  let artifactSource = imagePath;
  if (codec !== 'none') {
    artifactSource = join(work, `${name}.img.${codec}`);
    // Streamed like the publisher's encoders, with a 2^22 window (low levels: tests stay fast).
    const encoder =
      codec === 'brotli'
        ? createBrotliCompress({ params: { [constants.BROTLI_PARAM_QUALITY]: 5 } })
        : createZstdCompress({
            params: {
              [constants.ZSTD_c_compressionLevel]: 3,
              [constants.ZSTD_c_windowLog]: 22,
              [constants.ZSTD_c_checksumFlag]: 1,
            },
          });
    await pipeline(createReadStream(imagePath), encoder, createWriteStream(artifactSource));
  }
  const artifact = await putBlob(releaseDir, artifactSource);
  const tree = await putBlob(releaseDir, hashPath);
  const image: ImageManifest = {
    sizeBytes,
    verity: {
      hashType: f.params.hashType,
      algorithm: f.params.algorithm as 'sha256',
      dataBlockSize: f.params.dataBlockSize as 4096,
      hashBlockSize: f.params.hashBlockSize as 4096,
      dataBlocks: f.params.dataBlocks,
      salt: Buffer.from(f.params.salt).toString('hex'),
      rootHash: f.rootHash,
      superblock: f.params.superblock,
      ...(f.params.uuid !== undefined ? { uuid: f.params.uuid } : {}),
      hashOffset: f.params.hashOffset,
      hashTree: { digest: tree.digest, sizeBytes: tree.sizeBytes },
    },
    artifact: {
      digest: artifact.digest,
      sizeBytes: artifact.sizeBytes,
      codec,
      uncompressedSizeBytes: sizeBytes,
    },
  };
  return { image, imagePath, hashPath, artifactPath: artifact.blobPath, hashTreePath: tree.blobPath };
}

export async function makeRelease(o: ReleaseOptions): Promise<Release> {
  const work = join(o.dir, 'work');
  await mkdir(work, { recursive: true });
  const releaseDir = join(o.dir, 'release');
  const codec = o.codec ?? 'none';
  const rootfs = await buildImage(
    work,
    releaseDir,
    'rootfs',
    o.sizeBytes ?? 8 * 1024 * 1024,
    o.seed ?? 7,
    codec,
    o.rootfsImagePath,
  );
  const boot =
    o.bootSizeBytes !== undefined || o.bootImagePath !== undefined
      ? await buildImage(
          work,
          releaseDir,
          'boot',
          o.bootSizeBytes ?? 0,
          (o.seed ?? 7) + 1000,
          codec,
          o.bootImagePath,
        )
      : undefined;
  const now = Date.now();
  const manifest: ReleaseManifest = {
    schemaVersion: 1,
    product: o.product ?? PRODUCT,
    compatible: o.compatible ?? [HARDWARE],
    version: o.version,
    securityVersion: o.securityVersion ?? 1,
    created: new Date(now - 86_400_000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    expires: (o.expires ?? new Date(now + 30 * 86_400_000)).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    images: { rootfs: rootfs.image, ...(boot ? { boot: boot.image } : {}) },
  };
  const jws = await signManifest(
    manifest,
    [o.signWith ?? o.trust.releaseKey],
    o.signWith ? undefined : o.trust.root,
  );
  await writeFile(join(releaseDir, 'manifest.jws'), JSON.stringify(jws));
  await writeFile(join(releaseDir, 'manifest.json'), canonicalJson(manifest));
  await writeFile(join(releaseDir, 'root.json'), o.trust.signedRootText);
  return {
    dir: releaseDir,
    imagePath: rootfs.imagePath,
    hashPath: rootfs.hashPath,
    manifest,
    artifactPath: rootfs.artifactPath,
    hashTreePath: rootfs.hashTreePath,
    ...(boot ? { boot } : {}),
  };
}

/** Overwrite one byte of a blob in place (content no longer matches its name: a tampered mirror). */
export async function corruptByte(path: string, offset: number): Promise<void> {
  const bytes = await readFile(path);
  bytes[offset] = (bytes[offset]! ^ 0xff) & 0xff;
  const tmp = `${path}.tmp`;
  await writeFile(tmp, bytes);
  await rename(tmp, path);
}

export interface Device {
  root: string;
  configInput: AgentConfigInput;
  slotFiles: { A: string; B: string; hashA: string; hashB: string };
  bootStatePath: string;
}

/** A simulated device: slot files, a file boot-control state, data dir, trust root, key path. */
export async function makeDevice(root: string, trust: Trust, booted: 'A' | 'B' = 'A'): Promise<Device> {
  await mkdir(join(root, 'data'), { recursive: true });
  const slotFiles = {
    A: join(root, 'rootfs-a.img'),
    B: join(root, 'rootfs-b.img'),
    hashA: join(root, 'rootfs-a.hash'),
    hashB: join(root, 'rootfs-b.hash'),
  };
  // The factory image in A; B holds older junk that must be fully replaced.
  await writeImage(slotFiles.A, 8 * 1024 * 1024, 99);
  await writeImage(slotFiles.B, 9 * 1024 * 1024, 98);
  await writeFile(slotFiles.hashA, Buffer.alloc(4096, 1));
  await writeFile(slotFiles.hashB, Buffer.alloc(4096, 2));
  await writeFile(join(root, 'root.json'), trust.signedRootText);
  const bootStatePath = join(root, 'boot-state.json');
  await writeBootStateFile(bootStatePath, initialBootState(booted));
  await writeFile(join(root, 'cmdline'), `quiet abota.slot=${booted}\n`);
  const configInput: AgentConfigInput = {
    deviceKeyPath: join(root, 'device-key.json'),
    trustRootPath: join(root, 'root.json'),
    product: PRODUCT,
    hardware: HARDWARE,
    factory: { version: '1.0.0', securityVersion: 1 },
    slots: {
      A: { rootfs: { path: slotFiles.A, hashPath: slotFiles.hashA } },
      B: { rootfs: { path: slotFiles.B, hashPath: slotFiles.hashB } },
    },
    bootControl: { backend: 'file', statePath: bootStatePath },
    dataDir: join(root, 'data'),
    rebootCommand: ['true'],
    kernelCmdlinePath: join(root, 'cmdline'),
  };
  return { root, configInput, slotFiles, bootStatePath };
}

export function configOf(d: Device, patch: Partial<AgentConfigInput> = {}) {
  return parseAgentConfig({ ...d.configInput, ...patch });
}
