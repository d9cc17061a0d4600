// The installer against real parts: slot files, a real dm-verity tree (@abota/verity), real
// signatures (@abota/manifest), the file boot-control backend.
import { createHash } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import { open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { signManifest } from '@abota/manifest';
import { makeTempDir } from '@abota/testkit';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  configOf,
  corruptByte,
  type Device,
  makeDevice,
  makeRelease,
  makeTrust,
  type Release,
  sha256File,
  type Trust,
} from '../../test/release-fixture.js';
import { FileBootControl, readBootStateFile } from '../bootctl/index.js';
import type { AgentConfig } from '../config.js';
import { readDeviceState, runningVersion, securityFloor } from '../device-state.js';
import { Installer, type InstallerOptions } from './installer.js';
import { readJournal, treePath } from './journal.js';
import { DirectoryReleaseSource, type ReleaseSource } from './release-source.js';

let trust: Trust;
const dirs: string[] = [];

beforeAll(async () => {
  trust = await makeTrust();
});

afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function tmp(): Promise<string> {
  const d = await makeTempDir('abota-installer-');
  dirs.push(d);
  return d;
}

function installerFor(config: AgentConfig, dev: Device, extra: Partial<InstallerOptions> = {}): Installer {
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
    checkpointBytes: 1024 * 1024,
    ...extra,
  });
}

async function snapshot(dev: Device): Promise<Record<string, string>> {
  return {
    A: await sha256File(dev.slotFiles.A),
    hashA: await sha256File(dev.slotFiles.hashA),
    B: await sha256File(dev.slotFiles.B),
    hashB: await sha256File(dev.slotFiles.hashB),
    boot: createHash('sha256')
      .update(await readFile(dev.bootStatePath))
      .digest('hex'),
  };
}

/** Records which byte offsets blobs were opened at; optionally fails after N artifact bytes. */
class RecordingSource implements ReleaseSource {
  readonly opens: { digest: string; startByte: number }[] = [];
  constructor(
    private readonly inner: DirectoryReleaseSource,
    private readonly failAfterArtifactBytes?: { digest: string; bytes: number; abort: AbortController },
  ) {}
  get journalSource() {
    return this.inner.journalSource;
  }
  readManifestJws() {
    return this.inner.readManifestJws();
  }
  readRootChain() {
    return this.inner.readRootChain();
  }
  readDeltas(warn: (message: string) => void) {
    return this.inner.readDeltas(warn);
  }
  async *openBlob(digest: string, sizeBytes: number, startByte: number, signal?: AbortSignal) {
    this.opens.push({ digest, startByte });
    let seen = 0;
    for await (const chunk of this.inner.openBlob(digest, sizeBytes, startByte)) {
      const f = this.failAfterArtifactBytes;
      if (f !== undefined && f.digest === digest && seen + chunk.byteLength > f.bytes) {
        // The connection is cut here: the consumer sees an abort mid-artifact.
        f.abort.abort(new Error('simulated power cut'));
        signal?.throwIfAborted();
      }
      seen += chunk.byteLength;
      yield chunk;
    }
  }
}

async function expectInstalled(dev: Device, rel: Release, before: Record<string, string>): Promise<void> {
  expect(await sha256File(dev.slotFiles.B)).toBe(await sha256File(rel.imagePath));
  expect(await sha256File(dev.slotFiles.hashB)).toBe(await sha256File(rel.hashPath));
  expect(await sha256File(dev.slotFiles.A)).toBe(before['A']);
  expect(await sha256File(dev.slotFiles.hashA)).toBe(before['hashA']);
  const boot = await readBootStateFile(dev.bootStatePath);
  expect(boot.order[0]).toBe('B');
  expect(boot.slots.B).toEqual({ status: 'try', triesLeft: 1 });
  expect(boot.slots.A.status).toBe('good');
}

