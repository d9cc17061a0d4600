// The end-to-end demo behind `abota demo`: real parts only. Two small rootfs images, a fresh
// trust root, two signed releases, an `abota-server` started in this process (createApp through
// startServer: PGlite + filesystem blobs, 127.0.0.1), a simulated VM provisioned on 1.0.0 and
// its agent updating it to 2.0.0 over HTTP: install into slot B → reboot → GRUB + dm-verity →
// health check → commit → report.
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildBootImage, buildRootfsImage, type RootfsImage, SimulatedVm } from '@abota/simulator';
import type { DeviceEvent, LabServer } from '@abota/update-server/lab';
import { initTrustRoot } from '../keys/trust-root.js';
import { type BuildSummary, buildRelease } from '../release/build.js';

export const DEMO_PRODUCT = 'eflow-vm';
export const DEMO_HARDWARE = 'hyperv-x64';
const IMAGE_BYTES = 8 * 1024 * 1024;

export interface DemoOptions {
  /** Work directory (kept); default a temporary directory removed at the end. */
  dir?: string;
  /** Force the raw image fallback instead of mkfs.ext4. */
  rawImages?: boolean;
  /** One line per step, for people; undefined = quiet (--json). */
  say?: (line: string) => void;
  /** Live progress (a terminal rewrites one line); falls back to `say`. */
  progress?: (line: string, done: boolean) => void;
}

