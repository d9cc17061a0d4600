// Factory imaging: write a release's images into one slot of a fresh VM, the way a factory
// flashes the first image — streamed (zstd, brotli or raw), bounded memory, then checked with
// verifyVerity against the signed root hash before the slot counts as provisioned.
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createBrotliDecompress, createZstdDecompress } from 'node:zlib';
import type { SlotName } from '@abota/client';
import { type ImageManifest, type TrustRoot, verifyManifest } from '@abota/manifest';
import { verifyVerity } from '@abota/verity';
import { type BootArtifact, bootArtifactOf, type TrustedImage } from './boot-artifacts.js';
import type { VmPaths } from './layout.js';
import { SimulatorError } from './errors.js';

function blobPath(releaseDir: string, digest: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (m === null) throw new SimulatorError('ERR_SIM_RELEASE', `unsupported digest "${digest}"`);
  return join(releaseDir, 'blobs', 'sha256', m[1]!);
}

async function writeArtifact(releaseDir: string, img: ImageManifest, dataPath: string): Promise<void> {
  const src = createReadStream(blobPath(releaseDir, img.artifact.digest));
  // r+ keeps the partition's size (the slot file is preallocated, like a partition).
  const dst = createWriteStream(dataPath, { flags: 'r+', start: 0 });
  if (img.artifact.codec === 'none') await pipeline(src, dst);
  else if (img.artifact.codec === 'zstd') await pipeline(src, createZstdDecompress(), dst);
  else if (img.artifact.codec === 'brotli') await pipeline(src, createBrotliDecompress(), dst);
  else
    throw new SimulatorError(
      'ERR_SIM_RELEASE',
      `artifact codec "${img.artifact.codec}" is not supported by the simulator's imaging`,
    );
}

/** Check `dataPath` + `hashPath` the way the kernel would with the trusted parameters. */
export async function verifySlotImage(
  dataPath: string,
  hashPath: string,
  trusted: TrustedImage,
): Promise<void> {
  const r = await verifyVerity({ dataPath, hashPath, rootHash: trusted.rootHash });
  // The superblock on the hash device is not trusted by itself: the kernel gets the parameters
  // from the signed dm table (docs/formats.md §1.7), so they must match what was signed.
  const p = r.params;
  const salt = Buffer.from(p.salt).toString('hex');
  if (
    p.dataBlocks !== trusted.dataBlocks ||
    p.dataBlockSize !== trusted.dataBlockSize ||
    p.hashBlockSize !== trusted.hashBlockSize ||
    p.algorithm !== trusted.algorithm ||
    p.hashType !== trusted.hashType ||
    salt !== trusted.salt
  ) {
    throw new SimulatorError(
      'ERR_SIM_VERITY_PARAMS',
      `${hashPath}: superblock parameters (${p.dataBlocks} blocks, ${p.algorithm}, salt ${salt}) differ from the signed ones (${trusted.dataBlocks} blocks, ${trusted.algorithm}, salt ${trusted.salt})`,
    );
  }
}

/**
 * Write every image of the release in `releaseDir` into `slot` and verify it. The manifest must
 * verify against `trustRoot`; returns the slot's boot artifact record.
 */
export async function imageSlotFromRelease(
  paths: VmPaths,
  slot: SlotName,
  releaseDir: string,
  trustRoot: TrustRoot,
  now: Date,
): Promise<BootArtifact> {
  const jws = await readFile(join(releaseDir, 'manifest.jws'), 'utf8');
  const { manifest } = await verifyManifest(jws, trustRoot, now);
  const artifact = bootArtifactOf(manifest, jws, 'provisioning');
  const targets = paths.slots[slot];
  for (const [name, dataPath, hashPath] of [
    ['rootfs', targets.rootfs, targets.rootfsHash],
    ['boot', targets.boot, targets.bootHash],
  ] as const) {
    const img = manifest.images[name];
    const trusted = artifact.images[name];
    if (img === undefined || trusted === undefined) continue;
    const slotSizeBytes = (await stat(dataPath)).size;
    // An empty file grows to the image; a preallocated "partition" must be large enough.
    if (slotSizeBytes > 0 && img.sizeBytes > slotSizeBytes) {
      throw new SimulatorError(
        'ERR_SIM_SLOT_TOO_SMALL',
        `${name} image of ${manifest.version} is ${img.sizeBytes} bytes but ${dataPath} holds ${slotSizeBytes}`,
      );
    }
    await writeArtifact(releaseDir, img, dataPath);
    await copyFile(blobPath(releaseDir, img.verity.hashTree.digest), hashPath);
    await verifySlotImage(dataPath, hashPath, trusted);
  }
  return artifact;
}
