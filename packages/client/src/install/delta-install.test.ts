// Delta installs against real parts: two real images, a real delta made by @abota/delta's diff,
// real dm-verity trees (@abota/verity) and signatures (@abota/manifest), slot files, the file
// boot-control backend, and a node:http server on 127.0.0.1 serving the blobs with Range the way
// the update server does. In every case slot A (the active slot, the delta's source) must come
// out byte-identical, and slot B must hold exactly the release image.
import { createReadStream } from 'node:fs';
import { copyFile, cp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { diff } from '@abota/delta';
import type { ImageManifest } from '@abota/manifest';
import { makeTempDir } from '@abota/testkit';
import { formatVerity } from '@abota/verity';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  configOf,
  type Device,
  makeDevice,
  makeRelease,
  makeTrust,
  type Release,
  sha256File,
  type Trust,
  writeImage,
} from '../../test/release-fixture.js';
import { FileBootControl, readBootStateFile } from '../bootctl/index.js';
import type { AgentConfig, ImageRootHashes } from '../config.js';
import { ClientError } from '../errors.js';
import { readDeviceState, runningVersion, securityFloor } from '../device-state.js';
import { DeviceKey } from '../http/device-auth.js';
import { type DeltaOffer, UpdateServerClient } from '../http/server-api.js';
import { chooseDelta, type DeltaChoice } from './delta-install.js';
import { Installer, type InstallerOptions, type InstallNotice } from './installer.js';
import { deltaMetadataPath, type InstallJournal, readJournal } from './journal.js';
import { DirectoryReleaseSource, ServerReleaseSource } from './release-source.js';

const MiB = 1024 * 1024;
const BLOCK = 4096;

let trust: Trust;
let fixtureDir: string;
/** v1: the image in the active slot A. v2: the release, v1 with 18 MiB rewritten, a zeroed and a moved MiB. */
let v1Path: string;
let v1RootHash: string;
let rel: Release;
let delta: { digest: string; sizeBytes: number; path: string };
const dirs: string[] = [];
const servers: Server[] = [];

async function tmp(): Promise<string> {
  const d = await makeTempDir('abota-delta-install-');
  dirs.push(d);
  return d;
}

beforeAll(async () => {
  trust = await makeTrust();
  fixtureDir = await makeTempDir('abota-delta-fixture-');
  v1Path = join(fixtureDir, 'v1.img');
  await writeImage(v1Path, 24 * MiB, 5);
  v1RootHash = (await formatVerity({ dataPath: v1Path, hashPath: join(fixtureDir, 'v1.hash') })).rootHash;
  // v2 = v1 with [4, 22) MiB rewritten (more than two 8 MiB brotli segments of changed data, so a
  // resume has a segment boundary to restart from), [22, 23) MiB zeroed, [23, 24) = v1's [0, 1).
  const v2Path = join(fixtureDir, 'v2.img');
  await copyFile(v1Path, v2Path);
  const fresh = join(fixtureDir, 'fresh.bin');
  await writeImage(fresh, 18 * MiB, 77);
  const fh = await open(v2Path, 'r+');
  await fh.write(await readFile(fresh), 0, 18 * MiB, 4 * MiB);
  await fh.write(Buffer.alloc(MiB), 0, MiB, 22 * MiB);
  await fh.write((await readFile(v1Path)).subarray(0, MiB), 0, MiB, 23 * MiB);
  await fh.close();
  rel = await makeRelease({
    dir: join(fixtureDir, 'rel'),
    trust,
    version: '2.0.0',
    securityVersion: 2,
    rootfsImagePath: v2Path,
  });
  const deltaPath = join(fixtureDir, 'v1-v2.delta');
  await diff({
    sourcePath: v1Path,
    targetPath: v2Path,
    outPath: deltaPath,
    blockSize: BLOCK,
    sourceRootHash: v1RootHash,
    targetRootHash: rel.manifest.images.rootfs.verity.rootHash,
    brotliQuality: 1,
  });
  const hex = await sha256File(deltaPath);
  await copyFile(deltaPath, join(rel.dir, 'blobs', 'sha256', hex));
  delta = { digest: `sha256:${hex}`, sizeBytes: (await stat(deltaPath)).size, path: deltaPath };
}, 120_000);

