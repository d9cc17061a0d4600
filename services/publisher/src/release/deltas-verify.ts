// `release verify`'s check of the deltas listed in deltas.json. Deltas are unsigned (CONTRACTS.md
// "Deltas end to end"): a device verifies every block a delta produces against the signed tree,
// so what is checked here is that the list is honest — each payload is present with its digest
// and size, is a well-formed delta (FORMAT.md metadata), and its header names exactly the
// listed source and this release's signed target.
import { open } from 'node:fs/promises';
import { compareSemver, type ReleaseManifest } from '@abota/manifest';
import { DeltaError, type DeltaHeader, decodeHeader, decodeMetadata, HEADER_SIZE_BYTES } from '@abota/delta';
import { type DeltaEntry, readDeltasFile } from './deltas-json.js';
import { ReleaseError } from './errors.js';
import { checkBlob } from './release-dir.js';

export interface VerifiedDelta extends DeltaEntry {
  opCount: number;
  /** The delta's size ÷ the image's full compressed artifact. */
  ratioToArtifact: number;
}

/** Read and check a payload's metadata (header, op table, its SHA-256); nothing else is read. */
export async function readDeltaMetadata(
  path: string,
): Promise<{ header: DeltaHeader; metadataSizeBytes: number }> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(HEADER_SIZE_BYTES);
    const first = await handle.read(head, 0, HEADER_SIZE_BYTES, 0);
    // decodeHeader bounds the op count, so the metadata is at most ~8 MiB (FORMAT.md limits).
    const { metadataSizeBytes } = decodeHeader(head.subarray(0, first.bytesRead));
    const metadata = Buffer.alloc(metadataSizeBytes);
    const { bytesRead } = await handle.read(metadata, 0, metadataSizeBytes, 0);
    const decoded = decodeMetadata(metadata.subarray(0, bytesRead));
    return { header: decoded.header, metadataSizeBytes: decoded.metadataSizeBytes };
  } finally {
    await handle.close();
  }
}

async function verifyDelta(dir: string, manifest: ReleaseManifest, d: DeltaEntry): Promise<VerifiedDelta> {
  const what = `${d.image} delta from ${d.sourceVersion}`;
  const lie = (message: string): never => {
    throw new ReleaseError('ERR_RELEASE_DELTA_INVALID', `${what} (${d.digest}): ${message}`);
  };
  const image = manifest.images[d.image];
  if (image === undefined) return lie(`the release has no ${d.image} image`);
  if (compareSemver(d.sourceVersion, manifest.version) >= 0) {
    lie(`source version ${d.sourceVersion} is not older than the release's ${manifest.version}`);
  }
  if (d.targetRootHash !== image.verity.rootHash) {
    lie(
      `deltas.json says target root hash ${d.targetRootHash}; the signed manifest's ${d.image} root hash is ${image.verity.rootHash}`,
    );
  }
  const path = await checkBlob(dir, what, d, 'deltas.json');
  let meta: { header: DeltaHeader; metadataSizeBytes: number };
  try {
    meta = await readDeltaMetadata(path);
  } catch (err) {
    if (err instanceof DeltaError) return lie(`not a well-formed delta: ${err.code}: ${err.message}`);
    throw err;
  }
  const h = meta.header;
  const diffs: string[] = [];
  const same = (field: string, inHeader: unknown, expected: unknown, source: string): void => {
    if (inHeader !== expected)
      diffs.push(`header ${field} ${String(inHeader) || '(none)'} ≠ ${source} ${String(expected)}`);
  };
  same('source root hash', h.source.rootHash, d.sourceRootHash, 'deltas.json sourceRootHash');
  same('source size', h.source.sizeBytes, d.sourceSizeBytes, 'deltas.json sourceSizeBytes');
  same('target root hash', h.target.rootHash, image.verity.rootHash, 'the signed root hash');
  same('target size', h.target.sizeBytes, image.sizeBytes, 'the signed image size');
  same('block size', h.blockSize, image.verity.dataBlockSize, 'the signed data block size');
  same('payload size', meta.metadataSizeBytes + h.dataSizeBytes, d.sizeBytes, 'the blob size');
  if (diffs.length > 0) lie(diffs.join('; '));
  return {
    ...d,
    opCount: h.opCount,
    ratioToArtifact: Number((d.sizeBytes / Math.max(1, image.artifact.sizeBytes)).toFixed(4)),
  };
}

/** Every delta of deltas.json, in its order; none when the release has no deltas.json. */
export async function verifyListedDeltas(dir: string, manifest: ReleaseManifest): Promise<VerifiedDelta[]> {
  const file = await readDeltasFile(dir);
  const out: VerifiedDelta[] = [];
  for (const d of file?.deltas ?? []) out.push(await verifyDelta(dir, manifest, d));
  return out;
}
