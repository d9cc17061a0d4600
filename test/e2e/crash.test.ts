import type { SlotName } from '@abota/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFleet, type Fleet } from '../fixtures/fleet.js';
import {
  committedOnDevice,
  installing,
  mtimeMs,
  reached,
  seeded,
  sleep,
  stationsOf,
  waitFor,
} from '../fixtures/power-cut.js';

const KILLS_DURING_INSTALL = 20;
const CHECKPOINT_BYTES = 256 * 1024;
const DOWNLOAD_BYTES_PER_SECOND = 4 * 1024 * 1024;

let fleet: Fleet;

beforeAll(async () => {
  fleet = await createFleet();
  await fleet.buildRelease({ version: '1.0.0', securityVersion: 1 });
  for (const v of ['2.0.0', '3.0.0', '4.0.0']) {
    await fleet.buildRelease({ version: v, securityVersion: 1 });
    await fleet.push(v);
  }
}, 180_000);

afterAll(async () => {
  await fleet?.close();
});

async function serverHas(deviceId: string, version: string, state: string): Promise<boolean> {
  const events = (await fleet.server.device(deviceId)).events;
  return events.some((e) => e.version === version && e.state === state);
}

describe('agent killed during installs', () => {
  it(`boots a verified slot after each of ${KILLS_DURING_INSTALL}+ SIGKILLs during installs, and every install resumes and commits`, async () => {
    const seed = Number(process.env['ABOTA_CRASH_SEED'] ?? Date.now() % 1_000_000);
    const random = seeded(seed);
    const { vm, deviceId } = await fleet.newVm('crash', {
      bandwidthLimitBytesPerSecond: DOWNLOAD_BYTES_PER_SECOND,
    });
    const journalPath = `${vm.paths.dataDir}/install-journal.json`;
    const killLog: string[] = [];
    let killsDuringInstall = 0;
    let committedSlot: SlotName = 'A';
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
      for (const version of ['2.0.0', '3.0.0', '4.0.0']) {
        // A third release only if early completions left the first two short of the count.
        if (killsDuringInstall >= KILLS_DURING_INSTALL) break;
        const committedBefore = await vm.slotDigests(committedSlot);
        await fleet.server.createRollout(fleet.releaseIds.get(version)!, { deviceIds: [deviceId] });
        const target: SlotName = committedSlot === 'A' ? 'B' : 'A';
        // Ten power cuts per release at seeded stations spread over the install: right after
        // the manifest was accepted, at eight random points of the block stream, and after the
        // slot was set "try once" (before the reboot).
        const stations = stationsOf(random, 8);
        for (const [cut, station] of stations.entries()) {
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
            );
            // A commit is not a station: let its report reach the server before the next cut, so
            // the cuts that follow land in the next install (a report lost to a cut is re-sent
            // from the agent's outbox on the next start; agent.test.ts covers that).
            if (await committedOnDevice(vm, version))
              await waitFor(
                () => serverHas(deviceId, version, 'committed'),
                `${version} committed report`,
                proc,
              );
            else {
              await sleep(Math.floor(random() * 40));
            }
          } finally {
            await proc.killAndWait('SIGKILL');
          }
          const j = await vm.journal();
          if (installing(j, version)) killsDuringInstall++;
          const done = j?.phase === 'committed' && j.version === version;
          killLog.push(
            `${version} cut ${cut} (${station.kind}${station.kind === 'writing' ? ` ≥${Math.round(station.fraction * 100)}%` : ''}): ${j?.phase ?? 'no journal'} ${j?.progress.bytesDone ?? 0}/${j?.progress.bytesTotal ?? 0}`,
          );
          // Power comes back.
          const boot = await vm.boot();
          expect(boot.slot, `seed ${seed}\n${killLog.join('\n')}`).not.toBe('rescue');
          const alive = boot.slot as SlotName;
          // It boots the committed slot, or the new one only once it was completely written.
          if (alive === target) expect(j?.phase).toMatch(/^(boot-pending|committed)$/);
          // The committed slot is never written while the other one is installed.
          if (alive === committedSlot || j?.phase !== 'committed') {
            expect(await vm.slotDigests(committedSlot), `seed ${seed}\n${killLog.join('\n')}`).toEqual(
              committedBefore,
            );
          }
          if (done) break;
        }
        // No more cuts: run until the release is committed (the agent may ask for a reboot once).
        for (let boots = 0; ; boots++) {
          expect(boots, `seed ${seed}: ${version} never committed\n${killLog.join('\n')}`).toBeLessThan(4);
          const j0 = await vm.journal();
          if (j0?.phase === 'committed' && j0.version === version && (await vm.bootedSlot()) === target)
            break;
          const proc = powerOn();
          try {
            await waitFor(
              async () => {
                return (await vm.rebootRequested()) || (await serverHas(deviceId, version, 'committed'));
              },
              `${version} to finish`,
              proc,
              { timeoutMs: 60_000 },
            );
          } finally {
            await proc.killAndWait('SIGKILL');
          }
          if (await vm.rebootRequested()) await vm.boot();
        }
        expect(await vm.bootedSlot()).toBe(target);
        expect(await vm.slotDigests(committedSlot)).toEqual(committedBefore);
        expect((await vm.bootArtifacts())[target]?.version).toBe(version);
        committedSlot = target;
      }
    } finally {
      await next.killAndWait('SIGKILL');
    }
    expect(killsDuringInstall, `seed ${seed}\n${killLog.join('\n')}`).toBeGreaterThanOrEqual(
      KILLS_DURING_INSTALL,
    );
    const events = (await fleet.server.device(deviceId)).events.map((e) => `${e.version}:${e.state}`);
    expect(events).toEqual(expect.arrayContaining(['2.0.0:committed', '3.0.0:committed']));
    console.log(
      `crash test seed ${seed}, ${killsDuringInstall} kills during installs:\n${killLog.join('\n')}`,
    );
  }, 240_000);
});
