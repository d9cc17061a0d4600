// The update server side of a simulation: a real `abota-server` started in-process (startServer
// → createApp, PGlite + filesystem blobs in a directory, listening on 127.0.0.1) and the admin
// API calls an operator makes — product, release push (blobs first, then the manifest),
// provisioning token, rollout — over real HTTP.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createReadStream } from 'node:fs';
import {
  type Clock,
  createLogger,
  DEFAULT_APP_CONFIG,
  generateSecret,
  type RunningServer,
  type ServerConfig,
  startServer,
} from '@abota/update-server';
import { SimulatorError } from './errors.js';

export interface LabServerOptions {
  /** PGlite database (dataDir/db) and blobs (dataDir/blobs) live here. */
  dataDir: string;
  /** Poll interval the server hands to devices (default 1 s: simulation). */
  pollIntervalSeconds?: number;
  clock?: Clock;
  logLevel?: string;
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

export class LabServer {
  private constructor(
    readonly running: RunningServer,
    readonly adminKey: string,
    readonly dataDir: string,
  ) {}

  static async start(o: LabServerOptions): Promise<LabServer> {
    const adminKey = generateSecret('abk');
    const config: ServerConfig = {
      ...DEFAULT_APP_CONFIG,
      pollIntervalSeconds: o.pollIntervalSeconds ?? 1,
      pollJitterFraction: 0,
      blobDelivery: 'stream',
      host: '127.0.0.1',
      port: 0,
      dataDir: o.dataDir,
      databaseUrl: undefined,
      databasePoolSize: 1,
      s3: undefined,
      adminKey,
      logLevel: o.logLevel ?? 'warn',
      shutdownTimeoutMs: 2000,
    };
    const running = await startServer({
      config,
      logger: createLogger({ level: config.logLevel }),
      ...(o.clock ? { clock: o.clock } : {}),
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

  /** An admin API call; throws SimulatorError unless the status is one of `ok`. */
  async admin<T>(method: string, path: string, body?: unknown, ok: number[] = [200, 201]): Promise<T> {
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.adminKey}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    if (!ok.includes(res.status)) {
      throw new SimulatorError(
        'ERR_SIM_RELEASE',
        `${method} ${path}: HTTP ${res.status} ${text.slice(0, 500)}`,
      );
    }
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  async createProduct(id: string, trustRootPath: string): Promise<void> {
    const trustRoot = JSON.parse(await readFile(trustRootPath, 'utf8')) as unknown;
    await this.admin('POST', '/v1/admin/products', { id, trustRoot });
  }

  /**
   * Push a release directory: every blob under blobs/sha256 (streamed PUT, skipped when the
   * server already has it), then manifest.jws. Returns the release id.
   */
  async pushRelease(
    releaseDir: string,
  ): Promise<{ id: string; version: string; uploadedBytes: number; deltas: number }> {
    const dir = join(releaseDir, 'blobs', 'sha256');
    let uploadedBytes = 0;
    for (const hex of await readdir(dir)) {
      const path = join(dir, hex);
      const head = await fetch(`${this.url}/v1/admin/blobs/sha256/${hex}`, {
        method: 'HEAD',
        headers: { authorization: `Bearer ${this.adminKey}` },
      });
      if (head.status === 200) continue;
      const { size } = await stat(path);
      const res = await fetch(`${this.url}/v1/admin/blobs/sha256/${hex}`, {
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
        throw new SimulatorError(
          'ERR_SIM_RELEASE',
          `PUT blob ${hex}: HTTP ${res.status} ${await res.text()}`,
        );
      }
      uploadedBytes += size;
    }
    const manifestJws = await readFile(join(releaseDir, 'manifest.jws'), 'utf8');
    const r = await this.admin<{ id: string; version: string }>('POST', '/v1/admin/releases', {
      manifestJws,
    });
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
          image: string;
          sourceVersion: string;
          sourceRootHash: string;
          digest: string;
          sizeBytes: number;
        }[];
      };
      for (const { image, sourceVersion, sourceRootHash, digest, sizeBytes } of file.deltas) {
        await this.admin('POST', `/v1/admin/releases/${r.id}/deltas`, {
          image,
          sourceVersion,
          sourceRootHash,
          digest,
          sizeBytes,
        });
        deltas++;
      }
    }
    return { id: r.id, version: r.version, uploadedBytes, deltas };
  }

  async createProvisioningToken(product: string): Promise<string> {
    const r = await this.admin<{ token: string }>('POST', '/v1/admin/provisioning-tokens', {
      product,
      expiresInSeconds: 3600,
    });
    return r.token;
  }

  async createRollout(
    releaseId: string,
    o: { deviceIds?: string[]; name?: string; allowDowngrade?: boolean } = {},
  ): Promise<string> {
    const r = await this.admin<{ id: string }>('POST', '/v1/admin/rollouts', {
      releaseId,
      ...(o.name ? { name: o.name } : {}),
      ...(o.deviceIds ? { selector: { deviceIds: o.deviceIds } } : {}),
      ...(o.allowDowngrade ? { allowDowngrade: true } : {}),
    });
    return r.id;
  }

  /** What the server knows about a device, with its reported events (newest first). */
  async device(id: string): Promise<{ id: string; events: DeviceEvent[] } & Record<string, unknown>> {
    return this.admin('GET', `/v1/admin/devices/${id}`);
  }
}
