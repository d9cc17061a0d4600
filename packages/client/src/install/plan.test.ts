// planInstall() and resumesJournal() over plain values: no files, no slots, no server. Each case
// states one decision the executor relies on (installer.ts): where an image and its hash area go,
// full or delta, and where an interrupted install resumes.
import type { ImageManifest } from '@abota/manifest';
import { describe, expect, it } from 'vitest';
import type { AgentConfig } from '../config.js';
import type { ImageProgress, InstallJournal } from './journal.js';
import { type PlanInput, planInstall, resumesJournal, targetsOf } from './plan.js';
import type { DeltaCandidate } from './release-source.js';

const MiB = 1024 * 1024;
const ACTIVE_ROOT = 'aa'.repeat(32);

function image(sizeBytes: number, o: { artifactBytes?: number; treeBytes?: number } = {}): ImageManifest {
  return {
    sizeBytes,
    verity: {
      hashType: 1,
      algorithm: 'sha256',
      dataBlockSize: 4096,
      hashBlockSize: 4096,
      dataBlocks: Math.floor(sizeBytes / 4096),
      salt: '00'.repeat(32),
      rootHash: 'bb'.repeat(32),
      superblock: true,
      hashOffset: 0,
      hashTree: { digest: `sha256:${'3'.repeat(64)}`, sizeBytes: o.treeBytes ?? 90_112 },
    },
    artifact: {
      codec: 'zstd',
      digest: `sha256:${'4'.repeat(64)}`,
      sizeBytes: o.artifactBytes ?? sizeBytes / 2,
      uncompressedSizeBytes: sizeBytes,
    },
  } as ImageManifest;
}

const rootfs = image(8 * MiB);
const boot = image(2 * MiB + 100); // ends in a partial verity block

const slots: AgentConfig['slots'] = {
  A: {
    rootfs: { path: '/dev/A-root', hashOffsetBytes: 16 * MiB },
    boot: { path: '/dev/A-boot', hashPath: '/dev/A-boot-hash' },
  },
  B: {
    rootfs: { path: '/dev/B-root', hashOffsetBytes: 16 * MiB },
    boot: { path: '/dev/B-boot', hashPath: '/dev/B-boot-hash', hashOffsetBytes: 4096 },
  },
};

const delta: DeltaCandidate = {
  image: 'rootfs',
  digest: `sha256:${'1'.repeat(64)}`,
  sizeBytes: 1000,
  sourceRootHash: ACTIVE_ROOT,
};

function input(o: Partial<PlanInput> = {}): PlanInput {
  return {
    version: '2.0.0',
    images: [
      ['rootfs', rootfs],
      ['boot', boot],
    ],
    bootedSlot: 'A',
    targetSlot: 'B',
    slots,
    progress: {},
    deltas: { candidates: [delta], active: { rootfs: ACTIVE_ROOT } },
    ...o,
  };
}

const started = (p: Partial<ImageProgress>): ImageProgress => ({
  blocksWritten: 0,
  totalBlocks: 2048,
  hashTreeWritten: false,
  ...p,
});

describe('planInstall: where each image and its hash area go', () => {
  it('the target slot devices, hash area after the data or on its own device, and the bytes each needs', () => {
    const [r, b] = planInstall(input());
    expect(r).toMatchObject({
      name: 'rootfs',
      dataPath: '/dev/B-root',
      hashArea: { kind: 'after-data', offsetBytes: 16 * MiB },
      requiredDeviceBytes: 16 * MiB + 90_112,
    });
    expect(r!.dataFileSizeBytes).toBeUndefined();
    expect(b).toMatchObject({
      name: 'boot',
      dataPath: '/dev/B-boot',
      hashArea: { kind: 'separate', path: '/dev/B-boot-hash', offsetBytes: 4096 },
      requiredDeviceBytes: 2 * MiB + 100,
      dataFileSizeBytes: 2 * MiB + 100,
    });
  });

  it('a hash area that overlaps the image, or a missing device, is ERR_INSTALL_SLOT_LAYOUT', () => {
    const overlapping = {
      ...slots,
      B: { ...slots.B, rootfs: { path: '/dev/B-root', hashOffsetBytes: 4 * MiB } },
    };
    expect(() => planInstall(input({ slots: overlapping }))).toThrow(
      expect.objectContaining({
        code: 'ERR_INSTALL_SLOT_LAYOUT',
        message: expect.stringContaining('overlaps'),
      }),
    );
    const noBoot = { ...slots, B: { rootfs: slots.B.rootfs } };
    expect(() => targetsOf(input().images, noBoot, 'B', '2.0.0')).toThrow(
      expect.objectContaining({
        code: 'ERR_INSTALL_SLOT_LAYOUT',
        message: expect.stringContaining('no boot device'),
      }),
    );
  });
});