describe('offline install from a release directory', () => {
  it('writes slot B byte-identical to the image, the hash area identical to the tree, and sets B try-once', async () => {
    const root = await tmp();
    const dev = await makeDevice(join(root, 'device'), trust);
    const rel = await makeRelease({ dir: join(root, 'rel'), trust, version: '1.1.0', securityVersion: 2 });
    const config = configOf(dev);
    const before = await snapshot(dev);
    const j = await installerFor(config, dev).install(new DirectoryReleaseSource(rel.dir));
    expect(j.phase).toBe('boot-pending');
    expect(j.targetSlot).toBe('B');
    expect(j.bootId).toBe('boot-1');
    expect(j.images['rootfs']).toEqual({
      blocksWritten: 2048,
      totalBlocks: 2048,
      hashTreeWritten: true,
      method: 'full',
      artifactSizeBytes: rel.manifest.images.rootfs.artifact.sizeBytes,
      downloadedBytes: rel.manifest.images.rootfs.artifact.sizeBytes,
    });
    await expectInstalled(dev, rel, before);
    expect((await readJournal(config.dataDir))?.phase).toBe('boot-pending');
  });

  for (const codec of ['zstd', 'brotli'] as const) {
    it(`installs a ${codec} artifact, decompressing on the fly`, async () => {
      const root = await tmp();
      const dev = await makeDevice(join(root, 'device'), trust);
      const rel = await makeRelease({ dir: join(root, 'rel'), trust, version: '1.1.0', codec });
      expect(rel.manifest.images.rootfs.artifact).toMatchObject({ codec });
      expect(rel.manifest.images.rootfs.artifact.sizeBytes).toBeLessThan(
        rel.manifest.images.rootfs.sizeBytes,
      );
      const before = await snapshot(dev);
      await installerFor(configOf(dev), dev).install(new DirectoryReleaseSource(rel.dir));
      await expectInstalled(dev, rel, before);
    });
  }

  it('refuses to write when the booted slot is the target (both slots mapped to one file)', async () => {
    const root = await tmp();
    const dev = await makeDevice(join(root, 'device'), trust);
    const rel = await makeRelease({ dir: join(root, 'rel'), trust, version: '1.1.0' });
    const config = configOf(dev, {
      slots: {
        A: { rootfs: { path: dev.slotFiles.A, hashPath: dev.slotFiles.hashA } },
        B: { rootfs: { path: dev.slotFiles.A, hashPath: dev.slotFiles.hashB } },
      },
    });
    const before = await snapshot(dev);
    await expect(
      installerFor(config, dev).install(new DirectoryReleaseSource(rel.dir)),
    ).rejects.toMatchObject({
      code: 'ERR_INSTALL_ACTIVE_SLOT',
    });
    expect(await sha256File(dev.slotFiles.A)).toBe(before['A']);
  });
});

