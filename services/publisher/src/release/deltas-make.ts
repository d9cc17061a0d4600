// Making a release's deltas (CONTRACTS.md "Deltas end to end"), shared by `release build
// --delta-from` and `release add-delta`: each previous release is verified like `release verify`
// does before anything is taken from it, its images are decompressed into scratch files while
// every block is checked against its verity tree, and @abota/delta's `diff` turns each into the
// new image. A delta not smaller than the full compressed artifact is skipped (it saves nothing).
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  compareSemver,
  type ImageManifest,
  MAX_JWS_BYTES,
  parseGeneralJws,
  type ReleaseManifest,
  type SignedRoot,
  type SlotClass,
} from '@abota/manifest';
import { diff } from '@abota/delta';
import type { DeltaEntry } from './deltas-json.js';
import { ReleaseError } from './errors.js';
import {
  MANIFEST_JWS,
  parseJsonFile,
  ROOT_JSON,
  ROOTS_DIR,
  readRootHistory,
  readSmallFile,
  sha256File,
} from './release-dir.js';
import { checkImageBlobs, imagesOf, readSignedRootFile, verifyImage, verifySignedRelease } from './verify.js';

/** Brotli quality of delta literals: the format's default (a delta is made once, fetched by a fleet). */
export const DEFAULT_DELTA_QUALITY = 11;

/** `--delta-quality`: a whole number 0..11 (brotli quality of the delta's literal data). */
export function parseDeltaQuality(value: string | number | undefined): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value);
  if (!/^\d{1,2}$/.test(text) || Number(text) > 11) {
    throw new ReleaseError(
      'ERR_RELEASE_USAGE',
      `--delta-quality ${JSON.stringify(text)}: expected a whole number 0 … 11`,
    );
  }
  return Number(text);
}

/** A previous release whose signed manifest was verified: a delta source. */
export interface DeltaSource {
  dir: string;
  manifest: ReleaseManifest;
}

export type DeltaStatus = 'added' | 'exists' | 'skipped-not-smaller';

/** What happened to one (image, previous release) pair. */
export interface DeltaOutcome {
  image: SlotClass;
  sourceVersion: string;
  sourceRootHash: string;
  sourceSizeBytes: number;
  targetRootHash: string;
  status: DeltaStatus;
  /** The blob (added, exists); absent when skipped, since nothing was stored. */
  digest?: string;
  /** The delta's size (for a skipped one: the size it would have had). */
  sizeBytes: number;
  /** The full compressed artifact of the image in this release. */
  artifactSizeBytes: number;
  ratioToArtifact: number;
  /** Time to verify the source image and diff (0 for an existing delta). */
  durationMs: number;
}

/**
 * The oldest trust root a directory holds (roots/<N>.root.json, else root.json): the anchor a
 * previous release is checked from, so one signed under an earlier root of the same line still
 * verifies (the chain walk of `release verify` does the rest).
 */
export async function oldestRoot(dir: string): Promise<{ root: SignedRoot; path: string }> {
  const history = await readRootHistory(dir);
  const first = history[0];
  if (first !== undefined) {
    const path = join(dir, ROOTS_DIR, `${first.version}.root.json`);
    return { root: parseJsonFile(first.text, path, 'earlier trust root') as SignedRoot, path };
  }
  const path = join(dir, ROOT_JSON);
  return { root: await readSignedRootFile(path, 'trust root'), path };
}

/**
 * The instant a release was signed, read from its (not yet verified) manifest.jws: a previous
 * release is checked as of then, since it may have expired since — devices still run it and
 * need a delta from it. Anything unreadable falls back to now; verification then says why.
 */
export async function signedAt(dir: string): Promise<Date> {
  try {
    const path = join(dir, MANIFEST_JWS);
    const jws = parseGeneralJws(await readSmallFile(path, MAX_JWS_BYTES, 'signed manifest'), path);
    const payload = JSON.parse(Buffer.from(jws.payload, 'base64url').toString('utf8')) as {
      created?: unknown;
    };
    const at = typeof payload.created === 'string' ? new Date(payload.created) : new Date(Number.NaN);
    if (!Number.isNaN(at.getTime())) return at;
  } catch {
    // verifySignedRelease reports it.
  }
  return new Date();
}

