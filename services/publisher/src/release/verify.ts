// `abota release verify`: everything a device checks before it writes a byte, run by anyone who
// holds a trust root — root chain, signatures and threshold, expiry (@abota/manifest), blob sizes
// and digests, then every data block of every decompressed image against its dm-verity tree and
// the tree against the signed root hash (@abota/verity). Memory: one hash tree + codec window.
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type ImageManifest,
  MAX_JWS_BYTES,
  type ReleaseManifest,
  type SignedRoot,
  type SlotClass,
  type TrustRoot,
  verifyManifest,
  verifyRootChain,
} from '@abota/manifest';
import {
  BlockVerifier,
  parseSaltHex,
  parseSuperblock,
  SUPERBLOCK_SIZE,
  type VerityParams,
} from '@abota/verity';
import { blocksOf, decompress } from './codec.js';
import { type VerifiedDelta, verifyListedDeltas } from './deltas-verify.js';
import { ReleaseError } from './errors.js';
import {
  checkBlob,
  MANIFEST_JSON,
  MANIFEST_JWS,
  parseJsonFile,
  ROOT_JSON,
  ROOTS_DIR,
  readRootHistory,
  readSmallFile,
} from './release-dir.js';

/** A hash tree is ~0.8 % of its image; 1 GiB covers images far beyond any rootfs. */
export const MAX_HASH_TREE_BYTES = 1024 * 1024 * 1024;

export interface VerifyOptions {
  dir: string;
  /** Path of the trust root the verifier trusts (a device's baked-in root.json). */
  rootPath: string;
  now?: Date;
  /** Decompressed bytes checked so far out of the total of all images. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface VerifiedImage {
  sizeBytes: number;
  rootHash: string;
  blocksVerified: number;
  codec: string;
  artifactSizeBytes: number;
  hashTreeSizeBytes: number;
}

export interface VerifyReport {
  dir: string;
  product: string;
  compatible: string[];
  version: string;
  securityVersion: number;
  created: string;
  expires: string;
  /** The trust root version the release was checked against (after walking root.json's chain). */
  rootVersion: number;
  signedBy: string[];
  unknownKids: string[];
  images: Record<string, VerifiedImage>;
  /** Every delta listed in deltas.json, checked (empty when the release has none). */
  deltas: VerifiedDelta[];
  durationsMs: { signatures: number; blobs: number; images: number; deltas: number; total: number };
}

function verityParamsOf(image: ImageManifest): VerityParams {
  const v = image.verity;
  return {
    hashType: v.hashType,
    algorithm: v.algorithm,
    dataBlockSize: v.dataBlockSize,
    hashBlockSize: v.hashBlockSize,
    dataBlocks: v.dataBlocks,
    salt: parseSaltHex(v.salt),
    hashOffset: v.hashOffset,
    superblock: v.superblock,
    ...(v.uuid === undefined ? {} : { uuid: v.uuid }),
  };
}

/**
 * The superblock is what veritysetup/the kernel read when the slot is activated: it must say
 * exactly what the signed manifest says (docs/formats.md §1.2), or the device would run other params.
 */
function checkSuperblock(slot: string, tree: Buffer, params: VerityParams): void {
  if (!params.superblock) return;
  const sb = parseSuperblock(
    tree.subarray(params.hashOffset, params.hashOffset + SUPERBLOCK_SIZE),
    `${slot} hash tree at byte ${params.hashOffset}`,
  );
  const diffs: string[] = [];
  const same = (name: string, a: unknown, b: unknown): void => {
    if (a !== b) diffs.push(`${name} ${String(a)} ≠ manifest ${String(b)}`);
  };
  same('hashType', sb.hashType, params.hashType);
  same('algorithm', sb.algorithm, params.algorithm);
  same('dataBlockSize', sb.dataBlockSize, params.dataBlockSize);
  same('hashBlockSize', sb.hashBlockSize, params.hashBlockSize);
  same('dataBlocks', sb.dataBlocks, params.dataBlocks);
  same('salt', Buffer.from(sb.salt).toString('hex'), Buffer.from(params.salt).toString('hex'));
  if (params.uuid !== undefined) same('uuid', sb.uuid, params.uuid);
  if (diffs.length > 0) {
    throw new ReleaseError(
      'ERR_RELEASE_VERITY_PARAMS_MISMATCH',
      `${slot} hash tree superblock disagrees with the signed manifest: ${diffs.join('; ')}`,
    );
  }
}

