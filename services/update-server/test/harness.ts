// Test wiring with real parts: PGlite (in memory) or the machine's PostgreSQL (a fresh database
// per test file, dropped afterwards), FsBlobStore (temp dir) or S3BlobStore on a real s3rver on
// loopback, real Ed25519 keys and real signatures from @abota/manifest.
import { createHash, generateKeyPairSync, type KeyObject, randomBytes, randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { type BlobStore, FsBlobStore, S3BlobStore } from '@abota/blobstore';
import {
  createTrustRoot,
  generateSigningKey,
  type ReleaseManifest,
  type SignedRoot,
  type SigningKey,
  signManifest,
  signTrustRoot,
  type TrustRoot,
} from '@abota/manifest';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { makeTempDir } from '@abota/testkit';
import { exportJWK, SignJWT } from 'jose';
import pg from 'pg';
import S3rver from 's3rver';
import { type App, createApp } from '../src/app.js';
import { bootstrapAdminKey } from '../src/auth/api-keys.js';
import { generateSecret } from '../src/auth/secrets.js';
import type { AppConfig } from '../src/config.js';
import type { Clock } from '../src/context.js';
import { type Database, type Db, openDatabase } from '../src/db/database.js';
import { releases } from '../src/db/schema.js';
import { createLogger } from '../src/logger.js';

export const POSTGRES_ADMIN_URL =
  process.env['ABOTA_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

export type DbBackend = 'pglite' | 'postgres';
export type BlobBackend = 'fs' | 's3';
export const DB_BACKENDS: DbBackend[] = ['pglite', 'postgres'];

export interface TestDatabase {
  database: Database;
  /** The connection URL (postgres). */
  url?: string;
  /** Closes the connection and drops the database (postgres). */
  dispose(): Promise<void>;
}

/** A fresh, migrated database: PGlite in memory, or `abota_test_<random>` on the real PostgreSQL. */
export async function openTestDatabase(backend: DbBackend): Promise<TestDatabase> {
  if (backend === 'pglite') {
    const database = await openDatabase({ kind: 'pglite' });
    return { database, dispose: () => database.close() };
  }
  const name = `abota_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  const database = await openDatabase({ kind: 'postgres', url: url.toString(), poolSize: 4 });
  return {
    database,
    url: url.toString(),
    dispose: async () => {
      await database.close();
      const c = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/**
 * A release row of `product` (which must exist) written straight to the database, with no signed
 * manifest behind it: for tests of the rollout SQL below the API. Returns its id.
 */
export async function insertBareRelease(db: Db, product: string, version = '2.0.0'): Promise<string> {
  const [row] = await db
    .insert(releases)
    .values({
      product,
      version,
      securityVersion: 1,
      compatible: ['hyperv-x64'],
      expires: new Date('2030-01-01T00:00:00Z'),
      manifestJws: '{}',
      manifest: {},
    })
    .returning({ id: releases.id });
  if (row === undefined) throw new Error('insert returned no release row');
  return row.id;
}

export interface TestBlobStore {
  blobs: BlobStore;
  dispose(): Promise<void>;
}

export async function openTestBlobStore(backend: BlobBackend): Promise<TestBlobStore> {
  const dir = await makeTempDir('abota-server-blobs-');
  if (backend === 'fs') {
    return { blobs: new FsBlobStore(dir), dispose: () => rm(dir, { recursive: true, force: true }) };
  }
  const server = new S3rver({ address: '127.0.0.1', port: 0, directory: dir, silent: true });
  const { port } = await server.run();
  const client = new S3Client({
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
  await client.send(new CreateBucketCommand({ Bucket: 'abota' }));
  return {
    blobs: new S3BlobStore({ client, bucket: 'abota', prefix: 'blobs/' }),
    dispose: async () => {
      client.destroy();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A clock tests can move. */
export class TestClock implements Clock {
  constructor(public current = new Date()) {}
  now(): Date {
    return new Date(this.current.getTime());
  }
  advanceSeconds(s: number): void {
    this.current = new Date(this.current.getTime() + s * 1000);
  }
}

export interface Harness {
  app: App;
  db: Database;
  blobs: BlobStore;
  clock: TestClock;
  adminKey: string;
  /** Every log line the app wrote (pino JSON). */
  logs: string[];
  request(
    path: string,
    init?: RequestInit & { key?: string; token?: string; json?: unknown },
  ): Promise<Response>;
}

export function createHarness(
  database: Database,
  blobs: BlobStore,
  config: Partial<AppConfig> = {},
): Promise<Harness> {
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs.push(
        ...chunk
          .toString('utf8')
          .split('\n')
          .filter((l) => l !== ''),
      );
      done();
    },
  });
  const logger = createLogger({ level: 'debug', destination });
  const clock = new TestClock();
  const app = createApp({
    db: database.db,
    blobs,
    clock,
    logger,
    config,
    pingDatabase: () => database.ping(),
  });
  const adminKey = generateSecret('abk');
  return bootstrapAdminKey({ db: database.db }, adminKey).then(() => ({
    app,
    db: database,
    blobs,
    clock,
    adminKey,
    logs,
    request: async (path, init = {}) => {
      const { key, token, json, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (key !== undefined) headers.set('authorization', `Bearer ${key}`);
      if (token !== undefined) headers.set('authorization', `Bearer ${token}`);
      let body = rest.body;
      if (json !== undefined) {
        headers.set('content-type', 'application/json');
        body = JSON.stringify(json);
      }
      return app.request(path, { ...rest, headers, ...(body === undefined ? {} : { body }) });
    },
  }));
}

// ---- signed releases ----

export interface ProductKeys {
  product: string;
  rootKey: SigningKey;
  releaseKey: SigningKey;
  root: TrustRoot;
  signedRoot: SignedRoot;
}

export async function makeProduct(product = 'eflow-vm'): Promise<ProductKeys> {
  const rootKey = await generateSigningKey();
  const releaseKey = await generateSigningKey();
  const root = await createTrustRoot({
    version: 1,
    expires: new Date(Date.now() + 365 * 86400_000),
    rootKeys: [rootKey],
    rootThreshold: 1,
    releaseKeys: [releaseKey],
    releaseThreshold: 1,
  });
  return { product, rootKey, releaseKey, root, signedRoot: await signTrustRoot(root, [rootKey]) };
}

export interface TestRelease {
  manifest: ReleaseManifest;
  manifestJws: string;
  /** digest → bytes of every blob the manifest references. */
  blobs: Map<string, Uint8Array>;
  artifactDigest: string;
  hashTreeDigest: string;
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A real signed release with small fake blob contents (an 8 KiB "rootfs" and its "hash tree"). */
export async function makeRelease(
  keys: ProductKeys,
  version: string,
  opts: { compatible?: string[]; expires?: Date } = {},
): Promise<TestRelease> {
  const artifact = new Uint8Array(randomBytes(8192));
  const hashTree = new Uint8Array(randomBytes(4096));
  const artifactDigest = `sha256:${sha256(artifact)}`;
  const hashTreeDigest = `sha256:${sha256(hashTree)}`;
  const now = new Date();
  const manifest: ReleaseManifest = {
    schemaVersion: 1,
    product: keys.product,
    compatible: opts.compatible ?? ['hyperv-x64'],
    version,
    securityVersion: 1,
    created: `${now.toISOString().slice(0, 19)}Z`,
    expires: `${(opts.expires ?? new Date(now.getTime() + 30 * 86400_000)).toISOString().slice(0, 19)}Z`,
    images: {
      rootfs: {
        sizeBytes: artifact.length,
        verity: {
          hashType: 1,
          algorithm: 'sha256',
          dataBlockSize: 4096,
          hashBlockSize: 4096,
          dataBlocks: 2,
          salt: randomBytes(32).toString('hex'),
          rootHash: randomBytes(32).toString('hex'),
          superblock: true,
          uuid: randomUUID(),
          hashOffset: 0,
          hashTree: { digest: hashTreeDigest, sizeBytes: hashTree.length },
        },
        artifact: {
          digest: artifactDigest,
          sizeBytes: artifact.length,
          codec: 'none',
          uncompressedSizeBytes: artifact.length,
        },
      },
    },
  };
  const jws = await signManifest(manifest, [keys.releaseKey], keys.root);
  return {
    manifest,
    manifestJws: JSON.stringify(jws),
    blobs: new Map([
      [artifactDigest, artifact],
      [hashTreeDigest, hashTree],
    ]),
    artifactDigest,
    hashTreeDigest,
  };
}

/** Creates the product through the admin API. */
export async function createProduct(h: Harness, keys: ProductKeys): Promise<void> {
  const res = await h.request('/v1/admin/products', {
    method: 'POST',
    key: h.adminKey,
    json: { id: keys.product, trustRoot: keys.signedRoot },
  });
  if (res.status !== 201) throw new Error(`product create: ${res.status} ${await res.text()}`);
}

/** Uploads the blobs and pushes the manifest; returns the release id. */
export async function pushRelease(h: Harness, release: TestRelease): Promise<string> {
  for (const [digest, bytes] of release.blobs) {
    const res = await h.request(`/v1/admin/blobs/sha256/${digest.slice(7)}`, {
      method: 'PUT',
      key: h.adminKey,
      headers: { 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    if (res.status !== 201 && res.status !== 200)
      throw new Error(`blob put: ${res.status} ${await res.text()}`);
  }
  const res = await h.request('/v1/admin/releases', {
    method: 'POST',
    key: h.adminKey,
    json: { manifestJws: release.manifestJws },
  });
  if (res.status !== 201) throw new Error(`release push: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { id: string }).id;
}

export async function startRollout(
  h: Harness,
  releaseId: string,
  selector: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
): Promise<string> {
  const res = await h.request('/v1/admin/rollouts', {
    method: 'POST',
    key: h.adminKey,
    json: { releaseId, selector, ...extra },
  });
  if (res.status !== 201) throw new Error(`rollout create: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { id: string }).id;
}

export async function createProvisioningToken(
  h: Harness,
  product: string,
  extra: Record<string, unknown> = {},
): Promise<string> {
  const res = await h.request('/v1/admin/provisioning-tokens', {
    method: 'POST',
    key: h.adminKey,
    // Tests register several devices with one token; the server's default is one use.
    json: { product, expiresInSeconds: 3600, maxUses: 1000, ...extra },
  });
  if (res.status !== 201) throw new Error(`token create: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { token: string }).token;
}

// ---- devices ----

export interface TestDevice {
  id: string;
  privateKey: KeyObject;
  /** A fresh, valid device JWT (unique jti). */
  token(overrides?: {
    aud?: string;
    iat?: number;
    exp?: number;
    jti?: string;
    sub?: string;
    iss?: string;
    key?: KeyObject;
  }): Promise<string>;
}

export async function deviceKeyPair(): Promise<{
  privateKey: KeyObject;
  publicJwk: { kty: string; crv: string; x: string };
}> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const jwk = await exportJWK(publicKey);
  return { privateKey, publicJwk: { kty: 'OKP', crv: 'Ed25519', x: jwk.x ?? '' } };
}