function sourceFailure(dir: string, err: unknown): unknown {
  if (err instanceof ReleaseError && err.code === 'ERR_RELEASE_INTERRUPTED') return err;
  if (err instanceof Error && typeof (err as { code?: unknown }).code === 'string') {
    return new ReleaseError(
      'ERR_RELEASE_DELTA_SOURCE_INVALID',
      `previous release ${dir} fails verification: ${(err as Error & { code: string }).code}: ${err.message}`,
      { cause: err },
    );
  }
  return err;
}

/**
 * Check a previous release before it is used (cheap part, before any image work): its root chain
 * walks from `trusted`, its manifest.jws verifies (as of its own creation), manifest.json is the
 * signed payload; it is of `product` and older than `version`.
 */
export async function openDeltaSource(o: {
  dir: string;
  trusted: SignedRoot;
  trustedPath: string;
  product: string;
  version: string;
}): Promise<DeltaSource> {
  let manifest: ReleaseManifest;
  try {
    manifest = (await verifySignedRelease(o.dir, o.trusted, await signedAt(o.dir))).manifest;
  } catch (err) {
    const wrapped = sourceFailure(o.dir, err);
    if (wrapped instanceof ReleaseError && /THRESHOLD|ROOT/.test((err as { code?: string }).code ?? '')) {
      throw new ReleaseError(
        wrapped.code,
        `${wrapped.message} (checked from the trust root ${o.trustedPath}; a previous release must be signed under it or a later root of the same line)`,
        { cause: err },
      );
    }
    throw wrapped;
  }
  if (manifest.product !== o.product) {
    throw new ReleaseError(
      'ERR_RELEASE_DELTA_SOURCE_PRODUCT_MISMATCH',
      `previous release ${o.dir} is of product ${manifest.product}, not ${o.product}; a delta is only made between releases of one product`,
    );
  }
  if (compareSemver(manifest.version, o.version) >= 0) {
    throw new ReleaseError(
      'ERR_RELEASE_DELTA_SOURCE_NOT_OLDER',
      `previous release ${o.dir} has version ${manifest.version}, not older than ${o.version}; deltas go from an older release to a newer one`,
    );
  }
  return { dir: o.dir, manifest };
}

interface PlannedDelta {
  source: DeltaSource;
  sourceIndex: number;
  image: SlotClass;
  sourceImage: ImageManifest;
  targetImage: ImageManifest;
  /** Set when deltas.json already lists (image, sourceRootHash). */
  existing?: DeltaEntry;
}

/**
 * Which deltas to make: one per image present in both releases and per source; an entry for
 * the same (image, sourceRootHash) already in `existing` (or from a source given twice) is kept
 * as is. Two different images claiming one version are refused: the server keys deltas by it.
 */
export function assertNoSourceConflicts(
  sources: readonly DeltaSource[],
  existing: readonly DeltaEntry[],
): void {
  const byVersion = new Map<string, { rootHash: string; from: string }>();
  for (const e of existing) {
    byVersion.set(`${e.image}@${e.sourceVersion}`, { rootHash: e.sourceRootHash, from: 'deltas.json' });
  }
  for (const source of sources) {
    for (const [image, sourceImage] of imagesOf(source.manifest)) {
      const rootHash = sourceImage.verity.rootHash;
      const versionKey = `${image}@${source.manifest.version}`;
      const claimed = byVersion.get(versionKey);
      if (claimed !== undefined && claimed.rootHash !== rootHash) {
        throw new ReleaseError(
          'ERR_RELEASE_DELTA_SOURCE_CONFLICT',
          `${source.dir} is version ${source.manifest.version} with ${image} root hash ${rootHash}, but ${claimed.from} has that version with ${claimed.rootHash}; a version names one image`,
        );
      }
      byVersion.set(versionKey, { rootHash, from: source.dir });
    }
  }
}

