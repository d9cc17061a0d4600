// Writing a release into a slot of a disk image, as the agent would leave it: each image's
// data at the start of its partition, its dm-verity hash area (superblock + tree, the release's
// blob) at hashOffsetBytes of that partition. The release is checked against its own trust
// root and every blob against its signed digest before a byte is written.
import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { ImageManifest, ReleaseManifest } from '@abota/manifest';
import { decompress } from '../release/codec.js';
import { checkImageBlobs, readSignedRootFile, verifySignedRelease } from '../release/verify.js';
import { ROOT_JSON } from '../release/release-dir.js';
import { ImageError } from './errors.js';
import { hashOffsetBytes, type Partition } from './layout.js';

export interface LoadedRelease {
  dir: string;
  manifest: ReleaseManifest;
  blobs: { rootfs: { tree: string; artifact: string }; boot: { tree: string; artifact: string } };
}

export async function loadRelease(dir: string, now: Date): Promise<LoadedRelease> {
  let manifest: ReleaseManifest;
  try {
    const root = await readSignedRootFile(join(dir, ROOT_JSON), 'release root');
    manifest = (await verifySignedRelease(dir, root, now)).manifest;
  } catch (err) {
    throw new ImageError('ERR_IMAGE_RELEASE_INVALID', `release ${dir}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const boot = manifest.images.boot;
  if (boot === undefined) {
    throw new ImageError(
      'ERR_IMAGE_RELEASE_INVALID',
      `release ${dir} (${manifest.version}) has no boot image: build it with abota release build --kernel … --kernel-modules …`,
    );
  }
  try {
    return {
      dir,
      manifest,
      blobs: {
        rootfs: await checkImageBlobs(dir, 'rootfs', manifest.images.rootfs),
        boot: await checkImageBlobs(dir, 'boot', boot),
      },
    };
  } catch (err) {
    throw new ImageError('ERR_IMAGE_RELEASE_INVALID', `release ${dir}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** Refuse an image whose data or hash area does not fit its partition. */
export function assertFits(image: ImageManifest, part: Partition, option: string): void {
  const hashAt = hashOffsetBytes(part.sizeBytes);
  if (image.sizeBytes > hashAt || image.verity.hashTree.sizeBytes > part.sizeBytes - hashAt) {
    throw new ImageError(
      'ERR_IMAGE_TOO_SMALL',
      `partition ${part.name} (${part.sizeBytes} bytes) cannot hold the ${image.sizeBytes}-byte image and its ` +
        `${image.verity.hashTree.sizeBytes}-byte hash area (data up to ${hashAt} bytes); enlarge it with ${option}`,
    );
  }
}

async function writeStream(fh: FileHandle, chunks: AsyncIterable<Uint8Array>, at: number): Promise<number> {
  let pos = at;
  for await (const chunk of chunks) {
    await fh.write(chunk, 0, chunk.byteLength, pos);
    pos += chunk.byteLength;
  }
  return pos - at;
}

/** Write one image of a release (data + hash area) into `part` of the open disk. */
export async function writeSlotImage(
  fh: FileHandle,
  part: Partition,
  image: ImageManifest,
  blobs: { tree: string; artifact: string },
): Promise<void> {
  const data = decompress(image.artifact.codec, createReadStream(blobs.artifact), image.sizeBytes);
  const written = await writeStream(fh, data, part.offsetBytes);
  if (written !== image.sizeBytes) {
    throw new ImageError(
      'ERR_IMAGE_RELEASE_INVALID',
      `${part.name}: the artifact gave ${written} bytes, not ${image.sizeBytes}`,
    );
  }
  await writeStream(fh, createReadStream(blobs.tree), part.offsetBytes + hashOffsetBytes(part.sizeBytes));
}