describe('every block is verified before it is written', () => {
  it('a corrupted artifact block fails the install with its block index; A untouched, nothing bootable', async () => {
    const root = await tmp();
    const dev = await makeDevice(join(root, 'device'), trust);
    const rel = await makeRelease({ dir: join(root, 'rel'), trust, version: '1.1.0' });
    await corruptByte(rel.artifactPath, 700 * 4096 + 123);
    const config = configOf(dev);
    const before = await snapshot(dev);
    const err = await installerFor(config, dev)
      .install(new DirectoryReleaseSource(rel.dir))
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_INSTALL_BLOCK_CORRUPT' });
    expect((err as Error).message).toContain('data block 700 ');
    expect(await sha256File(dev.slotFiles.A)).toBe(before['A']);
    expect(await sha256File(dev.slotFiles.hashA)).toBe(before['hashA']);
    const bc = new FileBootControl({ statePath: dev.bootStatePath, cmdlinePath: config.kernelCmdlinePath });
    expect(await bc.getSlotState('B')).toEqual({ bootable: false, good: false });
    expect(await bc.getPrimarySlot()).toBe('A');
    // The bad block never reached the slot.
    const slotB = await readFile(dev.slotFiles.B);
    const tampered = await readFile(rel.artifactPath);
    expect(slotB.subarray(700 * 4096, 701 * 4096).equals(tampered.subarray(700 * 4096, 701 * 4096))).toBe(
      false,
    );
    const j = await readJournal(config.dataDir);
    expect(j?.phase).toBe('failed');
    expect(j?.error?.code).toBe('ERR_INSTALL_BLOCK_CORRUPT');
  });

  it('a hash tree that does not match its signed digest is refused before any slot write', async () => {
    const root = await tmp();
    const dev = await makeDevice(join(root, 'device'), trust);
    const rel = await makeRelease({ dir: join(root, 'rel'), trust, version: '1.1.0' });
    await corruptByte(rel.hashTreePath, 5000);
    const before = await snapshot(dev);
    await expect(
      installerFor(configOf(dev), dev).install(new DirectoryReleaseSource(rel.dir)),
    ).rejects.toMatchObject({
      code: 'ERR_INSTALL_HASH_TREE_INVALID',
    });
    expect(await snapshot(dev)).toEqual(before);
  });
});

describe('releases the device must refuse are rejected before any slot write', () => {
  const cases: [string, (root: string) => Promise<Release>, string][] = [
    [
      'tampered manifest payload',
      async (root) => {
        const rel = await makeRelease({ dir: root, trust, version: '1.1.0' });
        const jws = JSON.parse(await readFile(join(rel.dir, 'manifest.jws'), 'utf8')) as { payload: string };
        const payload = JSON.parse(Buffer.from(jws.payload, 'base64url').toString()) as { version: string };
        payload.version = '1.1.1';
        jws.payload = Buffer.from(JSON.stringify(payload)).toString('base64url');
        await writeFile(join(rel.dir, 'manifest.jws'), JSON.stringify(jws));
        return rel;
      },
      'ERR_SIGNATURE_INVALID',
    ],
    [
      'signed by a key outside the trust root',
      async (root) => {
        const { generateSigningKey } = await import('@abota/manifest');
        return makeRelease({ dir: root, trust, version: '1.1.0', signWith: await generateSigningKey() });
      },
      'ERR_THRESHOLD_NOT_MET',
    ],
    [
      'wrong hardware',
      (root) => makeRelease({ dir: root, trust, version: '1.1.0', compatible: ['rpi4'] }),
      'ERR_INCOMPATIBLE_HARDWARE',
    ],
    ['downgrade', (root) => makeRelease({ dir: root, trust, version: '0.9.0' }), 'ERR_DOWNGRADE_NOT_ALLOWED'],
    [
      'security version below the floor',
      (root) => makeRelease({ dir: root, trust, version: '1.2.0', securityVersion: 0 }),
      'ERR_SECURITY_VERSION_TOO_LOW',
    ],
    [
      'expired',
      (root) =>
        makeRelease({ dir: root, trust, version: '1.1.0', expires: new Date(Date.now() - 3_600_000) }),
      'ERR_EXPIRED',
    ],
  ];
  for (const [name, build, code] of cases) {
    it(`${name} → ${code}; slots A and B and the boot state unchanged`, async () => {
      const root = await tmp();
      const dev = await makeDevice(join(root, 'device'), trust);
      const rel = await build(join(root, 'rel'));
      const before = await snapshot(dev);
      await expect(
        installerFor(configOf(dev), dev).install(new DirectoryReleaseSource(rel.dir)),
      ).rejects.toMatchObject({
        code,
      });
      expect(await snapshot(dev)).toEqual(before);
    });
  }
});