/**
 * Step 5 for one image: the tree against the signed root hash, then every decompressed block
 * against the tree. With `copyTo`, the decompressed image is also written to that new file
 * (a delta source or target), so what lands there is exactly what was verified.
 */
export async function verifyImage(
  slot: string,
  image: ImageManifest,
  treePath: string,
  artifactPath: string,
  progress: (done: number) => void,
  copyTo?: string,
): Promise<VerifiedImage> {
  const params = verityParamsOf(image);
  if (image.verity.hashTree.sizeBytes > MAX_HASH_TREE_BYTES) {
    throw new ReleaseError(
      'ERR_RELEASE_DIR_INVALID',
      `${slot} hash tree is ${image.verity.hashTree.sizeBytes} bytes; at most ${MAX_HASH_TREE_BYTES} are loaded`,
    );
  }
  // Digest already checked: these are the signed bytes (re-read; a concurrent writer could
  // only make the tree check below fail, never pass).
  const tree = Buffer.alloc(image.verity.hashTree.sizeBytes);
  const handle = await open(treePath, 'r');
  try {
    const { bytesRead } = await handle.read(tree, 0, tree.length, 0);
    if (bytesRead !== tree.length) {
      throw new ReleaseError(
        'ERR_RELEASE_BLOB_SIZE_MISMATCH',
        `${slot} hash tree ${treePath} shrank while reading`,
      );
    }
  } finally {
    await handle.close();
  }
  checkSuperblock(slot, tree, params);
  // Checks every tree level up to the signed root hash before any data block is looked at.
  const verifier = BlockVerifier.fromHashFile(tree, params, image.verity.rootHash);
  let blockIndex = 0;
  let bytes = 0;
  const covered = params.dataBlocks;
  const source = createReadStream(artifactPath, { highWaterMark: 1 << 20 });
  const copy = copyTo === undefined ? undefined : await open(copyTo, 'wx');
  let copied = 0;
  // Written before its blocks are checked; a failure throws and the caller discards the file.
  const teeToCopy = async function* (chunks: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
    for await (const chunk of chunks) {
      if (copy !== undefined) {
        await copy.write(chunk, 0, chunk.length, copied);
        copied += chunk.length;
      }
      yield chunk;
    }
  };
  try {
    for await (const block of blocksOf(
      teeToCopy(decompress(image.artifact.codec, source, image.sizeBytes)),
      params.dataBlockSize,
    )) {
      // Bytes past dataBlocks × dataBlockSize are not covered by the tree (never produced by
      // `release build`, which requires whole blocks); they are counted, not verified.
      if (blockIndex < covered) {
        if (block.length !== params.dataBlockSize) break;
        verifier.assertBlock(blockIndex, block);
      }
      blockIndex += 1;
      bytes += block.length;
      if (blockIndex % 256 === 0) progress(bytes);
    }
  } finally {
    await copy?.close();
  }
  progress(bytes);
  if (bytes !== image.sizeBytes) {
    throw new ReleaseError(
      'ERR_RELEASE_ARTIFACT_CORRUPT',
      `${slot} artifact decompresses to ${bytes} bytes; the signed manifest says ${image.sizeBytes}`,
    );
  }
  return {
    sizeBytes: image.sizeBytes,
    rootHash: image.verity.rootHash,
    blocksVerified: Math.min(covered, blockIndex),
    codec: image.artifact.codec,
    artifactSizeBytes: image.artifact.sizeBytes,
    hashTreeSizeBytes: image.verity.hashTree.sizeBytes,
  };
}

/** Read a trust root file (`--root`, or one of a keys or release directory) as a signed root. */
export async function readSignedRootFile(path: string, what: string): Promise<SignedRoot> {
  return parseJsonFile(await readSmallFile(path, MAX_JWS_BYTES, what), path, what) as SignedRoot;
}

/** What `verifySignedRelease` accepted: the signed manifest and the root it was checked against. */
export interface SignedRelease {
  manifest: ReleaseManifest;
  /** The newest root of the release's chain that walks from the trusted one. */
  root: TrustRoot;
  signedBy: string[];
  unknownKids: string[];
}

/**
 * Steps 1–3 of `release verify`: walk the release's roots/ and root.json from `trusted` as a
 * device would, verify manifest.jws against the resulting root as of `now`, and require
 * manifest.json to be the signed payload byte for byte.
 */
