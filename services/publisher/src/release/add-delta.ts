// `abota release add-delta`: deltas for a release that is already built. The release itself is
// checked first (trust chain, signatures, manifest.json; its images are decompressed and every
// block verified while the deltas are made), then each previous release like `build
// --delta-from` does. New payloads become blobs, then deltas.json is replaced atomically; the
// scratch images live in a hidden sibling directory removed on success, failure and Ctrl-C.
import { mkdtemp, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { SignedRoot } from '@abota/manifest';
import { type DeltaEntry, readDeltasFile, writeDeltasFileAtomic } from './deltas-json.js';
import {
  type DeltaOutcome,
  type DeltaSource,
  makeDeltas,
  oldestRoot,
  openDeltaSource,
  parseDeltaQuality,
  signedAt,
} from './deltas-make.js';
import { ReleaseError } from './errors.js';
import { storeBlobFile } from './release-dir.js';
import { readSignedRootFile, verifySignedRelease } from './verify.js';

export interface AddDeltaOptions {
  /** The release directory that receives the deltas. */
  dir: string;
  /** Previous release directories. */
  from: readonly string[];
  /** The trust root both releases are checked from (default: the release's oldest root). */
  rootPath?: string | undefined;
  quality?: number | string | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: ((doneBytes: number, totalBytes: number) => void) | undefined;
}

export interface AddDeltaSummary {
  dir: string;
  product: string;
  version: string;
  /** One per (image, previous release): added, exists (nothing done) or skipped-not-smaller. */
  deltas: DeltaOutcome[];
  /** Entries in deltas.json afterwards. */
  listed: number;
  durationsMs: { total: number };
}

async function trustAnchor(o: AddDeltaOptions): Promise<{ root: SignedRoot; path: string }> {
  if (o.rootPath === undefined) return oldestRoot(o.dir);
  try {
    return { root: await readSignedRootFile(o.rootPath, 'trust root'), path: o.rootPath };
  } catch (err) {
    if (err instanceof ReleaseError) throw new ReleaseError('ERR_RELEASE_USAGE', `--root: ${err.message}`);
    throw err;
  }
}

export async function addDeltas(o: AddDeltaOptions): Promise<AddDeltaSummary> {
  const started = performance.now();
  if (o.from.length === 0) {
    throw new ReleaseError('ERR_RELEASE_USAGE', '--from: name at least one previous release directory');
  }
  const quality = parseDeltaQuality(o.quality);
  const anchor = await trustAnchor(o);
  // The release that receives the deltas keeps its own codes (exit 3 like `release verify`).
  const { manifest } = await verifySignedRelease(o.dir, anchor.root, await signedAt(o.dir));
  const existing: DeltaEntry[] = (await readDeltasFile(o.dir))?.deltas ?? [];
  const sources: DeltaSource[] = [];
  for (const dir of o.from) {
    sources.push(
      await openDeltaSource({
        dir,
        trusted: anchor.root,
        trustedPath: anchor.path,
        product: manifest.product,
        version: manifest.version,
      }),
    );
  }
  const summary = (deltas: DeltaOutcome[], listed: number): AddDeltaSummary => ({
    dir: o.dir,
    product: manifest.product,
    version: manifest.version,
    deltas,
    listed,
    durationsMs: { total: Math.round(performance.now() - started) },
  });
  // Beside the release (same filesystem: blobs are renamed into it), hidden like build's partial dir.
  const releaseDir = resolve(o.dir);
  const scratch = await mkdtemp(join(dirname(releaseDir), `.${basename(releaseDir)}.add-delta-`));
  try {
    const made = await makeDeltas({
      target: manifest,
      targetDir: o.dir,
      sources,
      existing,
      scratchDir: scratch,
      storeBlob: (file, sha256Hex) => storeBlobFile(releaseDir, file, sha256Hex),
      ...(quality === undefined ? {} : { quality }),
      signal: o.signal,
      onProgress: o.onProgress,
    });
    const added = made.entries.slice(existing.length);
    let listed = existing.length;
    if (added.length > 0) {
      // Re-read just before replacing, so entries another run added meanwhile are kept.
      const current = (await readDeltasFile(o.dir))?.deltas ?? [];
      const fresh = added.filter(
        (a) => !current.some((c) => c.image === a.image && c.sourceRootHash === a.sourceRootHash),
      );
      await writeDeltasFileAtomic(o.dir, { schemaVersion: 1, deltas: [...current, ...fresh] });
      listed = current.length + fresh.length;
    }
    return summary(made.outcomes, listed);
  } catch (err) {
    if (o.signal?.aborted) {
      throw new ReleaseError(
        'ERR_RELEASE_INTERRUPTED',
        'interrupted; deltas.json is unchanged and the temporary files were removed',
        { cause: err },
      );
    }
    throw err;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
