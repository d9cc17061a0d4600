// Where a release's bytes come from: a local release directory (offline/USB install) or the
// update server's offer (artifact URLs, resumable HTTP). Both hand out blobs as streams starting
// at a byte offset, bounded by the size the signed manifest states.
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ClientError } from '../errors.js';
import type { BackoffOptions } from '../http/backoff.js';
import { MAX_MANIFEST_JWS_BYTES } from '../http/bounded-body.js';
import { downloadRange } from '../http/download.js';
import type { UpdateServerClient } from '../http/server-api.js';
import type { TokenBucket } from '../http/token-bucket.js';
import type { JournalSource } from './journal.js';

export interface ReleaseSource {
  /** For messages and the journal. */
  readonly journalSource: JournalSource;
  readManifestJws(): Promise<string>;
  /**
   * Signed trust roots shipped with the release, oldest first (release dir `roots/<N>.root.json`
   * then `root.json`): the device walks them from its own root (verifyRootChain). May be empty.
   */
  readRootChain(): Promise<string[]>;
  /** Bytes [startByte, sizeBytes) of the blob with this digest. */
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

/** A release directory as the publisher writes it: manifest.jws, root.json, blobs/sha256/<hex>. */
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
    yield* createReadStream(path, { start: startByte, end: sizeBytes - 1, highWaterMark: 1024 * 1024 });
  }
}

/** An update offer from the server: blobs fetched from its artifact URLs with Range resume. */
export class ServerReleaseSource implements ReleaseSource {
  readonly journalSource: JournalSource;

  constructor(
    private readonly o: {
      manifestJws: string;
      artifacts: Record<string, string>;
      client: UpdateServerClient;
      bucket?: TokenBucket;
      backoff?: BackoffOptions;
      fetch?: typeof fetch;
    },
  ) {
    this.journalSource = { kind: 'server', artifacts: o.artifacts };
  }

  async readManifestJws(): Promise<string> {
    return this.o.manifestJws;
  }

  async readRootChain(): Promise<string[]> {
    return [];
  }

  openBlob(
    digest: string,
    sizeBytes: number,
    startByte: number,
    signal?: AbortSignal,
  ): AsyncIterable<Uint8Array> {
    const where = this.o.artifacts[digest];
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
      ...(signal ? { signal } : {}),
    });
  }
}