export function deviceTokenSigner(
  id: string,
  privateKey: KeyObject,
  clock: Clock,
  audience = 'abota',
): TestDevice['token'] {
  return async (o = {}) => {
    const iat = o.iat ?? Math.floor(clock.now().getTime() / 1000);
    return new SignJWT({})
      .setProtectedHeader({ alg: 'EdDSA' })
      .setIssuer(o.iss ?? id)
      .setSubject(o.sub ?? id)
      .setAudience(o.aud ?? audience)
      .setIssuedAt(iat)
      .setExpirationTime(o.exp ?? iat + 120)
      .setJti(o.jti ?? randomUUID())
      .sign(o.key ?? privateKey);
  };
}

export async function registerDevice(
  h: Harness,
  product: string,
  token: string,
  hardware = 'hyperv-x64',
): Promise<TestDevice> {
  const { privateKey, publicJwk } = await deviceKeyPair();
  const res = await h.request('/v1/device/register', {
    method: 'POST',
    json: { token, publicKeyJwk: publicJwk, product, hardware },
  });
  if (res.status !== 201) throw new Error(`register: ${res.status} ${await res.text()}`);
  const { deviceId } = (await res.json()) as { deviceId: string };
  return { id: deviceId, privateKey, token: deviceTokenSigner(deviceId, privateKey, h.clock) };
}
