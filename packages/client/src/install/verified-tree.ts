// A target image's dm-verity hash tree, downloaded into a scratch file on the data partition and
// checked up to its signed digest and root hash before any slot write. It then answers the
// per-block checks of both image writers and writes the slot's hash area. Memory holds only the
// levels above the leaves (4 MiB of leaves stay on disk for a 512 MiB image).
import { createHash } from 'node:crypto';
import { type FileHandle, open, rm } from 'node:fs/promises';
import type { ImageManifest } from '@abota/manifest';
import { BlockVerifier, type VerityParams } from '@abota/verity';
import { ClientError, isClientError } from '../errors.js';
import { bufferCollector } from './buffer-gc.js';
import type { BlockCheck } from './image-writer.js';
import type { ReleaseSource } from './release-source.js';
import { writeFully } from './slot-io.js';

/** Hash files larger than this are refused before download (a 4 GiB image needs ~33 MiB). */
export const MAX_HASH_TREE_BYTES = 512 * 1024 * 1024;

/** dm-verity parameters of a manifest image in @abota/verity's shape. */
export function verityParamsOf(image: ImageManifest): VerityParams {
  const v = image.verity;
  return {
    hashType: v.hashType,
    algorithm: v.algorithm,
    dataBlockSize: v.dataBlockSize,
    hashBlockSize: v.hashBlockSize,
    dataBlocks: v.dataBlocks,
    salt: Uint8Array.from(Buffer.from(v.salt, 'hex')),
    hashOffset: v.hashOffset,
    superblock: v.superblock,
    ...(v.uuid !== undefined ? { uuid: v.uuid } : {}),
  };
}

export interface FetchTreeOptions {
  source: ReleaseSource;
  imageName: string;
  image: ImageManifest;
  /** The scratch file (journal.treePath); removed again when the tree is refused. */
  path: string;
  signal?: AbortSignal;
}

export class VerifiedTree implements BlockCheck {
  private closed = false;

  private constructor(
    private readonly verifier: BlockVerifier,
    private readonly fh: FileHandle,
    private readonly image: ImageManifest,
    private readonly where: string,
  ) {}

  /** Download the tree into `o.path` and check it against the signed manifest; throws ERR_INSTALL_HASH_TREE_INVALID. */
  static async fetch(o: FetchTreeOptions): Promise<VerifiedTree> {
    const { sizeBytes } = o.image.verity.hashTree;
    if (sizeBytes > MAX_HASH_TREE_BYTES) {
      throw new ClientError(
        'ERR_INSTALL_HASH_TREE_INVALID',
        `image ${o.imageName}: hash tree of ${sizeBytes} bytes exceeds the ${MAX_HASH_TREE_BYTES}-byte limit`,
      );
    }
    const where = `image ${o.imageName} hash tree scratch file ${o.path}`;
    const fh = await open(o.path, 'w+', 0o600);
    try {
      await download(o, fh, where);
      return new VerifiedTree(await openVerifier(o, fh, where), fh, o.image, where);
    } catch (e) {
      await fh.close();
      await rm(o.path, { force: true });
      throw e;
    }
  }

  /** Size of the hash file (the signed hashTree.sizeBytes). */
  get sizeBytes(): number {
    return this.image.verity.hashTree.sizeBytes;
  }

  verifyBlock(blockIndex: number, data: Uint8Array): boolean {
    return this.verifier.verifyBlock(blockIndex, data);
  }

  /** Throws (VerityError ERR_VERITY_DATA_CORRUPT) when the block does not hash into the tree. */
  assertBlock(blockIndex: number, data: Uint8Array): void {
    this.verifier.assertBlock(blockIndex, data);
  }

  /**
   * Write the hash file at `offset` of `out`, re-checked as it is copied: tree blocks come from
   * memory or are re-checked against it (VerityError otherwise); the digest covers the rest, so
   * the hash area gets exactly the signed, verified bytes.
   */
  async copyTo(out: FileHandle, offset: number, to: string): Promise<void> {
    const { digest, sizeBytes } = this.image.verity.hashTree;
    const copied = createHash('sha256');
    let at = 0;
    try {
      for await (const piece of this.verifier.hashFile()) {
        copied.update(piece);
        await writeFully(out, piece, offset + at, to);
        at += piece.byteLength;
      }
    } catch (e) {
      if (isClientError(e)) throw e;
      throw new ClientError(
        'ERR_INSTALL_HASH_TREE_INVALID',
        `${this.where} changed after it was verified (${String((e as { code?: unknown }).code)}: ${(e as Error).message})`,
        { cause: e },
      );
    }
    const now = `sha256:${copied.digest('hex')}`;
    if (at !== sizeBytes || now !== digest) {
      throw new ClientError(
        'ERR_INSTALL_HASH_TREE_INVALID',
        `${this.where} changed after it was verified: copied ${at} bytes with digest ${now}, the signed manifest says ${sizeBytes} bytes, ${digest}`,
      );
    }
  }

  /** Close the scratch file (idempotent); the tree must not be used afterwards. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}

/** Stream the tree into the scratch file (each chunk written before the next is taken) and check its digest. */
async function download(o: FetchTreeOptions, fh: FileHandle, where: string): Promise<void> {
  const { digest, sizeBytes } = o.image.verity.hashTree;
  const hash = createHash('sha256');
  let filled = 0;
  // The network Buffers die as fast as they come (4 MiB of them for a 512 MiB image); without
  // collecting them like the artifact's, they set the install's peak RSS (README "Memory").
  const collect = bufferCollector();
  for await (const chunk of o.source.openBlob(digest, sizeBytes, 0, o.signal)) {
    if (filled + chunk.byteLength > sizeBytes) {
      throw new ClientError(
        'ERR_INSTALL_HASH_TREE_INVALID',
        `image ${o.imageName}: hash tree is longer than the signed ${sizeBytes} bytes`,
      );
    }
    await writeFully(fh, chunk, filled, where);
    hash.update(chunk);
    filled += chunk.byteLength;
    collect(chunk.byteLength);
  }
  const actual = `sha256:${hash.digest('hex')}`;
  if (filled !== sizeBytes || actual !== digest) {
    throw new ClientError(
      'ERR_INSTALL_HASH_TREE_INVALID',
      `image ${o.imageName}: hash tree is ${filled} bytes with digest ${actual}; the signed manifest says ${sizeBytes} bytes, ${digest}`,
    );
  }
}

/** The tree's levels checked up to the signed root hash (the leaf level stays in the file). */
async function openVerifier(o: FetchTreeOptions, fh: FileHandle, where: string): Promise<BlockVerifier> {
  const { rootHash } = o.image.verity;
  try {
    return await BlockVerifier.fromHashFileHandle(fh, verityParamsOf(o.image), rootHash);
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    throw new ClientError(
      code === 'ERR_VERITY_IO' ? 'ERR_INSTALL_SLOT_IO' : 'ERR_INSTALL_HASH_TREE_INVALID',
      code === 'ERR_VERITY_IO'
        ? `${where}: ${(e as Error).message}`
        : `image ${o.imageName}: hash tree does not lead to the signed root hash ${rootHash} (${String(code)}: ${(e as Error).message})`,
      { cause: e },
    );
  }
}