describe('resume after an interruption', () => {
  for (const codec of ['none', 'zstd', 'brotli'] as const) {
    it(`codec ${codec}: an install cut mid-artifact resumes from its journal and ends byte-identical`, async () => {
      const root = await tmp();
      const dev = await makeDevice(join(root, 'device'), trust);
      const rel = await makeRelease({ dir: join(root, 'rel'), trust, version: '1.1.0', codec });
      const config = configOf(dev);
      const before = await snapshot(dev);
      const digest = rel.manifest.images.rootfs.artifact.digest;
      const abort = new AbortController();
      const cutAt = Math.floor(rel.manifest.images.rootfs.artifact.sizeBytes * 0.6);
      const first = new RecordingSource(new DirectoryReleaseSource(rel.dir), { digest, bytes: cutAt, abort });
      await expect(installerFor(config, dev, { signal: abort.signal }).install(first)).rejects.toMatchObject({
        code: 'ERR_ABORTED',
      });
      const cut = await readJournal(config.dataDir);
      expect(cut?.phase).toBe('writing');
      const checkpoint = cut!.images['rootfs']!.blocksWritten;
      expect(checkpoint).toBeGreaterThan(0);
      expect(checkpoint).toBeLessThan(2048);
      // Damage one block below the checkpoint: re-verification must find and rewrite it.
      const fh = await import('node:fs/promises').then((m) => m.open(dev.slotFiles.B, 'r+'));
      await fh.write(Buffer.from('garbage'), 0, 7, 10 * 4096);
      await fh.close();

      const second = new RecordingSource(new DirectoryReleaseSource(rel.dir));
      const j = await installerFor(config, dev).install(second);
      expect(j.phase).toBe('boot-pending');
      expect(j.installId).toBe(cut!.installId);
      const artifactOpen = second.opens.find((o) => o.digest === digest);
      // none: the download continues at the first block not verified on the slot (block 10);
      // zstd, brotli: the stream restarts at 0 and already-verified blocks are not rewritten.
      expect(artifactOpen?.startByte).toBe(codec === 'none' ? 10 * 4096 : 0);
      await expectInstalled(dev, rel, before);
    });
  }
});

describe('resume with the compressed-artifact spool', () => {
  for (const codec of ['zstd', 'brotli'] as const) {
    it(`a resumed ${codec} install decodes the spooled prefix from disk and downloads only the rest`, async () => {
      const root = await tmp();
      const dev = await makeDevice(join(root, 'device'), trust);
      const rel = await makeRelease({ dir: join(root, 'rel'), trust, version: '1.1.0', codec });
      const config = configOf(dev, { spoolCompressedArtifacts: true });
      const before = await snapshot(dev);
      const digest = rel.manifest.images.rootfs.artifact.digest;
      const abort = new AbortController();
      const cutAt = Math.floor(rel.manifest.images.rootfs.artifact.sizeBytes * 0.7);
      await expect(
        installerFor(config, dev, { signal: abort.signal }).install(
          new RecordingSource(new DirectoryReleaseSource(rel.dir), { digest, bytes: cutAt, abort }),
        ),
      ).rejects.toMatchObject({ code: 'ERR_ABORTED' });
      const cut = await readJournal(config.dataDir);
      const spooled = cut!.images['rootfs']!.spooledBytes ?? 0;
      expect(spooled).toBeGreaterThan(0);
      expect(spooled).toBeLessThanOrEqual(cutAt);
      const second = new RecordingSource(new DirectoryReleaseSource(rel.dir));
      await installerFor(config, dev).install(second);
      expect(second.opens.find((o) => o.digest === digest)?.startByte).toBe(spooled);
      await expectInstalled(dev, rel, before);
      const { readdir } = await import('node:fs/promises');
      expect((await readdir(config.dataDir)).filter((n) => n.startsWith('spool-'))).toEqual([]);
    });
  }
});

