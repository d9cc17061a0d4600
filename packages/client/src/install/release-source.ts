// Where a release's bytes come from: a local release directory (offline/USB install) or the
// update server's offer (artifact URLs, resumable HTTP). Both hand out blobs as streams starting
// at a byte offset, bounded by the size the signed manifest states (or, for a delta, the size
// its unsigned offer states), and list the deltas available beside the signed manifest.
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as v from 'valibot';
import { ClientError } from '../errors.js';
import { describeIssue, describeIssues } from '../schema-issues.js';
import type { BackoffOptions } from '../http/backoff.js';
import { MAX_MANIFEST_JWS_BYTES } from '../http/bounded-body.js';
import { type DownloadOptions, downloadRange } from '../http/download.js';
import type { DeltaOffer, UpdateServerClient } from '../http/server-api.js';
import type { TokenBucket } from '../http/token-bucket.js';
import type { JournalSource } from './journal.js';

/**
 * A delta to one image of the release (docs/CONTRACTS.md "Deltas end to end"): untrusted, chosen
 * only when `sourceRootHash` is the active slot's known root hash for `image`.
 */
export interface DeltaCandidate {
  image: 'rootfs' | 'boot';
  digest: string;
  sizeBytes: number;
  sourceRootHash: string;
  sourceVersion?: string;
}

export interface ReleaseSource {
  /** For messages and the journal. */
  readonly journalSource: JournalSource;
  readManifestJws(): Promise<string>;
  /**
   * Signed trust roots shipped with the release, oldest first (release dir `roots/<N>.root.json`
   * then `root.json`): the device walks them from its own root (verifyRootChain). May be empty.
   */
  readRootChain(): Promise<string[]>;
  /**
   * Deltas offered for this release (server: the poll's `deltas`; directory: `deltas.json`).
   * Malformed entries are left out and reported through `warn`; never fails the install.
   * A source without this method offers no deltas.
   */
  readDeltas?(warn: (message: string) => void): Promise<DeltaCandidate[]>;
  /** Bytes [startByte, sizeBytes) of the blob (artifact, hash tree or delta) with this digest. */
  openBlob(
    digest: string,
    sizeBytes: number,
    startByte: number,
    signal?: AbortSignal,
  ): AsyncIterable<Uint8Array>;
}

const DIGEST = /^sha256:([0-9a-f]{64})$/;

function blobHex(digest: string): string {
  const m = DIGEST.exec(digest);
  if (m === null)
    throw new ClientError('ERR_INSTALL_ARTIFACT_MISSING', `unsupported blob digest "${digest}"`);
  return m[1]!;
}

/** deltas.json is small (one entry per image and source); anything larger is not read. */
const MAX_DELTAS_JSON_BYTES = 1024 * 1024;

const deltasFileSchema = v.object({
  schemaVersion: v.literal(1),
  deltas: v.pipe(v.array(v.unknown()), v.maxLength(64)),
});
const deltasFileEntrySchema = v.object({
  image: v.picklist(['rootfs', 'boot']),
  sourceVersion: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(256))),
  sourceRootHash: v.pipe(v.string(), v.regex(/^(?:[0-9a-f]{2}){20,64}$/, 'expected 40..128 lower-case hex')),
  digest: v.pipe(v.string(), v.regex(DIGEST, 'expected sha256:<64 lower-case hex>')),
  sizeBytes: v.pipe(v.number(), v.safeInteger(), v.minValue(1)),
});

/** A release directory as the publisher writes it: manifest.jws, root.json, blobs/sha256/<hex>, optional deltas.json. */
export class DirectoryReleaseSource implements ReleaseSource {
  readonly journalSource: JournalSource;

  constructor(readonly dir: string) {
    this.journalSource = { kind: 'directory', path: dir };
  }