export async function verifySignedRelease(
  dir: string,
  trusted: SignedRoot,
  now: Date,
): Promise<SignedRelease> {
  const releaseRootPath = join(dir, ROOT_JSON);
  const chain: SignedRoot[] = (await readRootHistory(dir)).map(
    (r) =>
      parseJsonFile(
        r.text,
        join(dir, ROOTS_DIR, `${r.version}.root.json`),
        'earlier trust root',
      ) as SignedRoot,
  );
  chain.push(await readSignedRootFile(releaseRootPath, 'release root'));
  // Exactly a device's walk: roots not newer than the trusted one are skipped, each newer one
  // must be N+1 signed by N's and its own root keys (ERR_ROOT_VERSION_GAP otherwise).
  const root = await verifyRootChain(trusted, chain, now);
  const jwsPath = join(dir, MANIFEST_JWS);
  const jwsText = await readSmallFile(jwsPath, MAX_JWS_BYTES, 'signed manifest');
  const verified = await verifyManifest(jwsText, root, now);
  const jsonPath = join(dir, MANIFEST_JSON);
  const jsonText = await readSmallFile(jsonPath, MAX_JWS_BYTES, 'manifest');
  if (jsonText !== verified.payloadText) {
    throw new ReleaseError(
      'ERR_RELEASE_MANIFEST_MISMATCH',
      `${jsonPath} is not the payload signed in ${jwsPath}; readers of manifest.json would be misled (rebuild the release)`,
    );
  }
  return {
    manifest: verified.manifest,
    root,
    signedBy: verified.signedBy,
    unknownKids: verified.unknownKids,
  };
}

/** The images of a manifest as [slot, image] pairs, rootfs first. */
export function imagesOf(manifest: ReleaseManifest): [SlotClass, ImageManifest][] {
  return Object.entries(manifest.images).filter((e): e is [SlotClass, ImageManifest] => e[1] !== undefined);
}

/** Step 4 for one image: its hash tree and artifact blobs are present with the signed size and digest. */
export async function checkImageBlobs(
  dir: string,
  slot: string,
  image: ImageManifest,
): Promise<{ tree: string; artifact: string }> {
  return {
    tree: await checkBlob(dir, `${slot} hash tree`, image.verity.hashTree),
    artifact: await checkBlob(dir, `${slot} artifact`, image.artifact),
  };
}

export async function verifyRelease(o: VerifyOptions): Promise<VerifyReport> {
  const started = performance.now();
  const now = o.now ?? new Date();
  let trusted: SignedRoot;
  try {
    trusted = await readSignedRootFile(o.rootPath, 'trust root');
  } catch (err) {
    // The trust root is the verifier's own input, not part of the release: a usage error.
    if (err instanceof ReleaseError) throw new ReleaseError('ERR_RELEASE_USAGE', `--root: ${err.message}`);
    throw err;
  }
  const verified = await verifySignedRelease(o.dir, trusted, now);
  const manifest = verified.manifest;
  const signaturesMs = performance.now() - started;

  const blobsStarted = performance.now();
  const slots = imagesOf(manifest);
  const paths = new Map<string, { tree: string; artifact: string }>();
  for (const [slot, image] of slots) paths.set(slot, await checkImageBlobs(o.dir, slot, image));
  const blobsMs = performance.now() - blobsStarted;

  const imagesStarted = performance.now();
  const total = slots.reduce((a, [, image]) => a + image.sizeBytes, 0);
  let before = 0;
  const images: Record<string, VerifiedImage> = {};
  for (const [slot, image] of slots) {
    const p = paths.get(slot)!;
    images[slot] = await verifyImage(slot, image, p.tree, p.artifact, (done) =>
      o.onProgress?.(before + done, total),
    );
    before += image.sizeBytes;
  }
  const imagesMs = performance.now() - imagesStarted;

  // deltas.json is unsigned: each listed delta must be a well-formed payload whose header names
  // this release's signed root hash as its target (deltas.ts).
  const deltasStarted = performance.now();
  const deltas = await verifyListedDeltas(o.dir, manifest);
  const deltasMs = performance.now() - deltasStarted;
  return {
    dir: o.dir,
    product: manifest.product,
    compatible: manifest.compatible,
    version: manifest.version,
    securityVersion: manifest.securityVersion,
    created: manifest.created,
    expires: manifest.expires,
    rootVersion: verified.root.version,
    signedBy: verified.signedBy,
    unknownKids: verified.unknownKids,
    images,
    deltas,
    durationsMs: {
      signatures: Math.round(signaturesMs),
      blobs: Math.round(blobsMs),
      images: Math.round(imagesMs),
      deltas: Math.round(deltasMs),
      total: Math.round(performance.now() - started),
    },
  };
}
