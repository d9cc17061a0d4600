// Installer throughput on this machine: a signed release of SIZE_MIB (default 128) installed
// from a release directory into a slot file, codec none and brotli, against the same bytes copied
// with `dd` (the floor: no verification, no decoding) measured in the same run; then the cost of
// resuming (re-verifying the blocks already on the slot).
//   npx tsx --conditions=@abota/source bench/run.ts
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileBootControl } from '../src/bootctl/index.js';
import { Installer } from '../src/install/installer.js';
import { DirectoryReleaseSource } from '../src/install/release-source.js';
import { configOf, makeDevice, makeRelease, makeTrust } from '../test/release-fixture.js';

const sizeMiB = Number(process.env['SIZE_MIB'] ?? 128);
const root = await mkdtemp(join(tmpdir(), 'abota-client-bench-'));
try {
  const trust = await makeTrust();
  const mib = (s: number): string => `${(sizeMiB / s).toFixed(0)} MiB/s`;
  const rows: [string, number][] = [];
  for (const codec of ['none', 'brotli'] as const) {
    const rel = await makeRelease({
      dir: join(root, codec),
      trust,
      version: '2.0.0',
      codec,
      sizeBytes: sizeMiB * 1024 * 1024,
    });
    const dev = await makeDevice(join(root, `dev-${codec}`), trust);
    const config = configOf(dev);
    if (codec === 'none') {
      const t = performance.now();
      spawnSync('dd', [
        `if=${rel.artifactPath}`,
        `of=${join(root, 'dd.img')}`,
        'bs=1M',
        'conv=fsync',
        'status=none',
      ]);
      rows.push(['dd bs=1M conv=fsync (reference)', (performance.now() - t) / 1000]);
    }
    const installer = (signal?: AbortSignal) =>
      new Installer({
        config,
        bootControl: new FileBootControl({
          statePath: dev.bootStatePath,
          cmdlinePath: config.kernelCmdlinePath,
        }),
        trustRoot: trust.root,
        clock: () => new Date(),
        deviceFacts: async () => ({
          product: 'eflow-vm',
          hardware: 'hyperv-x64',
          currentVersion: '1.0.0',
          securityVersionFloor: 0,
        }),
        bootId: async () => 'bench',
        ...(signal ? { signal } : {}),
      });
    const t = performance.now();
    await installer().install(new DirectoryReleaseSource(rel.dir));
    rows.push([
      `abota install, codec ${codec} (artifact ${(rel.manifest.images.rootfs.artifact.sizeBytes / 2 ** 20).toFixed(1)} MiB)`,
      (performance.now() - t) / 1000,
    ]);

    // Resume cost: a journal that says every block is written → re-verify all, then finish.
    const { readJournal, writeJournal } = await import('../src/install/journal.js');
    const j = (await readJournal(config.dataDir))!;
    const images = { rootfs: { ...j.images['rootfs']!, hashTreeWritten: false } };
    await writeJournal(config.dataDir, { ...j, phase: 'writing', images });
    const t2 = performance.now();
    await installer().install(new DirectoryReleaseSource(rel.dir));
    rows.push([`resume with all blocks on the slot, codec ${codec}`, (performance.now() - t2) / 1000]);
  }
  // Network cost of a resume: cut the download at 50 %, resume, count artifact bytes fetched again.
  const refetch: string[] = [];
  for (const [codec, spool] of [
    ['none', false],
    ['brotli', false],
    ['brotli', true],
  ] as const) {
    const rel = await makeRelease({
      dir: join(root, `cut-${codec}-${spool}`),
      trust,
      version: '2.0.0',
      codec,
      sizeBytes: sizeMiB * 1024 * 1024,
    });
    const dev = await makeDevice(join(root, `cutdev-${codec}-${spool}`), trust);
    const config = configOf(dev, { spoolCompressedArtifacts: spool });
    const art = rel.manifest.images.rootfs.artifact;
    let fetched = 0;
    const counting = (cutAt: number | undefined, ac: AbortController | undefined) => {
      const inner = new DirectoryReleaseSource(rel.dir);
      return {
        journalSource: inner.journalSource,
        readManifestJws: () => inner.readManifestJws(),
        readRootChain: () => inner.readRootChain(),
        async *openBlob(digest: string, size: number, start: number, signal?: AbortSignal) {
          let seen = start;
          for await (const c of inner.openBlob(digest, size, start)) {
            if (digest === art.digest) fetched += c.byteLength;
            seen += c.byteLength;
            if (cutAt !== undefined && digest === art.digest && seen > cutAt) {
              ac!.abort(new Error('cut'));
              signal?.throwIfAborted();
            }
            yield c;
          }
        },
      };
    };
    const make = (signal?: AbortSignal) =>
      new Installer({
        config,
        bootControl: new FileBootControl({
          statePath: dev.bootStatePath,
          cmdlinePath: config.kernelCmdlinePath,
        }),
        trustRoot: trust.root,
        clock: () => new Date(),
        deviceFacts: async () => ({
          product: 'eflow-vm',
          hardware: 'hyperv-x64',
          currentVersion: '1.0.0',
          securityVersionFloor: 0,
        }),
        bootId: async () => 'bench',
        checkpointBytes: 8 * 1024 * 1024,
        ...(signal ? { signal } : {}),
      });
    const ac = new AbortController();
    await make(ac.signal)
      .install(counting(Math.floor(art.sizeBytes / 2), ac))
      .catch(() => {});
    fetched = 0;
    await make().install(counting(undefined, undefined));
    refetch.push(
      `resume after a cut at 50 %, codec ${codec}${spool ? ' + spool' : ''}: fetched again ${(fetched / 2 ** 20).toFixed(1)} of ${(art.sizeBytes / 2 ** 20).toFixed(1)} MiB (${((100 * fetched) / art.sizeBytes).toFixed(0)} %)`,
    );
  }

  const ref = rows[0]![1];
  console.log(`installer bench, ${sizeMiB} MiB image, ${new Date().toISOString()}`);
  for (const [name, s] of rows)
    console.log(
      `${name.padEnd(58)} ${s.toFixed(2).padStart(6)} s  ${mib(s).padStart(10)}  ×${(s / ref).toFixed(2)} of dd`,
    );
  for (const line of refetch) console.log(line);
} finally {
  await rm(root, { recursive: true, force: true });
}