describe('planInstall: full or delta', () => {
  it('a fresh image takes the delta from its known active root hash, with the active data area as source', () => {
    const [r, b] = planInstall(input());
    expect(r!.write).toEqual({
      method: 'delta',
      record: true,
      delta: { digest: delta.digest, sizeBytes: 1000, sourceRootHash: ACTIVE_ROOT },
      source: { path: '/dev/A-root', limitBytes: 16 * MiB },
    });
    // No delta offered for boot: full, recorded, nothing to report.
    expect(b!.write).toEqual({ method: 'full', record: true });
  });

  it('an offered delta that does not fit is skipped with its reason', () => {
    const [r] = planInstall(input({ deltas: { candidates: [delta], active: {} } }));
    expect(r!.write).toMatchObject({
      method: 'full',
      record: true,
      skipped: expect.stringContaining('not known'),
    });
  });

  it('the journal keeps its method: full stays full, a started image from before deltas is full', () => {
    const full = planInstall(input({ progress: { rootfs: started({ method: 'full', blocksWritten: 10 }) } }));
    expect(full[0]!.write).toEqual({ method: 'full', record: false });
    const legacy = planInstall(input({ progress: { rootfs: started({ blocksWritten: 10 }) } }));
    expect(legacy[0]!.write).toEqual({ method: 'full', record: false });
  });

  it('a journalled delta no longer offered, or without an active device, is unusable (the executor falls back)', () => {
    const progress = {
      rootfs: started({ method: 'delta', delta: { ...delta, digest: `sha256:${'9'.repeat(64)}` } }),
    };
    expect(planInstall(input({ progress }))[0]!.write).toMatchObject({
      method: 'delta',
      record: false,
      unusable: { code: 'ERR_INSTALL_DELTA_WITHDRAWN' },
    });
    const noActive = { ...slots, A: { ...slots.A, rootfs: undefined } } as unknown as AgentConfig['slots'];
    expect(planInstall(input({ slots: noActive }))[0]!.write).toMatchObject({
      method: 'delta',
      record: true,
      unusable: { code: 'ERR_INSTALL_SLOT_LAYOUT' },
    });
  });

  it('an active slot with a separate hash device gives the delta its whole data device', () => {
    const separate = {
      ...slots,
      A: { ...slots.A, rootfs: { path: '/dev/A-root', hashPath: '/dev/A-hash' } },
    };
    expect(planInstall(input({ slots: separate }))[0]!.write).toMatchObject({
      source: { path: '/dev/A-root' },
    });
    expect(planInstall(input({ slots: separate }))[0]!.write).not.toHaveProperty('source.limitBytes');
  });

  it('an image whose hash area was written needs its hash area only', () => {
    const progress = { rootfs: started({ method: 'full', blocksWritten: 2048, hashTreeWritten: true }) };
    expect(planInstall(input({ progress }))[0]!.write).toEqual({ method: 'none' });
  });
});

describe('planInstall: the resume point', () => {
  it('the journalled durable blocks and spool bytes', () => {
    const progress = { rootfs: started({ method: 'full', blocksWritten: 512, spooledBytes: 777 }) };
    expect(planInstall(input({ progress }))[0]!.resume).toEqual({
      blocksDone: 512,
      spooledBytes: 777,
      deltaApplied: false,
    });
    expect(planInstall(input())[0]!.resume).toEqual({ blocksDone: 0, spooledBytes: 0, deltaApplied: false });
  });

  it('a delta applied completely (no checkpoint left) is re-verified instead of downloaded', () => {
    const applied = started({ method: 'delta', delta, blocksWritten: 2048 });
    expect(planInstall(input({ progress: { rootfs: applied } }))[0]!.resume.deltaApplied).toBe(true);
    const checkpoint = {
      nextOp: 3,
      payloadOffset: 100,
      metadataSizeBytes: 50,
      metadataSha256: 'c'.repeat(64),
    };
    const midway = started({ method: 'delta', delta: { ...delta, checkpoint }, blocksWritten: 1000 });
    expect(planInstall(input({ progress: { rootfs: midway } }))[0]!.resume.deltaApplied).toBe(false);
  });
});

describe('resumesJournal', () => {
  const journal = (p: Partial<InstallJournal>): InstallJournal =>
    ({ phase: 'writing', manifestJws: 'jws', bootedSlot: 'A', targetSlot: 'B', ...p }) as InstallJournal;
  const now = { manifestJws: 'jws', bootedSlot: 'A', targetSlot: 'B' } as const;

  it('continues an unfinished install of the same manifest for the same slots', () => {
    expect(resumesJournal(journal({}), now)).toBe(true);
    expect(resumesJournal(journal({ phase: 'verified' }), now)).toBe(true);
    expect(resumesJournal(undefined, now)).toBe(false);
    expect(resumesJournal(journal({ manifestJws: 'other' }), now)).toBe(false);
    expect(resumesJournal(journal({ bootedSlot: 'B', targetSlot: 'A' }), now)).toBe(false);
    expect(resumesJournal(journal({ phase: 'failed' }), now)).toBe(false);
  });

  it('continues a boot-pending install only in the boot it was armed in', () => {
    const pending = journal({ phase: 'boot-pending', bootId: 'boot-1' });
    expect(resumesJournal(pending, { ...now, currentBootId: 'boot-1' })).toBe(true);
    expect(resumesJournal(pending, { ...now, currentBootId: 'boot-2' })).toBe(false);
    expect(resumesJournal(journal({ phase: 'boot-pending' }), now)).toBe(false);
  });
});
