// `abota release build`: images → dm-verity trees (@abota/verity) + compressed artifacts
// (./codec.ts) → a manifest signed with jose (@abota/manifest/jose) → deltas from previous releases
// (./deltas-make.ts) → a release directory (./release-dir.ts).
// Every input is checked before any heavy work; any failure removes the partial output.
import { createHash, randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import {
  canonicalJson,
  formatTimestamp,
  type ImageManifest,
  isSemver,
  type ReleaseManifest,
  type SigningKey,
  signManifest,
  type TrustRoot,
} from '@abota/manifest';
import { joseEngine } from '@abota/manifest/jose';
import { formatVerity, saltToHex } from '@abota/verity';
import { loadRoleSigningKeys } from '../keys/trust-root.js';
import { type CodecSettings, compressFile, DEFAULT_CODEC } from './codec.js';
import { DELTAS_JSON, serializeDeltasFile } from './deltas-json.js';
import {
  assertNoSourceConflicts,
  type DeltaOutcome,
  type DeltaSource,
  makeDeltas,
  oldestRoot,
  openDeltaSource,
  parseDeltaQuality,
} from './deltas-make.js';
import { type BootImageSummary, buildBootImage, checkBootInputs } from '../image/bootimg.js';
import { buildUkiBootImage, checkUkiInputs, type UkiBootImageSummary } from '../image/uki-boot.js';
import type { SecureBootKey } from '../image/uki.js';
import { sourceDateEpoch } from '../image/reproducible.js';
import { ReleaseError } from './errors.js';
import { readFilesystemSize } from './filesystem/size.js';
import {
  MANIFEST_JSON,
  MANIFEST_JWS,
  ROOT_JSON,
  ROOTS_DIR,
  ReleaseDirWriter,
  readRootHistory,
  sha256File,
} from './release-dir.js';

/** dm-verity data and hash block size of every release image (docs/formats.md §1.1 default). */
export const BLOCK_SIZE = 4096;
/** Slot classes a release may carry (CONTRACTS.md `images`). */
export type SlotClass = 'rootfs' | 'boot';

/** What the boot image is made from (docs/image.md "Boot image", "Unified kernel images"). */
export interface BootFrom {
  kernel: string;
  modulesDir: string;
  /** grub (default): an ext4 image GRUB reads; uki: a FAT image holding a unified kernel image. */
  format?: 'grub' | 'uki';
  /** uki: the systemd-stub, the console words of the signed command line, the Secure Boot key. */
  uki?: { stub: string; console: string; sign?: SecureBootKey | undefined };
}

export interface BuildOptions {
  images: { rootfs: string; boot?: string | undefined };
  /**
   * Generate the boot image from this kernel (docs/image.md "Boot image"): it carries the
   * rootfs root hash of this release. Excludes `images.boot`.
   */
  bootFrom?: BootFrom | undefined;
  product: string;
  compatible: readonly string[];
  version: string;
  /** Decimal text as typed, or a number. */
  securityVersion: string | number;
  /** A duration from now ("180d", "26w", "12h") or an absolute UTC timestamp. */
  expires: string;
  keysDir: string;
  outDir: string;
  codec?: CodecSettings;
  now?: Date;
  /** Key-file passphrase for encrypted release keys (else $ABOTA_KEY_PASSPHRASE). */
  passphrase?: string | undefined;
  /** Bytes processed so far out of `totalBytes` (verity hashing + compression of all images). */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** Abort (Ctrl-C): the build stops at the next chunk and removes its partial directory. */
  signal?: AbortSignal;
  /**
   * Previous release directories to make deltas from (CONTRACTS.md "Deltas end to end"): each
   * is verified from the keys directory's oldest trust root before use.
   */
  deltaFrom?: readonly string[];
  /** Brotli quality of delta literals, 0..11 (default 11). */
  deltaQuality?: number;
  /** Work units of the delta step done out of its total (verifying sources, diffing). */
  onDeltaProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface ImageSummary {
  sizeBytes: number;
  rootHash: string;
  hashTree: { digest: string; sizeBytes: number };
  artifact: { digest: string; sizeBytes: number; codec: string };
  /** uncompressed / compressed. */
  compressionRatio: number;
  durationsMs: { verity: number; compress: number; total: number };
}

export interface BuildSummary {
  outDir: string;
  product: string;
  version: string;
  securityVersion: number;
  created: string;
  expires: string;
  /** sha256 of manifest.json (the signed canonical payload). */
  manifestDigest: string;
  signedBy: string[];
  rootVersion: number;
  codec: CodecSettings;
  images: Partial<Record<SlotClass, ImageSummary>>;
  /** What the generated boot image holds (with `bootFrom`). */
  bootImage?: BootImageSummary;
  /** What the generated UKI boot image holds (with `bootFrom.format` uki). */
  ukiBootImage?: UkiBootImageSummary;
  /** One per (image, previous release) pair: added, or skipped when not smaller than the artifact. */
  deltas: DeltaOutcome[];
  totalBytes: { images: number; artifacts: number; hashTrees: number; deltas: number };
  durationsMs: { keys: number; sign: number; deltas: number; total: number };
}

const ID = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const DURATION_MS: Record<string, number> = {
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

/** `--expires`: "180d" (s, m, h, d, w) from `now`, or an absolute timestamp; must be in the future. */
export function parseExpiry(text: string, now: Date): Date {
  let at: Date;
  const m = /^(\d{1,6})([smhdw])$/.exec(text);
  if (m !== null) {
    at = new Date(now.getTime() + Number(m[1]) * DURATION_MS[m[2]!]!);
  } else if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(text)) {
    at = new Date(text);
  } else {
    at = new Date(Number.NaN);
  }
  if (Number.isNaN(at.getTime())) {
    throw new ReleaseError(
      'ERR_RELEASE_USAGE',
      `--expires ${JSON.stringify(text)}: expected a duration like 180d, 26w, 12h or a timestamp like 2027-05-25T12:00:00Z`,
    );
  }
  // The manifest stores whole seconds; an expiry that rounds to "now" is already in the past.
  if (Math.floor(at.getTime() / 1000) <= Math.floor(now.getTime() / 1000)) {
    throw new ReleaseError(
      'ERR_RELEASE_EXPIRY_IN_PAST',
      `--expires ${text} is ${formatTimestamp(at)}, not after now (${formatTimestamp(now)}); devices would refuse the release`,
    );
  }
  return at;
}

export function parseSecurityVersion(value: string | number): number {
  const text = String(value);
  const n = /^\d{1,10}$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= 0 && n <= 2 ** 32 - 1)) {
    throw new ReleaseError(
      'ERR_RELEASE_USAGE',
      `--security-version ${JSON.stringify(text)}: expected a whole number 0 … 4294967295`,
    );
  }
  return n;
}