describe('slot pairs, layouts and crash points', () => {
  it('installs boot and rootfs as a pair: hash area after the data on the same device, partial last block', async () => {
    const root = await tmp();
    const dev = await makeDevice(join(root, 'device'), trust);
    const bootA = join(dev.root, 'boot-a.img');
    const bootB = join(dev.root, 'boot-b.img');
    await writeFile(bootA, Buffer.alloc(3 * 1024 * 1024, 0xaa));
    await writeFile(bootB, Buffer.alloc(3 * 1024 * 1024, 0xbb));
    const hashOffsetBytes = 2 * 1024 * 1024;
    const config = configOf(dev, {
      slots: {
        A: {
          rootfs: { path: dev.slotFiles.A, hashPath: dev.slotFiles.hashA },
          boot: { path: bootA, hashOffsetBytes },
        },
        B: {
          rootfs: { path: dev.slotFiles.B, hashPath: dev.slotFiles.hashB },
          boot: { path: bootB, hashOffsetBytes },
        },
      },
    });
    const rootfsBytes = 8 * 1024 * 1024 + 1000; // 2048 verity blocks + a 1000-byte uncovered tail
    const rel = await makeRelease({
      dir: join(root, 'rel'),
      trust,
      version: '1.1.0',
      sizeBytes: rootfsBytes,
      bootSizeBytes: 1024 * 1024,
    });
    expect(rel.manifest.images.rootfs.verity.dataBlocks).toBe(2048);
    const before = await snapshot(dev);
    const bootABefore = await sha256File(bootA);
    const j = await installerFor(config, dev).install(new DirectoryReleaseSource(rel.dir));
    expect(j.phase).toBe('boot-pending');
    await expectInstalled(dev, rel, before);
    const slot = await readFile(bootB);
    const image = await readFile(rel.boot!.imagePath);
    const tree = await readFile(rel.boot!.hashPath);
    expect(slot.subarray(0, image.length).equals(image)).toBe(true);
    expect(slot.subarray(hashOffsetBytes, hashOffsetBytes + tree.length).equals(tree)).toBe(true);
    expect(await sha256File(bootA)).toBe(bootABefore);
  });

  it('the uncovered tail is written only after the artifact digest matches', async () => {
    const root = await tmp();
    const dev = await makeDevice(join(root, 'device'), trust);
    const size = 8 * 1024 * 1024 + 1000;
    const rel = await makeRelease({ dir: join(root, 'rel'), trust, version: '1.1.0', sizeBytes: size });
    await corruptByte(rel.artifactPath, size - 10);
    const config = configOf(dev);
    await expect(
      installerFor(config, dev).install(new DirectoryReleaseSource(rel.dir)),
    ).rejects.toMatchObject({
      code: 'ERR_INSTALL_ARTIFACT_DIGEST_MISMATCH',
    });
    const slot = await readFile(dev.slotFiles.B);
    const tampered = await readFile(rel.artifactPath);
    expect(slot.subarray(size - 1000).equals(tampered.subarray(size - 1000))).toBe(false);
    expect((await readJournal(config.dataDir))?.phase).toBe('failed');
  });

  it('a crash while arming try-once leaves the journal boot-pending and resumes by arming again, without downloading the artifact again', async () => {
    const root = await tmp();
    const dev = await makeDevice(join(root, 'device'), trust);
    const rel = await makeRelease({ dir: join(root, 'rel'), trust, version: '1.1.0' });
    const config = configOf(dev);
    const before = await snapshot(dev);
    const abort = new AbortController();
    const real = new FileBootControl({ statePath: dev.bootStatePath, cmdlinePath: config.kernelCmdlinePath });
    const crashing = {
      getBootedSlot: () => real.getBootedSlot(),
      getSlotState: (s: 'A' | 'B') => real.getSlotState(s),
      markBad: (s: 'A' | 'B') => real.markBad(s),
      setTryOnce: async () => {
        abort.abort(new Error('power cut'));
        throw new Error('power cut');
      },
    };
    await expect(
      installerFor(config, dev, { bootControl: crashing, signal: abort.signal }).install(
        new DirectoryReleaseSource(rel.dir),
      ),
    ).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    // The intent is journalled before the boot control is touched (after-boot relies on it).
    expect((await readJournal(config.dataDir))?.phase).toBe('boot-pending');
    expect(await real.getPrimarySlot()).toBe('A');
    const source = new RecordingSource(new DirectoryReleaseSource(rel.dir));
    expect((await installerFor(config, dev).install(source)).phase).toBe('boot-pending');
    expect(source.opens.map((o) => o.digest)).toEqual([rel.manifest.images.rootfs.verity.hashTree.digest]);
    await expectInstalled(dev, rel, before);
  });
});