export interface DemoResult {
  ok: boolean;
  workDir: string;
  kept: boolean;
  images: { kind: RootfsImage['kind']; sizeBytes: number };
  releases: Array<{
    version: string;
    rootHash: string;
    artifactBytes: number;
    codec: string;
    /** Deltas made with the release (2.0.0: from 1.0.0), per image. */
    deltas: Array<{ image: string; sourceVersion: string; sizeBytes: number; artifactSizeBytes: number }>;
  }>;
  server: { url: string; database: string; blobs: string };
  device: { id: string; slotBefore: string; slotAfter: string; versionBefore: string; versionAfter: string };
  boot: { slot: string; failedBoots: number; grubenv: Record<string, string> };
  serverEvents: string[];
  /** How the agent wrote each image of 2.0.0: from the delta against slot A, or the full artifact. */
  install: {
    images: Record<
      string,
      { method: string; downloadedBytes: number; deltaSizeBytes?: number; artifactSizeBytes?: number }
    >;
  };
  durationsMs: Record<string, number>;
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;
const short = (hex: string) => `${hex.slice(0, 12)}…`;

/**
 * The demo runs an update server in this process: @abota/update-server, an optional peer
 * dependency, so that installing the CLI does not install the server and its database drivers.
 */
async function loadLab(): Promise<typeof import('@abota/update-server/lab')> {
  try {
    return await import('@abota/update-server/lab');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw error;
    throw Object.assign(
      new Error(
        'abota demo runs an update server in this process: install @abota/update-server beside the CLI',
      ),
      { code: 'ERR_DEMO_SERVER_MISSING', exitCode: 2 },
    );
  }
}

export async function runDemo(o: DemoOptions = {}): Promise<DemoResult> {
  const say = o.say ?? (() => {});
  const t0 = performance.now();
  const durationsMs: Record<string, number> = {};
  let lap = t0;
  const step = (name: string) => {
    const now = performance.now();
    durationsMs[name] = Math.round(now - lap);
    lap = now;
    return `${((now - lap + durationsMs[name]!) / 1000).toFixed(1)}s`;
  };
  const kept = o.dir !== undefined;
  const work = o.dir !== undefined ? resolve(o.dir) : await mkdtemp(join(tmpdir(), 'abota-demo-'));
  await mkdir(work, { recursive: true });
  if ((await readdir(work)).length > 0) {
    throw Object.assign(new Error(`${work} is not empty; give --dir a new or empty directory`), {
      code: 'ERR_DEMO_DIR',
      exitCode: 2,
    });
  }
  const lab = await loadLab();
  say(`abota demo: a simulated VM updated from 1.0.0 to 2.0.0 (work dir ${work})`);
  // The server's embedded database takes a while to start: start it while the releases build.
  const serverStarting = lab.LabServer.start({ dataDir: join(work, 'server') });
  serverStarting.catch(() => {});
  let server: LabServer | undefined;
  try {
    await mkdir(join(work, 'images'));
    const images: Record<string, { rootfs: RootfsImage; boot: string }> = {};
    for (const version of ['1.0.0', '2.0.0']) {
      images[version] = {
        rootfs: await buildRootfsImage({
          path: join(work, 'images', `rootfs-${version}.img`),
          version,
          sizeBytes: IMAGE_BYTES,
          ...(o.rawImages ? { kind: 'raw' as const } : {}),
        }),
        boot: await buildBootImage({ path: join(work, 'images', `boot-${version}.img`), version }),
      };
    }
    const kind = images['1.0.0']!.rootfs.kind;
    say(
      `  images    2 × ${mib(IMAGE_BYTES)} rootfs, ${
        kind === 'ext4'
          ? 'ext4 made with mkfs.ext4 -d from generated directory trees'
          : 'deterministic raw images (mkfs.ext4 not found)'
      }, + 256 KiB boot images  ${step('images')}`,
    );

    const keysDir = join(work, 'keys');
    const keys = await initTrustRoot(keysDir, {
      root: { keys: 1, threshold: 1 },
      release: { keys: 1, threshold: 1 },
      expiresInMs: 365 * 86_400_000,
    });
    say(`  keys      trust root v${keys.version} (1 root key, 1 release key) in ${keysDir}  ${step('keys')}`);

    await mkdir(join(work, 'releases'));
    const releases: BuildSummary[] = [];
    for (const [version, securityVersion] of [
      ['1.0.0', 1],
      ['2.0.0', 2],
    ] as const) {
      const s = await buildRelease({
        images: { rootfs: images[version]!.rootfs.path, boot: images[version]!.boot },
        product: DEMO_PRODUCT,
        compatible: [DEMO_HARDWARE],
        version,
        securityVersion,
        expires: '30d',
        keysDir,
        outDir: join(work, 'releases', version),
        // 2.0.0 ships deltas from 1.0.0: the VM downloads only what changed.
        ...(releases[0] !== undefined ? { deltaFrom: [releases[0].outDir] } : {}),
      });
      releases.push(s);
      const r = s.images.rootfs!;
      const deltas = s.deltas
        .map((d) =>
          d.status === 'skipped-not-smaller'
            ? `${d.image} none (not smaller than its full artifact)`
            : `${d.image} ${mib(d.sizeBytes)} (${Math.round(100 * d.ratioToArtifact)} % of full)`,
        )
        .join(', ');
      say(
        `  release   ${version}: dm-verity root ${short(r.rootHash)}, rootfs ${r.artifact.codec} ${mib(r.artifact.sizeBytes)}${deltas !== '' ? `, deltas from ${s.deltas[0]?.sourceVersion}: ${deltas}` : ''}, signed  ${step(`release ${version}`)}`,
      );
    }

    server = await serverStarting;
    say(
      `  server    abota-server on ${server.url} (PGlite + filesystem blobs in ${join(work, 'server')})  ${step('server')}`,
    );
    await server.createProduct(DEMO_PRODUCT, keys.rootFile);
    const ids: string[] = [];
    let uploaded = 0;
    let deltaCount = 0;
    for (const s of releases) {
      const r = await server.pushRelease(s.outDir);
      ids.push(r.id);
      uploaded += r.uploadedBytes;
      deltaCount += r.deltas;
    }
    say(
      `  push      1.0.0 and 2.0.0 over the admin API (${mib(uploaded)} of blobs, ${deltaCount} deltas registered)  ${step('push')}`,
    );

    const vm = await SimulatedVm.createFromRelease({
      dir: join(work, 'vm'),
      trustRootPath: keys.rootFile,
      product: DEMO_PRODUCT,
      hardware: DEMO_HARDWARE,
      serverUrl: server.url,
      releaseDir: releases[0]!.outDir,
    });
    const registering = await vm.openAgent();
    const deviceId = await registering.register(await server.createProvisioningToken(DEMO_PRODUCT));
    await registering.afterBoot({ reboot: true }); // the first boot confirms slot A
    const before = await registering.status();
    say(
      `  vm        provisioned on ${before.version} in slot ${before.bootedSlot} (B empty), registered as device ${deviceId}  ${step('vm')}`,
    );

    await server.createRollout(ids[1]!, { name: 'demo 2.0.0', deviceIds: [deviceId] });
    say(`  rollout   2.0.0 → device ${deviceId}`);

    // The agent polls, downloads and installs; watch its journal for progress.
    const agent = await vm.openAgent();
    let watching = true;
    let lastPercent = -1;
    const watcher = (async () => {
      while (watching) {
        const j = await vm.journal().catch(() => undefined);
        if (j !== undefined && j.version === '2.0.0' && j.progress.bytesTotal > 0) {
          const percent = Math.floor((100 * j.progress.bytesDone) / j.progress.bytesTotal);
          if (percent !== lastPercent && j.phase === 'writing') {
            lastPercent = percent;
            o.progress?.(`  install   2.0.0 → slot ${j.targetSlot}: ${bar(percent)} ${percent}%`, false);
          }
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const check = await agent.checkOnce({ reboot: true }).finally(() => {
      watching = false;
    });
    await watcher;
    o.progress?.(`  install   2.0.0 → slot B: ${bar(100)} 100%`, true);
    const j = await vm.journal();
    const installImages: DemoResult['install']['images'] = {};
    for (const [name, img] of Object.entries(j?.images ?? {})) {
      installImages[name] = {
        method: img.method ?? 'full',
        downloadedBytes: img.downloadedBytes ?? 0,
        ...(img.delta !== undefined && img.method === 'delta' ? { deltaSizeBytes: img.delta.sizeBytes } : {}),
        ...(img.artifactSizeBytes !== undefined ? { artifactSizeBytes: img.artifactSizeBytes } : {}),
      };
    }
    const written = Object.entries(installImages)
      .map(
        ([name, img]) =>
          `${name} from ${img.method === 'delta' ? 'the delta against slot A' : 'the full artifact'} (${mib(img.downloadedBytes)} downloaded${img.artifactSizeBytes !== undefined ? ` of ${mib(img.artifactSizeBytes)} full` : ''})`,
      )
      .join(', ');
    say(`  download  ${written}`);
    say(
      `  install   ${check.status === 'installed' ? check.version : check.status}: every block verified against the signed tree before it was written; slot ${j?.targetSlot} set "try once"; reboot requested  ${step('install')}`,
    );

    const boot = await vm.boot();
    say(
      `  reboot    GRUB chose slot ${boot.slot} (ORDER="${boot.grubenv['ORDER']}" B_OK=${boot.grubenv['B_OK']} B_TRY=${boot.grubenv['B_TRY']}); dm-verity root hash of slot ${boot.slot} checked; cmdline abota.slot=${boot.slot}`,
    );
    const after = await (await vm.openAgent()).afterBoot({ reboot: true });
    const status = await (await vm.openAgent()).status();
    say(
      `  health    ${after.action === 'committed' ? `check passed → committed ${after.version} on slot ${after.slot} (marked good, primary)` : `after boot: ${after.action}`}  ${step('boot + commit')}`,
    );

    const events: DeviceEvent[] = (await server.device(deviceId)).events.slice().reverse();
    const serverEvents = events.map(
      (e) => `${e.version} ${e.state}${e.progress !== null ? ` ${e.progress}%` : ''}`,
    );
    say(`  reported  ${events.map((e) => e.state).join(' → ')}`);
    const ok = after.action === 'committed' && status.bootedSlot === 'B' && status.version === '2.0.0';
    durationsMs['total'] = Math.round(performance.now() - t0);
    say(
      `${ok ? 'done' : 'FAILED'}: device ${deviceId} runs ${status.version} on slot ${status.bootedSlot} (was ${before.version} on ${before.bootedSlot}) in ${(durationsMs['total']! / 1000).toFixed(1)}s${kept ? `; everything is kept in ${work}` : ''}`,
    );
    return {
      ok,
      workDir: work,
      kept,
      images: { kind, sizeBytes: IMAGE_BYTES },
      releases: releases.map((s) => ({
        version: s.version,
        rootHash: s.images.rootfs!.rootHash,
        artifactBytes: s.images.rootfs!.artifact.sizeBytes,
        codec: s.images.rootfs!.artifact.codec,
        deltas: s.deltas
          .filter((d) => d.status !== 'skipped-not-smaller')
          .map((d) => ({
            image: d.image,
            sourceVersion: d.sourceVersion,
            sizeBytes: d.sizeBytes,
            artifactSizeBytes: d.artifactSizeBytes,
          })),
      })),
      server: { url: server.url, database: 'pglite', blobs: 'fs' },
      device: {
        id: deviceId,
        slotBefore: before.bootedSlot,
        slotAfter: status.bootedSlot,
        versionBefore: before.version,
        versionAfter: status.version,
      },
      boot: { slot: boot.slot, failedBoots: boot.failedBoots.length, grubenv: boot.grubenv },
      serverEvents,
      install: { images: installImages },
      durationsMs,
    };
  } finally {
    server ??= await serverStarting.catch(() => undefined);
    await server?.close();
    if (!kept) await rm(work, { recursive: true, force: true });
  }
}

function bar(percent: number): string {
  const width = 24;
  const full = Math.round((percent / 100) * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}