function checkArguments(o: BuildOptions): void {
  if (!ID.test(o.product)) {
    throw new ReleaseError(
      'ERR_RELEASE_USAGE',
      `--product ${JSON.stringify(o.product)}: expected a lower-case id [a-z0-9][a-z0-9._-]{0,63}`,
    );
  }
  if (o.compatible.length === 0) {
    throw new ReleaseError('ERR_RELEASE_USAGE', '--compatible: name at least one hardware id');
  }
  for (const hw of o.compatible) {
    if (!ID.test(hw)) {
      throw new ReleaseError(
        'ERR_RELEASE_USAGE',
        `--compatible ${JSON.stringify(hw)}: expected a lower-case id [a-z0-9][a-z0-9._-]{0,63}`,
      );
    }
  }
  if (new Set(o.compatible).size !== o.compatible.length) {
    throw new ReleaseError(
      'ERR_RELEASE_USAGE',
      `--compatible: ${o.compatible.join(', ')} names a hardware id twice`,
    );
  }
  parseDeltaQuality(o.deltaQuality);
  if (o.bootFrom !== undefined && o.images.boot !== undefined) {
    throw new ReleaseError(
      'ERR_RELEASE_USAGE',
      '--boot and --kernel exclude each other: give a boot image or the kernel to make one from',
    );
  }
  if (!isSemver(o.version)) {
    throw new ReleaseError(
      'ERR_RELEASE_USAGE',
      `--version ${JSON.stringify(o.version)}: expected strict semver MAJOR.MINOR.PATCH[-pre][+build], e.g. 1.2.0 (no "v" prefix)`,
    );
  }
}