export function planDeltas(
  target: ReleaseManifest,
  sources: readonly DeltaSource[],
  existing: readonly DeltaEntry[],
): PlannedDelta[] {
  assertNoSourceConflicts(sources, existing);
  const plan: PlannedDelta[] = [];
  const planned = new Set<string>();
  sources.forEach((source, sourceIndex) => {
    for (const [image, sourceImage] of imagesOf(source.manifest)) {
      const targetImage = target.images[image];
      if (targetImage === undefined) continue;
      const rootHash = sourceImage.verity.rootHash;
      const key = `${image}/${rootHash}`;
      if (planned.has(key)) continue;
      planned.add(key);
      const found = existing.find((e) => e.image === image && e.sourceRootHash === rootHash);
      plan.push({
        source,
        sourceIndex,
        image,
        sourceImage,
        targetImage,
        ...(found === undefined ? {} : { existing: found }),
      });
    }
  });
  return plan;
}

export interface MakeDeltasOptions {
  /** The release the deltas lead to (signed manifest). */
  target: ReleaseManifest;
  /** Uncompressed target images already on disk (build: its inputs)... */
  targetImagePaths?: Partial<Record<SlotClass, string>>;
  /** ...otherwise decompressed (and verified) from this release directory's blobs. */
  targetDir?: string;
  sources: readonly DeltaSource[];
  existing: readonly DeltaEntry[];
  /** Where decompressed images and payloads live until stored (removed by the caller). */
  scratchDir: string;
  /** Move a finished payload to blobs/sha256/<hex>; returns its digest. */
  storeBlob: (scratchFile: string, sha256Hex: string) => Promise<string>;
  quality?: number;
  signal?: AbortSignal | undefined;
  /** Work units (bytes read, decompressed, diffed) done out of the total. */
  onProgress?: ((doneBytes: number, totalBytes: number) => void) | undefined;
}

export interface MadeDeltas {
  /** deltas.json's new list: the existing entries, then the added ones. */
  entries: DeltaEntry[];
  outcomes: DeltaOutcome[];
}

function outcomeOf(
  p: PlannedDelta,
  status: DeltaStatus,
  sizeBytes: number,
  durationMs: number,
  digest?: string,
): DeltaOutcome {
  return {
    image: p.image,
    sourceVersion: p.source.manifest.version,
    sourceRootHash: p.sourceImage.verity.rootHash,
    sourceSizeBytes: p.sourceImage.sizeBytes,
    targetRootHash: p.targetImage.verity.rootHash,
    status,
    ...(digest === undefined ? {} : { digest }),
    sizeBytes,
    artifactSizeBytes: p.targetImage.artifact.sizeBytes,
    ratioToArtifact: Number((sizeBytes / Math.max(1, p.targetImage.artifact.sizeBytes)).toFixed(4)),
    durationMs: Math.round(durationMs),
  };
}