  async readManifestJws(): Promise<string> {
    const path = join(this.dir, 'manifest.jws');
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(path);
    } catch {
      throw new ClientError(
        'ERR_INSTALL_RELEASE_DIR',
        `${this.dir} is not a release directory: ${path} is missing`,
      );
    }
    if (st.size > MAX_MANIFEST_JWS_BYTES) {
      throw new ClientError(
        'ERR_INSTALL_RELEASE_DIR',
        `${path} is ${st.size} bytes, over the ${MAX_MANIFEST_JWS_BYTES}-byte limit`,
      );
    }
    return readFile(path, 'utf8');
  }

  async readRootChain(): Promise<string[]> {
    const rootsDir = join(this.dir, 'roots');
    const versions = (await readdir(rootsDir).catch(() => [] as string[]))
      .map((name) => /^(\d{1,10})\.root\.json$/.exec(name)?.[1])
      .filter((v): v is string => v !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    const paths = [...versions.map((v) => join(rootsDir, `${v}.root.json`)), join(this.dir, 'root.json')];
    const out: string[] = [];
    for (const path of paths) {
      try {
        if ((await stat(path)).size > MAX_MANIFEST_JWS_BYTES) continue;
        out.push(await readFile(path, 'utf8'));
      } catch {
        // absent: the release ships no (further) roots
      }
    }
    return out;
  }

  async readDeltas(warn: (message: string) => void): Promise<DeltaCandidate[]> {
    const path = join(this.dir, 'deltas.json');
    let text: string;
    try {
      const st = await stat(path);
      if (st.size > MAX_DELTAS_JSON_BYTES) {
        warn(`${path} is ${st.size} bytes, over the ${MAX_DELTAS_JSON_BYTES}-byte limit; no delta is used`);
        return [];
      }
      text = await readFile(path, 'utf8');
    } catch {
      return []; // a release directory without deltas.json has no deltas
    }
    let file: v.InferOutput<typeof deltasFileSchema>;
    try {
      const r = v.safeParse(deltasFileSchema, JSON.parse(text));
      if (!r.success) throw new Error(describeIssues(r.issues));
      file = r.output;
    } catch (e) {
      warn(`${path} is not a valid deltas file (${(e as Error).message.slice(0, 200)}); no delta is used`);
      return [];
    }
    const out: DeltaCandidate[] = [];
    file.deltas.forEach((entry, index) => {
      const r = v.safeParse(deltasFileEntrySchema, entry);
      if (!r.success) {
        warn(`${path}: delta ${index} ignored (${describeIssue(r.issues[0], '(entry)')})`);
        return;
      }
      const { sourceVersion, ...rest } = r.output;
      out.push({ ...rest, ...(sourceVersion !== undefined ? { sourceVersion } : {}) });
    });
    return out;
  }

  async *openBlob(digest: string, sizeBytes: number, startByte: number): AsyncGenerator<Uint8Array> {
    const path = join(this.dir, 'blobs', 'sha256', blobHex(digest));
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch {
      throw new ClientError(
        'ERR_INSTALL_ARTIFACT_MISSING',
        `release directory has no blob ${digest} (expected ${path})`,
      );
    }
    if (size !== sizeBytes) {
      throw new ClientError(
        'ERR_INSTALL_ARTIFACT_SIZE',
        `${path} is ${size} bytes; the signed manifest says ${sizeBytes}`,
      );
    }
    if (startByte >= sizeBytes) return;
    // 64 KiB reads, like network chunks: with 1 MiB reads a local brotli install of a 512 MiB
    // image peaked at 130 MiB RSS (75 MiB of zlib-held external memory) instead of 72 MiB.
    yield* createReadStream(path, { start: startByte, end: sizeBytes - 1, highWaterMark: 64 * 1024 });
  }
}

/** An update offer from the server: blobs fetched from its artifact URLs with Range resume. */
export class ServerReleaseSource implements ReleaseSource {
  readonly journalSource: JournalSource;

  constructor(
    private readonly o: {
      manifestJws: string;
      artifacts: Record<string, string>;
      /** The offer's deltas, already checked by UpdateServerClient.poll. */
      deltas?: DeltaOffer[];
      /** The offer's roots (poll `roots`), walked by the agent before the manifest is verified. */
      roots?: string[];
      client: UpdateServerClient;
      bucket?: TokenBucket;
      backoff?: BackoffOptions;
      fetch?: typeof fetch;
      /** Slow-retrieval limits of every blob download (downloadRange `minRate`). */
      minRate?: DownloadOptions['minRate'];
      /** Told of every chunk received (the daemon's watchdog: a download in progress is alive). */
      onChunk?: () => void;
    },
  ) {
    this.journalSource = { kind: 'server', artifacts: o.artifacts };
  }

  async readManifestJws(): Promise<string> {
    return this.o.manifestJws;
  }

  async readRootChain(): Promise<string[]> {
    return this.o.roots ?? [];
  }

  async readDeltas(): Promise<DeltaCandidate[]> {
    return this.o.deltas ?? [];
  }

  openBlob(
    digest: string,
    sizeBytes: number,
    startByte: number,
    signal?: AbortSignal,
  ): AsyncIterable<Uint8Array> {
    const where = this.o.artifacts[digest] ?? this.o.deltas?.find((d) => d.digest === digest)?.url;
    if (where === undefined) {
      throw new ClientError('ERR_INSTALL_ARTIFACT_MISSING', `the update offer has no URL for blob ${digest}`);
    }
    const url = this.o.client.resolveUrl(where);
    return downloadRange({
      url,
      startByte,
      totalBytes: sizeBytes,
      headers: () => this.o.client.headersFor(url),
      ...(this.o.bucket ? { bucket: this.o.bucket } : {}),
      ...(this.o.backoff ? { backoff: this.o.backoff } : {}),
      ...(this.o.fetch ? { fetch: this.o.fetch } : {}),
      ...(this.o.minRate ? { minRate: this.o.minRate } : {}),
      ...(this.o.onChunk ? { onChunk: this.o.onChunk } : {}),
      ...(signal ? { signal } : {}),
    });
  }
}