/** Open each image: a readable regular file whose size is a whole number of 4096-byte blocks. */
async function checkImage(slot: SlotClass, path: string): Promise<number> {
  let size: number;
  let isFile: boolean;
  try {
    const handle = await open(path, 'r');
    try {
      const info = await handle.stat();
      size = info.size;
      isFile = info.isFile();
    } finally {
      await handle.close();
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ReleaseError(
      'ERR_RELEASE_IMAGE_UNREADABLE',
      `${slot} image ${path}: ${code === 'ENOENT' ? 'not found' : code === 'EACCES' ? 'permission denied' : (err as Error).message}`,
      { cause: err },
    );
  }
  if (!isFile) {
    throw new ReleaseError(
      'ERR_RELEASE_IMAGE_UNREADABLE',
      `${slot} image ${path} is not a regular file (copy a block device to an image file first)`,
    );
  }
  if (size === 0 || size % BLOCK_SIZE !== 0) {
    throw new ReleaseError(
      'ERR_RELEASE_IMAGE_NOT_ALIGNED',
      `${slot} image ${path} is ${size} bytes, not a positive multiple of the ${BLOCK_SIZE}-byte verity block ` +
        `(${size % BLOCK_SIZE} bytes too many); pad it, e.g. truncate -s ${Math.ceil(size / BLOCK_SIZE) * BLOCK_SIZE || BLOCK_SIZE} ${path}`,
    );
  }
  const filesystem = await readFilesystemSize(path);
  if (filesystem !== undefined && BigInt(size) < filesystem.sizeBytes) {
    throw new ReleaseError(
      'ERR_RELEASE_IMAGE_TRUNCATED',
      `${slot} image ${path} is ${size} bytes but the ${filesystem.kind} filesystem in it is ${filesystem.sizeBytes} bytes ` +
        `(${filesystem.sizeBytes - BigInt(size)} bytes missing): the image was cut short (an interrupted copy?); build it again from its source`,
    );
  }
  return size;
}

async function buildImage(
  writer: ReleaseDirWriter,
  slot: SlotClass,
  path: string,
  sizeBytes: number,
  codec: CodecSettings,
  progress: (slot: SlotClass, kind: 'verity' | 'compress', done: number) => void,
): Promise<{ manifest: ImageManifest; summary: ImageSummary }> {
  const started = performance.now();
  const hashScratch = writer.scratchPath(`${slot}.hash`);
  const artifactScratch = writer.scratchPath(`${slot}.artifact`);
  // Hashing (verity's worker threads) and compression (zlib's thread pool) read the image
  // independently and run at the same time: on 2 cores the build takes the longer of the two.
  const verityJob = (async () => {
    const result = await formatVerity({
      dataPath: path,
      hashPath: hashScratch,
      params: {
        hashType: 1,
        algorithm: 'sha256',
        dataBlockSize: BLOCK_SIZE,
        hashBlockSize: BLOCK_SIZE,
        salt: new Uint8Array(randomBytes(32)),
        superblock: true,
        hashOffset: 0,
      },
      onProgress: (done) => progress(slot, 'verity', done),
    });
    return { result, ms: performance.now() - started };
  })();
  const compressJob = (async () => {
    const result = await compressFile(path, artifactScratch, codec, {
      sizeHintBytes: sizeBytes,
      onProgress: (done) => progress(slot, 'compress', done),
    });
    return { result, ms: performance.now() - started };
  })();
  const [verity, compressed] = await Promise.allSettled([verityJob, compressJob]);
  if (verity.status === 'rejected') throw verity.reason;
  if (compressed.status === 'rejected') throw compressed.reason;
  const v = verity.value.result;
  const hashFile = await sha256File(hashScratch);
  const hashDigest = await writer.addBlob(hashScratch, hashFile.sha256);
  const artifactDigest = await writer.addBlob(artifactScratch, compressed.value.result.sha256);
  const artifactSize = compressed.value.result.sizeBytes;
  const image: ImageManifest = {
    sizeBytes,
    verity: {
      hashType: v.params.hashType,
      algorithm: 'sha256',
      dataBlockSize: BLOCK_SIZE,
      hashBlockSize: BLOCK_SIZE,
      dataBlocks: v.params.dataBlocks,
      salt: saltToHex(v.params.salt),
      rootHash: v.rootHash,
      superblock: v.params.superblock,
      ...(v.params.uuid === undefined ? {} : { uuid: v.params.uuid }),
      hashOffset: v.params.hashOffset,
      hashTree: { digest: hashDigest, sizeBytes: hashFile.sizeBytes },
    },
    artifact: {
      digest: artifactDigest,
      sizeBytes: artifactSize,
      codec: codec.codec,
      uncompressedSizeBytes: sizeBytes,
    },
  };
  return {
    manifest: image,
    summary: {
      sizeBytes,
      rootHash: v.rootHash,
      hashTree: { digest: hashDigest, sizeBytes: hashFile.sizeBytes },
      artifact: { digest: artifactDigest, sizeBytes: artifactSize, codec: codec.codec },
      compressionRatio: Number((sizeBytes / Math.max(1, artifactSize)).toFixed(3)),
      durationsMs: {
        verity: Math.round(verity.value.ms),
        compress: Math.round(compressed.value.ms),
        total: Math.round(performance.now() - started),
      },
    },
  };
}

/** Build a signed release directory at `o.outDir`; nothing is left behind on failure. */
export async function buildRelease(o: BuildOptions): Promise<BuildSummary> {
  const started = performance.now();
  const now = o.now ?? new Date();
  const codec = o.codec ?? DEFAULT_CODEC;
  // Cheap checks first, in the order a person fixes them: arguments, output, images, keys.
  checkArguments(o);
  const securityVersion = parseSecurityVersion(o.securityVersion);
  const expires = parseExpiry(o.expires, now);
  await ReleaseDirWriter.assertAbsent(o.outDir);
  if (o.bootFrom !== undefined) await checkBootInputs(o.bootFrom.kernel, o.bootFrom.modulesDir);
  if (o.bootFrom?.format === 'uki') await checkUkiInputs(o.bootFrom.uki!.stub, o.bootFrom.uki!.sign);
  const slots: [SlotClass, string][] = [['rootfs', o.images.rootfs]];
  if (o.images.boot !== undefined) slots.push(['boot', o.images.boot]);
  const sizes = new Map<SlotClass, number>();
  for (const [slot, path] of slots) sizes.set(slot, await checkImage(slot, path));
  const keysStarted = performance.now();
  const signing: { root: TrustRoot; rootText: string; keys: SigningKey[] } = await loadRoleSigningKeys(
    o.keysDir,
    'release',
    { passphrase: o.passphrase },
  );
  // Shipped with the release so devices still on an older root can walk N → N+1 → … (TUF §5.3).
  const rootHistory = (await readRootHistory(o.keysDir)).filter((r) => r.version < signing.root.version);
  const keysMs = performance.now() - keysStarted;
  // Previous releases: signatures, product and version now; their images after the build.
  const sources: DeltaSource[] = [];
  if ((o.deltaFrom ?? []).length > 0) {
    const anchor = await oldestRoot(o.keysDir);
    for (const dir of o.deltaFrom ?? []) {
      sources.push(
        await openDeltaSource({
          dir,
          trusted: anchor.root,
          trustedPath: anchor.path,
          product: o.product,
          version: o.version,
        }),
      );
    }
    assertNoSourceConflicts(sources, []);
  }

  const totalImageBytes = [...sizes.values()].reduce((a, b) => a + b, 0);
  const totalWork = 2 * totalImageBytes;
  const doneBy = new Map<string, number>();
  const progress = (slot: SlotClass, kind: string, done: number): void => {
    if (o.signal?.aborted) {
      throw new ReleaseError('ERR_RELEASE_INTERRUPTED', 'interrupted; the partial release was removed');
    }
    doneBy.set(`${slot}/${kind}`, done);
    let sum = 0;
    for (const v of doneBy.values()) sum += v;
    o.onProgress?.(Math.min(sum, totalWork), totalWork);
  };

  const writer = await ReleaseDirWriter.create(o.outDir);
  try {
    const images: Partial<Record<SlotClass, ImageManifest>> = {};
    const summaries: Partial<Record<SlotClass, ImageSummary>> = {};
    for (const [slot, path] of slots) {
      const built = await buildImage(writer, slot, path, sizes.get(slot)!, codec, progress);
      images[slot] = built.manifest;
      summaries[slot] = built.summary;
    }
    let bootImage: BootImageSummary | undefined;
    let ukiBootImage: UkiBootImageSummary | undefined;
    if (o.bootFrom !== undefined) {
      // After the rootfs tree: the boot image's command line carries this release's root hash.
      const bootPath = writer.scratchPath('boot.img');
      const inputs = {
        kernel: o.bootFrom.kernel,
        modulesDir: o.bootFrom.modulesDir,
        rootfsPath: o.images.rootfs,
        rootfs: images.rootfs!,
        product: o.product,
        version: o.version,
        epoch: sourceDateEpoch(),
        scratch: writer.scratchDir,
        out: bootPath,
      };
      let bootBytes: number;
      if (o.bootFrom.format === 'uki') {
        ukiBootImage = await buildUkiBootImage({ ...inputs, ...o.bootFrom.uki! });
        bootBytes = ukiBootImage.sizeBytes;
      } else {
        bootImage = await buildBootImage(inputs);
        bootBytes = bootImage.sizeBytes;
      }
      slots.push(['boot', bootPath]);
      const built = await buildImage(writer, 'boot', bootPath, bootBytes, codec, progress);
      images.boot = built.manifest;
      summaries.boot = built.summary;
    }
    const bootPath = slots.find(([slot]) => slot === 'boot')?.[1];
    const manifest: ReleaseManifest = {
      schemaVersion: 1,
      product: o.product,
      compatible: [...o.compatible],
      version: o.version,
      securityVersion,
      created: formatTimestamp(now),
      expires: formatTimestamp(expires),
      images: { rootfs: images.rootfs!, ...(images.boot === undefined ? {} : { boot: images.boot }) },
    };
    const signStarted = performance.now();
    // signManifest validates the manifest and checks the keys meet the release threshold.
    const jws = await signManifest(manifest, signing.keys, signing.root, { engine: joseEngine });
    const signMs = performance.now() - signStarted;
    const payloadText = canonicalJson(manifest);
    await writer.writeFile(MANIFEST_JSON, payloadText);
    await writer.writeFile(MANIFEST_JWS, `${JSON.stringify(jws)}\n`);
    await writer.writeFile(ROOT_JSON, signing.rootText);
    for (const r of rootHistory) await writer.writeFile(join(ROOTS_DIR, `${r.version}.root.json`), r.text);
    const deltasStarted = performance.now();
    let deltas: DeltaOutcome[] = [];
    if (sources.length > 0) {
      const made = await makeDeltas({
        target: manifest,
        targetImagePaths: {
          rootfs: o.images.rootfs,
          ...(bootPath === undefined ? {} : { boot: bootPath }),
        },
        sources,
        existing: [],
        scratchDir: writer.scratchDir,
        storeBlob: (file, sha256Hex) => writer.addBlob(file, sha256Hex),
        ...(o.deltaQuality === undefined ? {} : { quality: o.deltaQuality }),
        signal: o.signal,
        onProgress: o.onDeltaProgress,
      });
      deltas = made.outcomes;
      if (made.entries.length > 0) {
        await writer.writeFile(DELTAS_JSON, serializeDeltasFile({ schemaVersion: 1, deltas: made.entries }));
      }
    }
    const deltasMs = performance.now() - deltasStarted;
    await writer.commit();
    const allSummaries = Object.values(summaries);
    return {
      outDir: writer.outDir,
      product: manifest.product,
      version: manifest.version,
      securityVersion,
      created: manifest.created,
      expires: manifest.expires,
      manifestDigest: `sha256:${createHash('sha256').update(payloadText).digest('hex')}`,
      signedBy: signing.keys.map((k) => k.kid),
      rootVersion: signing.root.version,
      codec,
      images: summaries,
      ...(bootImage === undefined ? {} : { bootImage }),
      ...(ukiBootImage === undefined ? {} : { ukiBootImage }),
      deltas,
      totalBytes: {
        images: allSummaries.reduce((a, s) => a + s.sizeBytes, 0),
        artifacts: allSummaries.reduce((a, s) => a + s.artifact.sizeBytes, 0),
        hashTrees: allSummaries.reduce((a, s) => a + s.hashTree.sizeBytes, 0),
        deltas: deltas.reduce((a, d) => a + (d.status === 'added' ? d.sizeBytes : 0), 0),
      },
      durationsMs: {
        keys: Math.round(keysMs),
        sign: Math.round(signMs),
        deltas: Math.round(deltasMs),
        total: Math.round(performance.now() - started),
      },
    };
  } catch (err) {
    await writer.abort();
    // The stop surfaces from whichever job saw it first (verity wraps it as ERR_VERITY_IO).
    if (o.signal?.aborted) {
      throw new ReleaseError('ERR_RELEASE_INTERRUPTED', 'interrupted; the partial release was removed', {
        cause: err,
      });
    }
    throw err;
  }
}