/** Make every planned delta, one source image on disk at a time. */
export async function makeDeltas(o: MakeDeltasOptions): Promise<MadeDeltas> {
  const plan = planDeltas(o.target, o.sources, o.existing);
  const todo = plan.filter((p) => p.existing === undefined);
  const targetPaths = new Map<SlotClass, string>();
  for (const [slot, path] of Object.entries(o.targetImagePaths ?? {})) {
    if (path !== undefined) targetPaths.set(slot as SlotClass, path);
  }
  // Work units: decompressing a source image, then diff's three passes (source, target, changed
  // spans — counted as one target size); decompressing a target image once when needed.
  const targetSlotsToDecompress = new Set(todo.map((p) => p.image).filter((slot) => !targetPaths.has(slot)));
  let total = 0;
  for (const p of todo) total += 2 * p.sourceImage.sizeBytes + 2 * p.targetImage.sizeBytes;
  for (const slot of targetSlotsToDecompress) total += o.target.images[slot]!.sizeBytes;
  let done = 0;
  const report = (extra: number): void => {
    if (o.signal?.aborted)
      throw new ReleaseError('ERR_RELEASE_INTERRUPTED', 'interrupted while making deltas');
    o.onProgress?.(Math.min(total, done + extra), total);
  };

  const outcomes: DeltaOutcome[] = [];
  const added: DeltaEntry[] = [];
  for (const p of plan) {
    if (p.existing === undefined) continue;
    outcomes.push(outcomeOf(p, 'exists', p.existing.sizeBytes, 0, p.existing.digest));
  }
  for (const p of todo) {
    const started = performance.now();
    const name = `${p.image}-from-${p.sourceIndex}`;
    // The target first (add-delta): decompressed and verified once, reused for every source.
    let targetPath = targetPaths.get(p.image);
    if (targetPath === undefined) {
      if (o.targetDir === undefined) throw new Error(`no ${p.image} target image to diff against`);
      targetPath = join(o.scratchDir, `target-${p.image}.img`);
      const blobs = await checkImageBlobs(o.targetDir, p.image, p.targetImage);
      await verifyImage(p.image, p.targetImage, blobs.tree, blobs.artifact, report, targetPath);
      done += p.targetImage.sizeBytes;
      targetPaths.set(p.image, targetPath);
    }
    const sourcePath = join(o.scratchDir, `source-${name}.img`);
    const payloadPath = join(o.scratchDir, `delta-${name}.bin`);
    try {
      try {
        const blobs = await checkImageBlobs(p.source.dir, p.image, p.sourceImage);
        await verifyImage(p.image, p.sourceImage, blobs.tree, blobs.artifact, report, sourcePath);
      } catch (err) {
        throw sourceFailure(p.source.dir, err);
      }
      done += p.sourceImage.sizeBytes;
      const phaseBase = {
        source: 0,
        target: p.sourceImage.sizeBytes,
        encode: p.sourceImage.sizeBytes + p.targetImage.sizeBytes,
      };
      const made = await diff({
        sourcePath,
        targetPath,
        outPath: payloadPath,
        blockSize: p.targetImage.verity.dataBlockSize,
        sourceRootHash: p.sourceImage.verity.rootHash,
        targetRootHash: p.targetImage.verity.rootHash,
        brotliQuality: o.quality ?? DEFAULT_DELTA_QUALITY,
        ...(o.signal === undefined ? {} : { signal: o.signal }),
        onProgress: (d) => {
          const scale = d.phase === 'encode' ? p.targetImage.sizeBytes / Math.max(1, d.totalBytes) : 1;
          report(phaseBase[d.phase] + Math.round(d.doneBytes * scale));
        },
      });
      done += p.sourceImage.sizeBytes + 2 * p.targetImage.sizeBytes;
      report(0);
      if (made.payloadSizeBytes >= p.targetImage.artifact.sizeBytes) {
        outcomes.push(
          outcomeOf(p, 'skipped-not-smaller', made.payloadSizeBytes, performance.now() - started),
        );
        continue;
      }
      const { sha256 } = await sha256File(payloadPath);
      const digest = await o.storeBlob(payloadPath, sha256);
      added.push({
        image: p.image,
        sourceVersion: p.source.manifest.version,
        sourceRootHash: p.sourceImage.verity.rootHash,
        sourceSizeBytes: p.sourceImage.sizeBytes,
        targetRootHash: p.targetImage.verity.rootHash,
        digest,
        sizeBytes: made.payloadSizeBytes,
      });
      outcomes.push(outcomeOf(p, 'added', made.payloadSizeBytes, performance.now() - started, digest));
    } finally {
      // One source image on disk at a time (they are as large as the images).
      await rm(sourcePath, { force: true });
      await rm(payloadPath, { force: true });
    }
  }
  return { entries: [...o.existing, ...added], outcomes };
}