/** Files in the data directory that are hash tree scratch files. */
async function treeFiles(dataDir: string): Promise<string[]> {
  return (await readdir(dataDir)).filter((n) => n.startsWith('tree-'));
}

/** Open descriptors of this process on hash tree scratch files (Linux /proc). */
function openTreeDescriptors(): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (/\/tree-[^/]*\.verity/.test(target)) out.push(target);
    } catch {
      // closed between readdir and readlink
    }
  }
  return out;
}

/**
 * Re-sign the release with `tree` as rootfs's hash tree (blob and signed digest consistent): a
 * tree only its root hash can refuse.
 */
async function resignWithTree(rel: Release, tree: Buffer): Promise<void> {
  const hex = createHash('sha256').update(tree).digest('hex');
  await writeFile(join(rel.dir, 'blobs', 'sha256', hex), tree);
  const manifest = structuredClone(rel.manifest);
  manifest.images.rootfs.verity.hashTree = { digest: `sha256:${hex}`, sizeBytes: tree.length };
  const jws = await signManifest(manifest, [trust.releaseKey], trust.root);
  await writeFile(join(rel.dir, 'manifest.jws'), JSON.stringify(jws));
}

// The 8 MiB rootfs of makeRelease: 2048 blocks, levels [16, 1]; superblock in block 0, the top
// level at 4096, leaf block k at 8192 + 4096·k (data blocks 128k … 128k+127).
const LEAF_LEVEL_AT = 8192;

