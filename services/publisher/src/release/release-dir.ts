// A release directory on disk (docs/CONTRACTS.md "Release manifest"): manifest.json,
// manifest.jws, root.json and blobs/sha256/<hex>. The writer builds it in a hidden temporary
// sibling and renames it into place at the end, so no reader ever sees a half-written release.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ReleaseError } from './errors.js';

export const MANIFEST_JSON = 'manifest.json';
export const MANIFEST_JWS = 'manifest.jws';
export const ROOT_JSON = 'root.json';
export const BLOBS_DIR = 'blobs';
/** Earlier trust roots (`<N>.root.json`), so a device on any older root can walk to root.json. */
export const ROOTS_DIR = 'roots';
/** A signed root is a small General JWS; the manifest package refuses anything over 1 MiB. */
export const MAX_ROOT_BYTES = 1024 * 1024;

/** `sha256:<hex>` → `blobs/sha256/<hex>` (relative to the release directory). */
export function blobRelativePath(digest: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (m === null) throw new ReleaseError('ERR_RELEASE_DIR_INVALID', `not a sha256 digest: ${digest}`);
  return join(BLOBS_DIR, 'sha256', m[1]!);
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Move a finished file (same filesystem) to `dir`/blobs/sha256/<hex>, fsynced first so the name
 * never points at unwritten data; returns its `sha256:<hex>` digest. `sha256Hex` must be the
 * file's digest (the caller hashed it).
 */
export async function storeBlobFile(dir: string, scratchFile: string, sha256Hex: string): Promise<string> {
  const digest = `sha256:${sha256Hex}`;
  const target = join(dir, blobRelativePath(digest));
  await fsyncPath(scratchFile);
  if (await exists(target)) {
    // Identical content (e.g. boot == rootfs image, a delta made twice) is stored once.
    await rm(scratchFile);
  } else {
    await mkdir(dirname(target), { recursive: true });
    await rename(scratchFile, target);
    await fsyncPath(dirname(target));
  }
  return digest;
}

export class ReleaseDirWriter {
  readonly outDir: string;
  /** The hidden sibling directory everything is written into until commit(). */
  readonly tempDir: string;
  private done = false;

  private constructor(outDir: string, tempDir: string) {
    this.outDir = outDir;
    this.tempDir = tempDir;
  }

  /** Refuses an existing `outDir` and a missing parent; creates the temporary directory. */
  static async create(outDir: string): Promise<ReleaseDirWriter> {
    const out = resolve(outDir);
    await ReleaseDirWriter.assertAbsent(out);
    const parent = dirname(out);
    // `--out releases/1.2.0` in a fresh CI checkout: create releases/ (it holds no release).
    try {
      await mkdir(parent, { recursive: true });
    } catch (err) {
      throw new ReleaseError(
        'ERR_RELEASE_USAGE',
        `--out ${outDir}: cannot create the parent directory ${parent}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    // Same parent → same filesystem → rename() at the end is atomic.
    const temp = await mkdtemp(join(parent, `.${basename(out)}.partial-`));
    await mkdir(join(temp, BLOBS_DIR, 'sha256'), { recursive: true });
    await mkdir(join(temp, '.scratch'));
    return new ReleaseDirWriter(out, temp);
  }

  static async assertAbsent(out: string): Promise<void> {
    if (await exists(out)) {
      throw new ReleaseError(
        'ERR_RELEASE_OUT_EXISTS',
        `--out ${out} already exists; a release is never overwritten — choose a new directory`,
      );
    }
  }

  /** A path for intermediate files (hash tree, artifact) before they become blobs. */
  scratchPath(name: string): string {
    return join(this.scratchDir, name);
  }

  /** The directory of scratch files: removed by commit() and abort(). */
  get scratchDir(): string {
    return join(this.tempDir, '.scratch');
  }

  /** Move a finished scratch file to its content address; returns its `sha256:<hex>` digest. */
  async addBlob(scratchFile: string, sha256Hex: string): Promise<string> {
    return storeBlobFile(this.tempDir, scratchFile, sha256Hex);
  }

  async writeFile(name: string, content: string): Promise<void> {
    await mkdir(dirname(join(this.tempDir, name)), { recursive: true });
    const handle = await open(join(this.tempDir, name), 'wx', 0o644);
    try {
      await handle.writeFile(content, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /** Publish: rename the temporary directory to `outDir` (atomic on one filesystem). */
  async commit(): Promise<void> {
    await rm(join(this.tempDir, '.scratch'), { recursive: true, force: true });
    await fsyncPath(join(this.tempDir, BLOBS_DIR, 'sha256'));
    await fsyncPath(this.tempDir);
    // rename(2) would replace an empty directory created meanwhile; refuse that too.
    await ReleaseDirWriter.assertAbsent(this.outDir);
    await rename(this.tempDir, this.outDir);
    await fsyncPath(dirname(this.outDir));
    this.done = true;
  }

  /** Remove everything written so far (idempotent; a no-op after commit). */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await rm(this.tempDir, { recursive: true, force: true });
  }
}

/** Read a small file of a release directory with a size limit, as text. */
export async function readSmallFile(path: string, maxBytes: number, what: string): Promise<string> {
  let size: number;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new ReleaseError('ERR_RELEASE_DIR_INVALID', `${what} ${path} is not a file`);
    size = info.size;
  } catch (err) {
    if (err instanceof ReleaseError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new ReleaseError(
      'ERR_RELEASE_DIR_INVALID',
      `${what} ${path}: ${code === 'ENOENT' ? 'not found' : (err as Error).message}`,
      { cause: err },
    );
  }
  if (size > maxBytes) {
    throw new ReleaseError(
      'ERR_RELEASE_DIR_INVALID',
      `${what} ${path} is ${size} bytes; at most ${maxBytes} allowed`,
    );
  }
  return readFile(path, 'utf8');
}

/** Parse JSON text, naming the file on failure. */
export function parseJsonFile(text: string, path: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ReleaseError(
      'ERR_RELEASE_DIR_INVALID',
      `${what} ${path} is not JSON: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

/** Stream a file through sha256: the hex digest and the number of bytes read. */
export async function sha256File(path: string): Promise<{ sha256: string; sizeBytes: number }> {
  const hash = createHash('sha256');
  let sizeBytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    sizeBytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), sizeBytes };
}

/**
 * The `roots/<N>.root.json` files of a keys or release directory, oldest first, as text
 * (verbatim: a signed root is copied, never re-serialised). Missing directory → none.
 */
export async function readRootHistory(dir: string): Promise<{ version: number; text: string }[]> {
  const names = await readdir(join(dir, ROOTS_DIR)).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  const versions = names
    .map((name) => /^(\d{1,10})\.root\.json$/.exec(name)?.[1])
    .filter((v): v is string => v !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
  const out: { version: number; text: string }[] = [];
  for (const version of versions) {
    const path = join(dir, ROOTS_DIR, `${version}.root.json`);
    out.push({ version, text: await readSmallFile(path, MAX_ROOT_BYTES, 'earlier trust root') });
  }
  return out;
}

/**
 * A blob of a release directory is present with the size and sha256 that `source` (the signed
 * manifest, deltas.json) gives; returns its path. `what` names it in errors ("rootfs artifact").
 */
export async function checkBlob(
  dir: string,
  what: string,
  blob: { digest: string; sizeBytes: number },
  source = 'the signed manifest',
): Promise<string> {
  const path = join(dir, blobRelativePath(blob.digest));
  let actual: { sha256: string; sizeBytes: number };
  try {
    const handle = await open(path, 'r');
    const size = (await handle.stat()).size;
    await handle.close();
    if (size !== blob.sizeBytes) {
      throw new ReleaseError(
        'ERR_RELEASE_BLOB_SIZE_MISMATCH',
        `${what} ${path} is ${size} bytes; ${source} says ${blob.sizeBytes}`,
      );
    }
    actual = await sha256File(path);
  } catch (err) {
    if (err instanceof ReleaseError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ReleaseError(
        'ERR_RELEASE_BLOB_MISSING',
        `${what} ${blob.digest} is missing: no file ${path}`,
      );
    }
    throw err;
  }
  if (`sha256:${actual.sha256}` !== blob.digest || actual.sizeBytes !== blob.sizeBytes) {
    throw new ReleaseError(
      'ERR_RELEASE_BLOB_DIGEST_MISMATCH',
      `${what} ${path} has digest sha256:${actual.sha256}; ${source} says ${blob.digest}`,
    );
  }
  return path;
}
