import type { SlotName } from '@abota/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFleet, type Fleet, runAbota } from '../fixtures/fleet.js';
import {
  committedOnDevice,
  installing,
  mtimeMs,
  reached,
  sleep,
  stationsOf,
  waitFor,
} from '../fixtures/power-cut.js';
import { formatTally, printSummary, replay, soakCount, soakRandom, tally } from './soak.js';

const KILLS = soakCount('ABOTA_SOAK_KILLS', 100);
const CHECKPOINT_BYTES = 256 * 1024;
const DOWNLOAD_BYTES_PER_SECOND = 4 * 1024 * 1024;
/** Cuts per release: after the manifest was accepted, eight in the block stream, after "try once". */
const WRITING_CUTS = 8;

let fleet: Fleet;

beforeAll(async () => {
  fleet = await createFleet();
  await fleet.buildRelease({ version: '1.0.0', securityVersion: 1 });
}, 120_000);

afterAll(async () => {
  await fleet?.close();
});

/** Release `n`.0.0, with a rootfs delta from the one before when `n` is odd; pushed. */
async function publish(n: number): Promise<{ version: string; method: 'delta' | 'full' }> {
  const version = `${n}.0.0`;
  const dir = await fleet.buildRelease({ version, securityVersion: 1 });
  const method = n % 2 === 1 ? 'delta' : 'full';
  if (method === 'delta')
    await runAbota(['release', 'add-delta', dir, '--from', fleet.releases.get(`${n - 1}.0.0`)!, '--json']);
  await fleet.push(version);
  return { version, method };
}

describe('agent killed during full and delta installs', () => {
  it(`boots a verified slot after each of ${KILLS} seeded SIGKILLs during full and delta installs; every install resumes and commits`, async () => {
    const started = performance.now();
    const random = soakRandom(1);
    const { vm, deviceId } = await fleet.newVm('kills', {
      bandwidthLimitBytesPerSecond: DOWNLOAD_BYTES_PER_SECOND,
    });
    const journalPath = `${vm.paths.dataDir}/install-journal.json`;
    const log: string[] = [];
    const killsBy = new Map<string, number>();
    const phases = new Map<string, number>();
    const methodsInstalled = new Map<string, number>();
    let kills = 0;
    let committedSlot: SlotName = 'A';
    const serverHas = async (version: string, state: string) =>
      (await fleet.server.device(deviceId)).events.some((e) => e.version === version && e.state === state);
    // The next boot's agent process, already loaded and waiting (see agent-process.ts).
    const prestart = () =>
      vm.spawnAgent(['run', '--json'], { checkpointBytes: CHECKPOINT_BYTES, waitForStart: true });
    let next = prestart();
    const powerOn = () => {
      const proc = next;
      next = prestart();
      proc.start();
      return proc;
    };

    try {
      for (let n = 2; kills < KILLS; n++) {
        const { version, method } = await publish(n);
        const committedBefore = await vm.slotDigests(committedSlot);
        await fleet.server.createRollout(fleet.releaseIds.get(version)!, { deviceIds: [deviceId] });
        const target: SlotName = committedSlot === 'A' ? 'B' : 'A';
        const stations = stationsOf(random, WRITING_CUTS);
        for (const [cut, station] of stations.entries()) {
          if (kills >= KILLS) break;
          const spawnedAt = Date.now();
          const proc = powerOn();
          try {
            await waitFor(
              async () => {
                const j = await vm.journal().catch(() => undefined);
                return (
                  (await vm.rebootRequested()) ||
                  (j?.phase === 'committed' && j.version === version) ||
                  reached(j, version, station, (await mtimeMs(journalPath)) >= spawnedAt - 5)
                );
              },
              `${version} to reach ${JSON.stringify(station)}`,
              proc,
              { context: () => replay(log) },
            );
            // A commit is not a station: its report reaches the server before the next cut.
            if (await committedOnDevice(vm, version))
              await waitFor(() => serverHas(version, 'committed'), `${version} committed report`, proc, {
                context: () => replay(log),
              });
            else await sleep(Math.floor(random() * 40));
          } finally {
            await proc.killAndWait('SIGKILL');
          }
          const j = await vm.journal();
          if (installing(j, version)) {
            kills++;
            tally(killsBy, `${method} install`);
            tally(phases, j!.phase);
          }
          const done = j?.phase === 'committed' && j.version === version;
          log.push(
            `${version} (${method}) cut ${cut} (${station.kind}${station.kind === 'writing' ? ` ≥${Math.round(station.fraction * 100)}%` : ''}): ${j?.phase ?? 'no journal'} ${j?.progress.bytesDone ?? 0}/${j?.progress.bytesTotal ?? 0}`,
          );
          // Power comes back.
          const boot = await vm.boot();
          expect(boot.slot, replay(log)).not.toBe('rescue');
          if (boot.slot === target) expect(j?.phase, replay(log)).toMatch(/^(boot-pending|committed)$/);
          if (boot.slot === committedSlot || j?.phase !== 'committed')
            expect(await vm.slotDigests(committedSlot), replay(log)).toEqual(committedBefore);
          if (done) break;
        }
        // No more cuts for this release: run until it is committed (one reboot at most is asked).
        for (let boots = 0; ; boots++) {
          expect(boots, `${version} never committed\n${replay(log)}`).toBeLessThan(4);
          const j0 = await vm.journal();
          if (j0?.phase === 'committed' && j0.version === version && (await vm.bootedSlot()) === target)
            break;
          const proc = powerOn();
          try {
            await waitFor(
              async () => (await vm.rebootRequested()) || (await serverHas(version, 'committed')),
              `${version} to finish`,
              proc,
              { timeoutMs: 60_000, context: () => replay(log) },
            );
          } finally {
            await proc.killAndWait('SIGKILL');
          }
          if (await vm.rebootRequested()) await vm.boot();
        }
        expect(await vm.bootedSlot(), replay(log)).toBe(target);
        expect(await vm.slotDigests(committedSlot), replay(log)).toEqual(committedBefore);
        expect((await vm.bootArtifacts())[target]?.version, replay(log)).toBe(version);
        // The install really took the path this release was meant to exercise.
        const rootfs = (await vm.journal())?.images['rootfs'];
        tally(methodsInstalled, `${rootfs?.method}`);
        expect(rootfs?.method, replay(log)).toBe(method);
        committedSlot = target;
      }
    } finally {
      await next.killAndWait('SIGKILL');
    }
    expect(kills).toBe(KILLS);
    printSummary('SIGKILL during installs', started, [
      `${kills} kill points during installs (${formatTally(killsBy)})`,
      `journal phase at the kill: ${formatTally(phases)}`,
      `releases committed after their cuts: ${[...methodsInstalled.values()].reduce((a, b) => a + b, 0)} (${formatTally(methodsInstalled)})`,
      'every cut: a verified slot booted, the committed slot byte-identical until the new one was complete',
    ]);
  });
});