describe('the hash tree lives in a scratch file during the install', () => {
  it('the scratch file exists while writing and is gone after a successful install, no descriptor left', async () => {
    const root = await tmp();
    const dev = await makeDevice(join(root, 'device'), trust);
    const rel = await makeRelease({ dir: join(root, 'rel'), trust, version: '1.1.0' });
    const config = configOf(dev);
    const before = await snapshot(dev);
    const seenWhileWriting: string[][] = [];
    const j = await installerFor(config, dev, {
      onProgress: (journal) => {
        if (journal.phase === 'writing') seenWhileWriting.push(readdirSync(config.dataDir));
      },
    }).install(new DirectoryReleaseSource(rel.dir));
    expect(j.phase).toBe('boot-pending');
    const scratch = treePath(config.dataDir, j.installId, 'rootfs');
    expect(seenWhileWriting.length).toBeGreaterThan(0);
    for (const names of seenWhileWriting) expect(names).toContain(scratch.slice(config.dataDir.length + 1));
    expect(await treeFiles(config.dataDir)).toEqual([]);
    expect(openTreeDescriptors()).toEqual([]);
    await expectInstalled(dev, rel, before);
  });

  it('is gone after a failed install and after an interrupted one (no descriptor left)', async () => {
    const root = await tmp();
    const dev = await makeDevice(join(root, 'device'), trust);
    const rel = await makeRelease({ dir: join(root, 'rel'), trust, version: '1.1.0' });
    const config = configOf(dev);
    const abort = new AbortController();
    const digest = rel.manifest.images.rootfs.artifact.digest;
    const cut = new RecordingSource(new DirectoryReleaseSource(rel.dir), { digest, bytes: 3 << 20, abort });
    await expect(installerFor(config, dev, { signal: abort.signal }).install(cut)).rejects.toMatchObject({
      code: 'ERR_ABORTED',
    });
    expect(await treeFiles(config.dataDir)).toEqual([]);
    expect(openTreeDescriptors()).toEqual([]);
    await corruptByte(rel.artifactPath, 1500 * 4096 + 9);
    await expect(
      installerFor(config, dev).install(new DirectoryReleaseSource(rel.dir)),
    ).rejects.toMatchObject({ code: 'ERR_INSTALL_BLOCK_CORRUPT' });
    expect((await readJournal(config.dataDir))?.phase).toBe('failed');
    expect(await treeFiles(config.dataDir)).toEqual([]);
    expect(openTreeDescriptors()).toEqual([]);
  });

  it('a signed tree whose leaf level does not lead to the root hash is refused before any slot write', async () => {
    const root = await tmp();
    const dev = await makeDevice(join(root, 'device'), trust);
    const rel = await makeRelease({ dir: join(root, 'rel'), trust, version: '1.1.0' });
    const tree = await readFile(rel.hashPath);
    tree[LEAF_LEVEL_AT + 5 * 4096 + 40] = tree[LEAF_LEVEL_AT + 5 * 4096 + 40]! ^ 1; // leaf block 5
    await resignWithTree(rel, tree);
    const config = configOf(dev);
    const before = await snapshot(dev);
    const err = await installerFor(config, dev)
      .install(new DirectoryReleaseSource(rel.dir))
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_INSTALL_HASH_TREE_INVALID' });
    expect((err as Error).message).toContain('ERR_VERITY_TREE_CORRUPT');
    expect(await snapshot(dev)).toEqual(before);
    expect(await treeFiles(config.dataDir)).toEqual([]);
    expect(openTreeDescriptors()).toEqual([]);
  });

  it('a scratch tree changed on disk after it was verified stops the install at the blocks it covers', async () => {
    const root = await tmp();
    const dev = await makeDevice(join(root, 'device'), trust);
    const rel = await makeRelease({ dir: join(root, 'rel'), trust, version: '1.1.0' });
    const config = configOf(dev);
    const image = await readFile(rel.imagePath);
    const artifact = rel.manifest.images.rootfs.artifact.digest;
    // When the artifact starts to flow, rewrite leaf block 10 (data blocks 1280-1407) of the
    // scratch tree with the digest of a forged block, as a process with access to the data
    // partition could.
    const source = new DirectoryReleaseSource(rel.dir);
    const tampering: ReleaseSource = {
      journalSource: source.journalSource,
      readManifestJws: () => source.readManifestJws(),
      readRootChain: () => source.readRootChain(),
      readDeltas: (warn) => source.readDeltas(warn),
      async *openBlob(digest, sizeBytes, startByte) {
        if (digest === artifact) {
          const [name] = await treeFiles(config.dataDir);
          const fh = await open(join(config.dataDir, name!), 'r+');
          await fh.write(Buffer.alloc(32, 0x5a), 0, 32, LEAF_LEVEL_AT + 10 * 4096);
          await fh.close();
        }
        yield* source.openBlob(digest, sizeBytes, startByte);
      },
    };
    const err = await installerFor(config, dev)
      .install(tampering)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_INSTALL_BLOCK_CORRUPT' });
    expect((err as Error).message).toContain('data block 1280 ');
    const slotB = await readFile(dev.slotFiles.B);
    // Blocks before the changed leaf block were written; from block 1280 on nothing was.
    expect(slotB.subarray(0, 1280 * 4096).equals(image.subarray(0, 1280 * 4096))).toBe(true);
    expect(slotB.subarray(1280 * 4096, 1281 * 4096).equals(image.subarray(1280 * 4096, 1281 * 4096))).toBe(
      false,
    );
    expect(await treeFiles(config.dataDir)).toEqual([]);
  });
});
