// @abota/update-server/lab: a real `abota-server` started in-process for the demo, the fleet tests
// and the benches (startServer → createApp, PGlite + filesystem blobs in a directory, listening on
// 127.0.0.1), and the admin calls an operator makes — product, release push (blobs first, then the
// manifest), provisioning token, rollout — over real HTTP through hono/client `hc`, typed by the
// server's own routes. Simulated VMs are @abota/simulator's; this module composes nothing else.
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { hc } from 'hono/client';
import type { App } from './app.js';
import { generateSecret } from './auth/secrets.js';
import { DEFAULT_APP_CONFIG, type ServerConfig } from './config.js';
import type { RateLimitConfig } from './rate-limit.js';
import type { Clock } from './context.js';
import { createLogger } from './logger.js';
import { type RunningServer, startServer } from './server.js';

export interface LabServerOptions {
  /** PGlite database (dataDir/db) and blobs (dataDir/blobs) live here. */
  dataDir: string;
  /** Poll interval the server hands to devices (default 1 s: simulation). */
  pollIntervalSeconds?: number;
  clock?: Clock;
  logLevel?: string;
  /** The production path: PostgreSQL at this URL instead of PGlite (pool of 4). */
  databaseUrl?: string;
  /** The production path: blobs in S3 as `abota-server` reads it from ABOTA_S3_* (credentials from the AWS chain). */
  s3Env?: Readonly<Record<string, string>>;
  /** Token buckets (default: the server's defaults). */
  rateLimits?: RateLimitConfig;
}

export interface DeviceEvent {
  rolloutId: string | null;
  version: string;
  state: string;
  errorCode: string | null;
  message: string | null;
  progress: number | null;
  at: string;
}

/** An admin call the lab made was answered with another status than it expects. */
export class LabError extends Error {
  readonly code = 'ERR_LAB_ADMIN';
  constructor(message: string) {
    super(message);
    this.name = 'LabError';
  }
}

/** The admin client of a lab: `hc` typed by the server's routes, the lab's admin key sent. */
export type LabApi = ReturnType<typeof hc<App>>;

/** The answer's JSON, or a LabError naming the call unless its status is one of `ok`. */
export async function labJson<T>(
  res: { status: number; url: string; text(): Promise<string> },
  ok: number[] = [200, 201],
): Promise<T> {
  const text = await res.text();
  if (!ok.includes(res.status)) {
    throw new LabError(`${new URL(res.url).pathname}: HTTP ${res.status} ${text.slice(0, 500)}`);
  }
  return (text === '' ? undefined : JSON.parse(text)) as T;
}

export class LabServer {
  /** The typed admin client (hono/client) with this lab's admin key. */
  readonly api: LabApi;

  private constructor(
    readonly running: RunningServer,
    readonly adminKey: string,
    readonly dataDir: string,
  ) {
    this.api = hc<App>(running.url, { headers: { authorization: `Bearer ${adminKey}` } });
  }

  static async start(o: LabServerOptions): Promise<LabServer> {
    const adminKey = generateSecret('abk');
    const config: ServerConfig = {
      ...DEFAULT_APP_CONFIG,
      pollIntervalSeconds: o.pollIntervalSeconds ?? 1,
      pollJitterFraction: 0,
      ...(o.rateLimits === undefined ? {} : { rateLimits: o.rateLimits }),
      blobDelivery: 'stream',
      host: '127.0.0.1',
      port: 0,
      dataDir: o.dataDir,
      databaseUrl: o.databaseUrl,
      databasePoolSize: o.databaseUrl === undefined ? 1 : 4,
      s3:
        o.s3Env?.['ABOTA_S3_BUCKET'] === undefined
          ? undefined
          : {
              bucket: o.s3Env['ABOTA_S3_BUCKET'],
              prefix: o.s3Env['ABOTA_S3_PREFIX'],
              endpoint: o.s3Env['ABOTA_S3_ENDPOINT'],
              region: o.s3Env['ABOTA_S3_REGION'] ?? 'us-east-1',
              forcePathStyle: o.s3Env['ABOTA_S3_FORCE_PATH_STYLE'] === 'true',
            },
      adminKey,
      logLevel: o.logLevel ?? 'warn',
      shutdownTimeoutMs: 2000,
    };
    const running = await startServer({
      config,
      logger: createLogger({ level: config.logLevel }),
      ...(o.clock ? { clock: o.clock } : {}),
      ...(o.s3Env ? { env: { ...process.env, ...o.s3Env } } : {}),
    });
    return new LabServer(running, adminKey, o.dataDir);
  }