afterAll(async () => {
  await rm(fixtureDir, { recursive: true, force: true });
});

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

// ---- blob server -------------------------------------------------------------------------

interface BlobServer {
  url: string;
  /** Every blob request: which blob, the Range start, and the bytes the server wrote. */
  requests: { hex: string; start: number; bytesSent: number }[];
  /** Serve this blob with one byte flipped (a corrupted mirror). */
  corrupt?: { hex: string; offset: number };
  /** Answer 404 for this blob. */
  missing?: string;
  /** Cut the connection of the first request for this blob after this many bytes. */
  dropOnce?: { hex: string; afterBytes: number };
}

async function serveBlobs(dir: string): Promise<BlobServer> {
  const state: BlobServer = { url: '', requests: [] };
  const server = createServer((req, res) => {
    void (async () => {
      const m = /^\/v1\/device\/blobs\/sha256\/([0-9a-f]{64})$/.exec(req.url ?? '');
      const hex = m?.[1];
      if (hex === undefined || hex === state.missing) {
        res.writeHead(404).end();
        return;
      }
      const path = join(dir, 'blobs', 'sha256', hex);
      const size = (await stat(path)).size;
      const r = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      const start = r ? Number(r[1]) : 0;
      const end = r && r[2] !== '' ? Number(r[2]) : size - 1;
      res.writeHead(r ? 206 : 200, {
        'content-length': end - start + 1,
        ...(r ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
      });
      const record = { hex, start, bytesSent: 0 };
      state.requests.push(record);
      const drop = state.dropOnce?.hex === hex ? state.dropOnce : undefined;
      if (drop) delete state.dropOnce;
      let at = start;
      for await (const c of createReadStream(path, { start, end, highWaterMark: 64 * 1024 })) {
        const chunk = Buffer.from(c as Buffer);
        const flip = state.corrupt?.hex === hex ? state.corrupt.offset - at : -1;
        if (flip >= 0 && flip < chunk.length) chunk[flip] = chunk[flip]! ^ 0xff;
        if (drop && record.bytesSent + chunk.length > drop.afterBytes) {
          res.write(chunk.subarray(0, drop.afterBytes - record.bytesSent), () =>
            setTimeout(() => res.socket?.destroy(), 10),
          );
          record.bytesSent = drop.afterBytes;
          return;
        }
        if (res.destroyed) return;
        if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
        record.bytesSent += chunk.length;
        at += chunk.length;
      }
      res.end();
    })().catch(() => res.destroy());
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

const blobUrl = (digest: string): string => `/v1/device/blobs/sha256/${digest.slice('sha256:'.length)}`;
const hexOf = (digest: string): string => digest.slice('sha256:'.length);

async function serverSource(
  server: BlobServer,
  root: string,
  deltas: DeltaOffer[],
): Promise<ServerReleaseSource> {
  const img = rel.manifest.images.rootfs;
  const key = await DeviceKey.generate(join(root, 'key.json'));
  const client = new UpdateServerClient({
    baseUrl: server.url,
    audience: 'abota',
    tokenLifetimeSeconds: 60,
    key,
    deviceId: 'dev-1',
  });
  return new ServerReleaseSource({
    manifestJws: await readFile(join(rel.dir, 'manifest.jws'), 'utf8'),
    artifacts: Object.fromEntries(
      [img.artifact.digest, img.verity.hashTree.digest].map((d) => [d, blobUrl(d)]),
    ),
    deltas,
    client,
    backoff: { baseDelayMs: 1, maxDelayMs: 5, maxAttempts: 4 },
  });
}

function offerOf(sourceRootHash = v1RootHash): DeltaOffer {
  return {
    image: 'rootfs',
    digest: delta.digest,
    sizeBytes: delta.sizeBytes,
    url: blobUrl(delta.digest),
    sourceVersion: '1.0.0',
    sourceRootHash,
  };
}

// ---- device ------------------------------------------------------------------------------

interface Harness {
  dev: Device;
  config: AgentConfig;
  notices: InstallNotice[];
  slotABefore: string;
}

/** A device booted from slot A, which holds v1 (24 MiB) — the delta's source. */
async function device(root: string): Promise<Harness> {
  const dev = await makeDevice(join(root, 'device'), trust);
  await copyFile(v1Path, dev.slotFiles.A);
  return { dev, config: configOf(dev), notices: [], slotABefore: await sha256File(dev.slotFiles.A) };
}

function installerFor(
  h: Harness,
  activeRootHashes: ImageRootHashes | undefined,
  extra: Partial<InstallerOptions> = {},
): Installer {
  const { config, dev } = h;
  return new Installer({
    config,
    bootControl: new FileBootControl({ statePath: dev.bootStatePath, cmdlinePath: config.kernelCmdlinePath }),
    trustRoot: trust.root,
    clock: () => new Date(),
    deviceFacts: async (booted) => {
      const state = await readDeviceState(config);
      return {
        product: config.product,
        hardware: config.hardware,
        currentVersion: runningVersion(config, state, booted).version,
        securityVersionFloor: securityFloor(config, state),
      };
    },
    bootId: async () => 'boot-1',
    checkpointBytes: MiB,
    ...(activeRootHashes !== undefined ? { activeRootHashes: async () => activeRootHashes } : {}),
    onNotice: (n) => {
      h.notices.push(n);
    },
    ...extra,
  });
}

/** Slot B is the release image, its hash area the release tree, B is armed, A is unchanged. */
async function expectInstalled(h: Harness): Promise<void> {
  expect(await sha256File(h.dev.slotFiles.B)).toBe(await sha256File(rel.imagePath));
  expect(await sha256File(h.dev.slotFiles.hashB)).toBe(await sha256File(rel.hashPath));
  expect(await sha256File(h.dev.slotFiles.A)).toBe(h.slotABefore);
  const boot = await readBootStateFile(h.dev.bootStatePath);
  expect(boot.order[0]).toBe('B');
  expect(boot.slots.B).toEqual({ status: 'try', triesLeft: 1 });
}

const bytesOf = (server: BlobServer, digest: string): number =>
  server.requests.filter((r) => r.hex === hexOf(digest)).reduce((s, r) => s + r.bytesSent, 0);

function rootfsOf(j: InstallJournal | undefined) {
  return j?.images['rootfs'];
}

/** Install with the delta and cut the power once its first checkpoint is journalled; the journal left behind. */
async function cutAtFirstDeltaCheckpoint(
  h: Harness,
  server: BlobServer,
  root: string,
): Promise<InstallJournal | undefined> {
  const abort = new AbortController();
  const first = installerFor(
    h,
    { rootfs: v1RootHash },
    {
      signal: abort.signal,
      onProgress: (j) => {
        if (rootfsOf(j)?.delta?.checkpoint !== undefined) abort.abort(new Error('power cut'));
      },
    },
  );
  await expect(first.install(await serverSource(server, root, [offerOf()]))).rejects.toMatchObject({
    code: 'ERR_ABORTED',
  });
  return readJournal(h.config.dataDir);
}

// ---- tests -------------------------------------------------------------------------------

describe('delta install over HTTP', () => {
  it('writes slot B byte-identical to a full install while downloading only the delta; slot A unchanged', async () => {
    const img = rel.manifest.images.rootfs;
    expect(delta.sizeBytes).toBeLessThan(img.artifact.sizeBytes / 2);

    const root = await tmp();
    const server = await serveBlobs(rel.dir);
    const h = await device(root);
    const j = await installerFor(h, { rootfs: v1RootHash }).install(
      await serverSource(server, root, [offerOf()]),
    );
    expect(j.phase).toBe('boot-pending');
    await expectInstalled(h);
    expect(bytesOf(server, img.artifact.digest)).toBe(0);
    expect(bytesOf(server, delta.digest)).toBe(delta.sizeBytes);
    const p = rootfsOf(j)!;
    expect(p).toMatchObject({ method: 'delta', blocksWritten: 6144, hashTreeWritten: true });
    expect(p.downloadedBytes).toBe(delta.sizeBytes);
    expect(p.delta).toEqual({ digest: delta.digest, sizeBytes: delta.sizeBytes, sourceRootHash: v1RootHash });
    expect(j.rootHashes).toEqual({ rootfs: img.verity.rootHash });
    expect(h.notices.map((n) => n.kind)).toEqual(['delta-used']);
    expect(await readdir(h.config.dataDir)).not.toContain(`delta-${j.installId}-rootfs.meta`);

    // The same release through the full artifact on a second device: the same slot B.
    const full = await device(await tmp());
    await installerFor(full, undefined).install(await serverSource(server, root, [offerOf()]));
    expect(await sha256File(full.dev.slotFiles.B)).toBe(await sha256File(h.dev.slotFiles.B));
    expect(await sha256File(full.dev.slotFiles.A)).toBe(full.slotABefore);
  });

  const notUsed: [string, ImageRootHashes | undefined, string | undefined][] = [
    ['the active slot has another root hash', { rootfs: 'ab'.repeat(32) }, 'has root hash abab'],
    ['the active slot root hash is unknown', {}, 'is not known'],
    ['the installer is given no root hashes at all', undefined, undefined],
  ];
  for (const [name, known, reason] of notUsed) {
    it(`${name} → the full artifact, and the delta is never fetched`, async () => {
      const root = await tmp();
      const server = await serveBlobs(rel.dir);
      const h = await device(root);
      const j = await installerFor(h, known).install(await serverSource(server, root, [offerOf()]));
      await expectInstalled(h);
      expect(bytesOf(server, delta.digest)).toBe(0);
      expect(bytesOf(server, rel.manifest.images.rootfs.artifact.digest)).toBe(
        rel.manifest.images.rootfs.artifact.sizeBytes,
      );
      expect(rootfsOf(j)?.method).toBe('full');
      if (reason === undefined) expect(h.notices).toEqual([]);
      else expect(h.notices.find((n) => n.kind === 'delta-skipped')?.message).toContain(reason);
    });
  }

  it('an active slot whose content differs from its claimed root hash: every bad block is caught, the full artifact is installed', async () => {
    const root = await tmp();
    const server = await serveBlobs(rel.dir);
    const h = await device(root);
    // Block 100 lies in the first 4 MiB, which the delta copies from the source.
    const fh = await open(h.dev.slotFiles.A, 'r+');
    await fh.write(Buffer.from('bit rot'), 0, 7, 100 * BLOCK + 9);
    await fh.close();
    h.slotABefore = await sha256File(h.dev.slotFiles.A);
    const j = await installerFor(h, { rootfs: v1RootHash }).install(
      await serverSource(server, root, [offerOf()]),
    );
    await expectInstalled(h);
    const p = rootfsOf(j)!;
    expect(p.method).toBe('full');
    expect(p.deltaFallback?.code).toBe('ERR_DELTA_TARGET_VERIFICATION');
    expect(p.deltaFallback?.message).toContain('target block 100 ');
    const fallback = h.notices.find((n) => n.kind === 'delta-fallback');
    expect(fallback).toMatchObject({
      level: 'warn',
      code: 'ERR_DELTA_TARGET_VERIFICATION',
      version: '2.0.0',
    });
    expect(bytesOf(server, rel.manifest.images.rootfs.artifact.digest)).toBe(
      rel.manifest.images.rootfs.artifact.sizeBytes,
    );
    // The delta was abandoned at its first op: of it, little more than the metadata was read.
    const fromDelta = p.downloadedBytes! - rel.manifest.images.rootfs.artifact.sizeBytes;
    expect(fromDelta).toBeGreaterThan(0);
    expect(fromDelta).toBeLessThan(delta.sizeBytes);
  });

  const broken: [string, (s: BlobServer) => void, string][] = [
    [
      "a flipped byte in an op's data",
      (s) => (s.corrupt = { hex: hexOf(delta.digest), offset: delta.sizeBytes - 5000 }),
      'ERR_DELTA_OP_DIGEST_MISMATCH',
    ],
    [
      'a flipped byte in the header',
      (s) => (s.corrupt = { hex: hexOf(delta.digest), offset: 3 }),
      'ERR_DELTA_MAGIC',
    ],
    [
      'a flipped byte in the op table',
      (s) => (s.corrupt = { hex: hexOf(delta.digest), offset: 300 }),
      'ERR_DELTA_METADATA_DIGEST_MISMATCH',
    ],
    [
      'the delta blob missing on the server (404)',
      (s) => (s.missing = hexOf(delta.digest)),
      'ERR_HTTP_STATUS',
    ],
  ];
  for (const [name, breakIt, code] of broken) {
    it(`${name} → ${code}, reported, and the full artifact installed from block 0`, async () => {
      const root = await tmp();
      const server = await serveBlobs(rel.dir);
      breakIt(server);
      const h = await device(root);
      const j = await installerFor(h, { rootfs: v1RootHash }).install(
        await serverSource(server, root, [offerOf()]),
      );
      await expectInstalled(h);
      expect(rootfsOf(j)).toMatchObject({ method: 'full', deltaFallback: { code } });
      expect(h.notices.filter((n) => n.kind === 'delta-fallback').map((n) => n.code)).toEqual([code]);
      expect(await readdir(h.config.dataDir)).not.toContain(`delta-${j.installId}-rootfs.meta`);
    });
  }

  it('a delta offered with the wrong size is refused by the download bound and falls back', async () => {
    const root = await tmp();
    const server = await serveBlobs(rel.dir);
    const h = await device(root);
    const lying = { ...offerOf(), sizeBytes: delta.sizeBytes - 100 };
    const j = await installerFor(h, { rootfs: v1RootHash }).install(
      await serverSource(server, root, [lying]),
    );
    await expectInstalled(h);
    expect(rootfsOf(j)?.method).toBe('full');
    expect(rootfsOf(j)?.deltaFallback?.code).toBe('ERR_HTTP_BAD_RESPONSE');
  });

  it('a connection dropped mid-delta resumes the download with Range, without falling back', async () => {
    const root = await tmp();
    const server = await serveBlobs(rel.dir);
    server.dropOnce = { hex: hexOf(delta.digest), afterBytes: Math.floor(delta.sizeBytes / 2) };
    const h = await device(root);
    const j = await installerFor(h, { rootfs: v1RootHash }).install(
      await serverSource(server, root, [offerOf()]),
    );
    await expectInstalled(h);
    expect(rootfsOf(j)?.method).toBe('delta');
    const requests = server.requests.filter((r) => r.hex === hexOf(delta.digest));
    expect(requests.length).toBe(2);
    expect(requests[1]!.start).toBeGreaterThan(0);
    expect(bytesOf(server, rel.manifest.images.rootfs.artifact.digest)).toBe(0);
  });

  it('an install aborted mid-delta resumes from its durable checkpoint and downloads less than the whole delta again', async () => {
    const root = await tmp();
    const server = await serveBlobs(rel.dir);
    const h = await device(root);
    const abort = new AbortController();
    // Abort once a checkpoint lies past the first brotli segment (a resume point inside the data).
    let metadataSizeBytes = 0;
    const first = installerFor(
      h,
      { rootfs: v1RootHash },
      {
        signal: abort.signal,
        onProgress: (j) => {
          const cp = rootfsOf(j)?.delta?.checkpoint;
          if (cp === undefined) return;
          metadataSizeBytes = cp.metadataSizeBytes;
          if (cp.payloadOffset > cp.metadataSizeBytes) abort.abort(new Error('power cut'));
        },
      },
    );
    await expect(first.install(await serverSource(server, root, [offerOf()]))).rejects.toMatchObject({
      code: 'ERR_ABORTED',
    });
    const cut = await readJournal(h.config.dataDir);
    expect(cut?.phase).toBe('writing');
    const cp = rootfsOf(cut)!.delta!.checkpoint!;
    expect(cp.payloadOffset).toBeGreaterThan(metadataSizeBytes);
    expect(rootfsOf(cut)!.blocksWritten).toBeGreaterThan(0);
    const metaPath = deltaMetadataPath(h.config.dataDir, cut!.installId, 'rootfs');
    expect((await stat(metaPath)).size).toBe(cp.metadataSizeBytes);
    const firstRunBytes = rootfsOf(cut)!.downloadedBytes!;
    expect(await sha256File(h.dev.slotFiles.A)).toBe(h.slotABefore);

    const requestsBefore = server.requests.length;
    const j = await installerFor(h, { rootfs: v1RootHash }).install(
      await serverSource(server, root, [offerOf()]),
    );
    expect(j.installId).toBe(cut!.installId);
    await expectInstalled(h);
    expect(rootfsOf(j)?.method).toBe('delta');
    const resumed = server.requests.slice(requestsBefore).filter((r) => r.hex === hexOf(delta.digest));
    expect(resumed.map((r) => r.start)).toEqual([cp.payloadOffset]);
    const secondRunBytes = rootfsOf(j)!.downloadedBytes! - firstRunBytes;
    expect(secondRunBytes).toBe(delta.sizeBytes - cp.payloadOffset);
    expect(secondRunBytes).toBeLessThan(delta.sizeBytes);
    expect(bytesOf(server, rel.manifest.images.rootfs.artifact.digest)).toBe(0);
    await expect(stat(metaPath)).rejects.toThrow();
  });

  it('a resume whose delta is no longer offered falls back to the full artifact from block 0, and the delta is not fetched again', async () => {
    const root = await tmp();
    const server = await serveBlobs(rel.dir);
    const h = await device(root);
    const cut = await cutAtFirstDeltaCheckpoint(h, server, root);
    expect(rootfsOf(cut)!.blocksWritten).toBeGreaterThan(0);
    const requestsBefore = server.requests.length;
    const j = await installerFor(h, { rootfs: v1RootHash }).install(await serverSource(server, root, []));
    await expectInstalled(h);
    expect(j.installId).toBe(cut!.installId);
    expect(rootfsOf(j)).toMatchObject({
      method: 'full',
      delta: { digest: delta.digest },
      deltaFallback: { code: 'ERR_INSTALL_DELTA_WITHDRAWN' },
    });
    expect(rootfsOf(j)!.delta!.checkpoint).toBeUndefined();
    expect(h.notices.filter((n) => n.kind === 'delta-fallback').map((n) => n.code)).toEqual([
      'ERR_INSTALL_DELTA_WITHDRAWN',
    ]);
    const resumed = server.requests.slice(requestsBefore);
    expect(resumed.filter((r) => r.hex === hexOf(delta.digest))).toEqual([]);
    const artifact = resumed.filter((r) => r.hex === hexOf(rel.manifest.images.rootfs.artifact.digest));
    expect(artifact.map((r) => r.start)).toEqual([0]);
    expect(await readdir(h.config.dataDir)).not.toContain(`delta-${j.installId}-rootfs.meta`);
  });

  it('a resume whose metadata file is gone starts the delta again at op 0 instead of falling back', async () => {
    const root = await tmp();
    const server = await serveBlobs(rel.dir);
    const h = await device(root);
    const cut = await cutAtFirstDeltaCheckpoint(h, server, root);
    await rm(deltaMetadataPath(h.config.dataDir, cut!.installId, 'rootfs'));
    const requestsBefore = server.requests.length;
    const j = await installerFor(h, { rootfs: v1RootHash }).install(
      await serverSource(server, root, [offerOf()]),
    );
    await expectInstalled(h);
    expect(rootfsOf(j)?.method).toBe('delta');
    expect(
      server.requests
        .slice(requestsBefore)
        .filter((r) => r.hex === hexOf(delta.digest))
        .map((r) => r.start),
    ).toEqual([0]);
  });
});

describe('delta install: slot layouts', () => {
  for (const [activeHashOffsetMiB, expected] of [
    [32, 'delta'],
    [16, 'full'],
  ] as const) {
    it(`hash area after the data at ${activeHashOffsetMiB} MiB on the active device → ${expected}: the source is the data area only`, async () => {
      const root = await tmp();
      const server = await serveBlobs(rel.dir);
      const h = await device(root);
      // Slot A: v1, then its hash area on the same device at 32 MiB (the config may say otherwise).
      const fh = await open(h.dev.slotFiles.A, 'r+');
      await fh.write(Buffer.alloc(64 * 1024, 0x5a), 0, 64 * 1024, 32 * MiB);
      await fh.close();
      h.slotABefore = await sha256File(h.dev.slotFiles.A);
      h.config = configOf(h.dev, {
        slots: {
          A: { rootfs: { path: h.dev.slotFiles.A, hashOffsetBytes: activeHashOffsetMiB * MiB } },
          B: { rootfs: { path: h.dev.slotFiles.B, hashOffsetBytes: 32 * MiB } },
        },
      });
      const j = await installerFor(h, { rootfs: v1RootHash }).install(
        await serverSource(server, root, [offerOf()]),
      );
      expect(rootfsOf(j)?.method).toBe(expected);
      if (expected === 'full') expect(rootfsOf(j)?.deltaFallback?.code).toBe('ERR_DELTA_WRONG_SOURCE');
      expect(await sha256File(h.dev.slotFiles.A)).toBe(h.slotABefore);
      const slotB = await readFile(h.dev.slotFiles.B);
      expect(slotB.subarray(0, 24 * MiB).equals(await readFile(rel.imagePath))).toBe(true);
      const tree = await readFile(rel.hashPath);
      expect(slotB.subarray(32 * MiB, 32 * MiB + tree.length).equals(tree)).toBe(true);
    });
  }
});

describe('delta install: crash points', () => {
  it('a crash after the delta was applied but before the hash area: the resume re-verifies the slot and downloads nothing', async () => {
    const root = await tmp();
    const server = await serveBlobs(rel.dir);
    const h = await device(root);
    const total = rel.manifest.images.rootfs.verity.dataBlocks;
    const first = installerFor(
      h,
      { rootfs: v1RootHash },
      {
        onProgress: (j) => {
          const p = rootfsOf(j);
          if (p?.method === 'delta' && p.blocksWritten === total && !p.hashTreeWritten)
            throw new ClientError('ERR_ABORTED', 'power cut after the delta');
        },
      },
    );
    await expect(first.install(await serverSource(server, root, [offerOf()]))).rejects.toMatchObject({
      code: 'ERR_ABORTED',
    });
    expect((await readJournal(h.config.dataDir))?.phase).toBe('writing');
    const requestsBefore = server.requests.length;
    const j = await installerFor(h, { rootfs: v1RootHash }).install(
      await serverSource(server, root, [offerOf()]),
    );
    await expectInstalled(h);
    expect(rootfsOf(j)?.method).toBe('delta');
    // Only the hash tree is fetched again (it is needed to verify the slot).
    expect(server.requests.slice(requestsBefore).map((r) => r.hex)).toEqual([
      hexOf(rel.manifest.images.rootfs.verity.hashTree.digest),
    ]);
  });
});

describe('offline install from a release directory with deltas.json', () => {
  async function withDeltasJson(root: string, entries: unknown[]): Promise<string> {
    const dir = join(root, 'release');
    await cp(rel.dir, dir, { recursive: true });
    await writeFile(join(dir, 'deltas.json'), JSON.stringify({ schemaVersion: 1, deltas: entries }));
    return dir;
  }

  it('uses the listed delta against slot A; malformed entries are ignored with a warning', async () => {
    const root = await tmp();
    const h = await device(root);
    const dir = await withDeltasJson(root, [
      { image: 'efi', sourceRootHash: v1RootHash, digest: delta.digest, sizeBytes: delta.sizeBytes },
      {
        image: 'rootfs',
        sourceVersion: '1.0.0',
        sourceRootHash: v1RootHash,
        sourceSizeBytes: 24 * MiB,
        targetRootHash: rel.manifest.images.rootfs.verity.rootHash,
        digest: delta.digest,
        sizeBytes: delta.sizeBytes,
      },
    ]);
    const j = await installerFor(h, { rootfs: v1RootHash }).install(new DirectoryReleaseSource(dir));
    await expectInstalled(h);
    expect(rootfsOf(j)).toMatchObject({ method: 'delta', downloadedBytes: delta.sizeBytes });
    expect(h.notices.map((n) => n.kind)).toEqual(['delta-ignored', 'delta-used']);
    expect(h.notices[0]!.message).toContain('delta 0 ignored (image');
  });

  it('a deltas.json that is not JSON is ignored: the full artifact is installed', async () => {
    const root = await tmp();
    const h = await device(root);
    const dir = await withDeltasJson(root, []);
    await writeFile(join(dir, 'deltas.json'), '{ not json');
    const j = await installerFor(h, { rootfs: v1RootHash }).install(new DirectoryReleaseSource(dir));
    await expectInstalled(h);
    expect(rootfsOf(j)?.method).toBe('full');
    expect(h.notices.map((n) => n.kind)).toEqual(['delta-ignored']);
  });
});

const reasonOf = (c: DeltaChoice): string | undefined => (c.use === undefined ? c.reason : undefined);

describe('chooseDelta', () => {
  const image = (): ImageManifest => rel.manifest.images.rootfs;
  const candidate = {
    image: 'rootfs' as const,
    digest: `sha256:${'1'.repeat(64)}`,
    sizeBytes: 1000,
    sourceRootHash: 'aa'.repeat(32),
  };
  it('takes the delta whose source is the known active root hash', () => {
    const other = { ...candidate, digest: `sha256:${'2'.repeat(64)}`, sourceRootHash: 'bb'.repeat(32) };
    expect(chooseDelta('rootfs', image(), [other, candidate], 'aa'.repeat(32))).toEqual({ use: candidate });
  });
  it('says nothing when no delta is offered for the image', () => {
    expect(chooseDelta('boot', image(), [candidate], 'aa'.repeat(32))).toEqual({
      use: undefined,
      reason: undefined,
    });
  });
  it('refuses without a known root hash, with another one, when not smaller, and for a partial last block', () => {
    expect(reasonOf(chooseDelta('rootfs', image(), [candidate], undefined))).toContain('not known');
    expect(reasonOf(chooseDelta('rootfs', image(), [candidate], 'cc'.repeat(32)))).toContain(
      'offered deltas are from',
    );
    const big = { ...candidate, sizeBytes: image().artifact.sizeBytes };
    expect(reasonOf(chooseDelta('rootfs', image(), [big], 'aa'.repeat(32)))).toContain('not smaller');
    const partial = { ...image(), sizeBytes: image().sizeBytes + 100 };
    expect(reasonOf(chooseDelta('rootfs', partial, [candidate], 'aa'.repeat(32)))).toContain(
      'partial verity block',
    );
  });
});
