// Reads of an image as it is on the slot after the install wrote it, each covering 4 KiB block
// checked against the signed dm-verity tree: what a boot-control backend copies out of a slot
// (uefi systemd-boot: the UKI onto the ESP) is the signed release's bytes, never the download's.
import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import type { ImageManifest } from '@abota/manifest';
import type { VerifiedImageReader } from '../bootctl/bootcontrol.js';
import { ClientError } from '../errors.js';
import type { BlockCheck } from './image-writer.js';
import { readAt } from './slot-io.js';

export class VerifiedSlotReader implements VerifiedImageReader {
  readonly sizeBytes: number;
  readonly #blockBytes: number;

  private constructor(
    private readonly fh: FileHandle,
    private readonly tree: BlockCheck,
    image: ImageManifest,
    private readonly where: string,
  ) {
    this.#blockBytes = image.verity.dataBlockSize;
    // Only what the tree covers can be verified.
    this.sizeBytes = image.verity.dataBlocks * this.#blockBytes;
  }

  static async open(
    path: string,
    tree: BlockCheck,
    image: ImageManifest,
    where: string,
  ): Promise<VerifiedSlotReader> {
    try {
      return new VerifiedSlotReader(await open(path, constants.O_RDONLY), tree, image, where);
    } catch (e) {
      throw new ClientError('ERR_INSTALL_SLOT_IO', `${where}: cannot open ${path}: ${(e as Error).message}`, {
        cause: e,
      });
    }
  }

  async read(position: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(position) || position < 0 || length < 0 || position + length > this.sizeBytes) {
      throw new ClientError(
        'ERR_INSTALL_UNVERIFIABLE_IMAGE',
        `${this.where}: bytes ${position}..${position + length} are outside the ${this.sizeBytes} bytes the signed tree covers`,
      );
    }
    const bs = this.#blockBytes;
    const first = Math.floor(position / bs);
    const end = Math.ceil((position + length) / bs);
    const buf = Buffer.alloc((end - first) * bs);
    const n = await readAt(this.fh, buf, buf.length, first * bs);
    if (n !== buf.length) {
      throw new ClientError('ERR_INSTALL_SLOT_IO', `${this.where}: short read at byte ${first * bs + n}`);
    }
    for (let i = first; i < end; i++) {
      if (!this.tree.verifyBlock(i, buf.subarray((i - first) * bs, (i - first + 1) * bs))) {
        throw new ClientError(
          'ERR_INSTALL_BLOCK_CORRUPT',
          `${this.where}: data block ${i} read back from the slot does not match the signed dm-verity tree`,
        );
      }
    }
    return buf.subarray(position - first * bs, position - first * bs + length);
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