  get url(): string {
    return this.running.url;
  }

  /** FsBlobStore root: where a "compromised bucket" can be tampered with. */
  get blobsDir(): string {
    return join(this.dataDir, 'blobs');
  }

  async close(): Promise<void> {
    await this.running.close();
  }

  async createProduct(id: string, trustRootPath: string): Promise<void> {
    const trustRoot = JSON.parse(await readFile(trustRootPath, 'utf8')) as never; // the server checks it
    await labJson(await this.api.v1.admin.products.$post({ json: { id, trustRoot } }));
  }

  /**
   * Push a release directory: every blob under blobs/sha256 (streamed PUT, skipped when the
   * server already has it), then manifest.jws. Returns the release id.
   */
  async pushRelease(
    releaseDir: string,
  ): Promise<{ id: string; version: string; uploadedBytes: number; deltas: number }> {
    const dir = join(releaseDir, 'blobs', 'sha256');
    const blob = this.api.v1.admin.blobs.sha256[':hex'];
    let uploadedBytes = 0;
    for (const hex of await readdir(dir)) {
      const path = join(dir, hex);
      const head = await fetch(blob.$url({ param: { hex } }), {
        method: 'HEAD',
        headers: { authorization: `Bearer ${this.adminKey}` },
      });
      if (head.status === 200) continue;
      const { size } = await stat(path);
      // A streamed body: hc builds the URL, the request is sent as is (hc would buffer a body).
      const res = await fetch(blob.$url({ param: { hex } }), {
        method: 'PUT',
        headers: {
          authorization: `Bearer ${this.adminKey}`,
          'content-type': 'application/octet-stream',
          'content-length': String(size),
        },
        body: Readable.toWeb(createReadStream(path)) as ReadableStream<Uint8Array>,
        duplex: 'half',
      } as RequestInit);
      if (res.status !== 200 && res.status !== 201) {
        throw new LabError(`PUT blob ${hex}: HTTP ${res.status} ${await res.text()}`);
      }
      uploadedBytes += size;
    }
    const manifestJws = await readFile(join(releaseDir, 'manifest.jws'), 'utf8');
    const r = await labJson<{ id: string; version: string }>(
      await this.api.v1.admin.releases.$post({ json: { manifestJws } }),
    );
    // Deltas made with the release (`abota release build --delta-from`, `release add-delta`):
    // their payloads were uploaded above with the other blobs; register them as `abota release
    // push` does, so polls from their source versions are offered them.
    let deltas = 0;
    const deltasJson = await readFile(join(releaseDir, 'deltas.json'), 'utf8').catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    });
    if (deltasJson !== undefined) {
      const file = JSON.parse(deltasJson) as {
        deltas: {
          image: 'boot' | 'rootfs';
          sourceVersion: string;
          sourceRootHash: string;
          digest: string;
          sizeBytes: number;
        }[];
      };
      for (const { image, sourceVersion, sourceRootHash, digest, sizeBytes } of file.deltas) {
        await labJson(
          await this.api.v1.admin.releases[':id'].deltas.$post({
            param: { id: r.id },
            json: { image, sourceVersion, sourceRootHash, digest, sizeBytes },
          }),
        );
        deltas++;
      }
    }
    return { id: r.id, version: r.version, uploadedBytes, deltas };
  }

  async createProvisioningToken(product: string): Promise<string> {
    const r = await labJson<{ token: string }>(
      await this.api.v1.admin['provisioning-tokens'].$post({ json: { product, expiresInSeconds: 3600 } }),
    );
    return r.token;
  }

  async createRollout(
    releaseId: string,
    o: { deviceIds?: string[]; name?: string; allowDowngrade?: boolean } = {},
  ): Promise<string> {
    const r = await labJson<{ id: string }>(
      await this.api.v1.admin.rollouts.$post({
        json: {
          releaseId,
          ...(o.name ? { name: o.name } : {}),
          ...(o.deviceIds ? { selector: { deviceIds: o.deviceIds } } : {}),
          ...(o.allowDowngrade ? { allowDowngrade: true } : {}),
        },
      }),
    );
    return r.id;
  }

  /** What the server knows about a device, with its reported events (newest first). */
  async device(id: string): Promise<{ id: string; events: DeviceEvent[] } & Record<string, unknown>> {
    return labJson(await this.api.v1.admin.devices[':id'].$get({ param: { id } }));
  }
}
