// Delta updates end to end: releases built and given deltas by the abota CLI (`release
// add-delta`), pushed to a real update server (PGlite, loopback HTTP) which registers the deltas
// and offers them in the poll, and simulated VMs whose agent applies them against the active slot
// (every block verified against the signed tree) — or falls back to the full artifact.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { InstallJournal } from '@abota/client';
import { SimulatedVm } from '@abota/simulator';
import { labJson } from '@abota/update-server/lab';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createFleet,
  type Fleet,
  HARDWARE,
  PRODUCT,
  runAbota,
  serverEvents,
  updateOnce,
} from '../fixtures/fleet.js';

interface DeltasJson {
  deltas: {
    image: string;
    sourceVersion: string;
    sourceRootHash: string;
    digest: string;
    sizeBytes: number;
  }[];
}

let fleet: Fleet;
let deltas: DeltasJson['deltas'];

beforeAll(async () => {
  fleet = await createFleet();
  await fleet.buildRelease({ version: '1.0.0', securityVersion: 1 });
  const v2 = await fleet.buildRelease({ version: '2.0.0', securityVersion: 2 });
  await runAbota(['release', 'add-delta', v2, '--from', fleet.releases.get('1.0.0')!, '--json']);
  deltas = (JSON.parse(await readFile(join(v2, 'deltas.json'), 'utf8')) as DeltasJson).deltas;
  await fleet.push('1.0.0');
  // Uploads every blob of the directory, delta payloads included, then registers deltas.json.
  const id = await fleet.push('2.0.0');
  const registered = await labJson<{ items: { digest: string }[] }>(
    await fleet.server.api.v1.admin.releases[':id'].deltas.$get({ param: { id } }),
  );
  expect(registered.items.map((d) => d.digest).sort()).toEqual(deltas.map((d) => d.digest).sort());
}, 300_000);

afterAll(async () => {
  await fleet?.close();
});

const rootfsOf = (j: InstallJournal | undefined) => j?.images['rootfs'];

function rootfsDelta() {
  const d = deltas.find((x) => x.image === 'rootfs');
  if (d === undefined) throw new Error('release add-delta made no rootfs delta');
  return d;
}

describe('delta updates', () => {
  it('a device on 1.0.0 updates to 2.0.0 through the rootfs delta; slot A is never written', async () => {
    const { vm, deviceId } = await fleet.newVm('delta');
    const slotA = await vm.slotDigests('A');
    await fleet.server.createRollout(fleet.releaseIds.get('2.0.0')!, { deviceIds: [deviceId] });
    const r = await updateOnce(vm);
    expect(r.check).toMatchObject({ status: 'installed', version: '2.0.0', rebooted: true });
    expect(r.boot).toMatchObject({ slot: 'B', failedBoots: [] });
    expect(r.after).toEqual({ action: 'committed', version: '2.0.0', slot: 'B' });
    expect(await vm.slotDigests('A')).toEqual(slotA);

    const rootfs = rootfsOf(await vm.journal());
    expect(rootfs).toMatchObject({ method: 'delta', delta: { digest: rootfsDelta().digest } });
    // Downloaded: the delta, not the artifact.
    expect(rootfs?.downloadedBytes).toBe(rootfsDelta().sizeBytes);
    expect(rootfsDelta().sizeBytes).toBeLessThan(rootfs!.artifactSizeBytes!);
    // The slot's root hash is recorded at commit: the next delta is checked against it.
    const status = await (await vm.openAgent()).status();
    const manifest = JSON.parse(await readFile(join(fleet.releases.get('2.0.0')!, 'manifest.json'), 'utf8'));
    expect(status.slots.B?.rootHashes?.rootfs).toBe(manifest.images.rootfs.verity.rootHash);
  });

  it('an active slot that rotted after boot (root hash claims to match): the delta fails on the bad block, is reported, and the full artifact is installed', async () => {
    const { vm, deviceId } = await fleet.newVm('rot');
    // A block both versions share, so the delta copies it from slot A.
    const v1 = await readFile(join(fleet.work, 'images', 'rootfs-1.0.0.img'));
    const v2 = await readFile(join(fleet.work, 'images', 'rootfs-2.0.0.img'));
    let shared = -1;
    for (let b = 1; b * 4096 < Math.min(v1.length, v2.length) && shared < 0; b++) {
      const a = v1.subarray(b * 4096, (b + 1) * 4096);
      if (a.equals(v2.subarray(b * 4096, (b + 1) * 4096)) && a.some((x) => x !== 0)) shared = b;
    }
    expect(shared).toBeGreaterThan(0);
    await vm.corruptBlock('A', shared, { byteInBlock: 77 });
    const slotA = await vm.slotDigests('A');

    await fleet.server.createRollout(fleet.releaseIds.get('2.0.0')!, { deviceIds: [deviceId] });
    const r = await updateOnce(vm);
    expect(r.after).toEqual({ action: 'committed', version: '2.0.0', slot: 'B' });
    expect(await vm.slotDigests('A')).toEqual(slotA);
    const rootfs = rootfsOf(await vm.journal());
    expect(rootfs).toMatchObject({
      method: 'full',
      deltaFallback: { code: 'ERR_DELTA_TARGET_VERIFICATION' },
    });
    const events = await serverEvents(fleet.server, deviceId);
    expect(events).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          version: '2.0.0',
          state: 'installing',
          errorCode: 'ERR_DELTA_TARGET_VERIFICATION',
        }),
      ]),
    );
  });

  it('a device whose active slot is another image than the delta source gets the full artifact without fetching the delta', async () => {
    // Reports 1.0.0 (so the server offers the 1.0.0 → 2.0.0 delta), but its slot A holds other content.
    const other = join(fleet.work, 'releases', '1.0.0-other');
    const img = join(fleet.work, 'images', 'rootfs-0.9.0.img');
    const { buildRootfsImage } = await import('@abota/simulator');
    await buildRootfsImage({ path: img, version: '0.9.0', sizeBytes: 4 * 1024 * 1024 });
    await runAbota([
      'release',
      'build',
      '--image',
      img,
      '--boot',
      join(fleet.work, 'images', 'boot-1.0.0.img'),
      '--product',
      PRODUCT,
      '--compatible',
      HARDWARE,
      '--version',
      '1.0.0',
      '--security-version',
      '1',
      '--expires',
      '30d',
      '--keys',
      fleet.keysDir,
      '--out',
      other,
      '--json',
    ]);
    const vm = await SimulatedVm.createFromRelease({
      dir: join(fleet.work, 'vms', 'other'),
      trustRootPath: fleet.rootPath,
      product: PRODUCT,
      hardware: HARDWARE,
      serverUrl: fleet.server.url,
      releaseDir: other,
    });
    const deviceId = await (await vm.openAgent()).register(
      await fleet.server.createProvisioningToken(PRODUCT),
    );
    const slotA = await vm.slotDigests('A');
    await fleet.server.createRollout(fleet.releaseIds.get('2.0.0')!, { deviceIds: [deviceId] });
    const r = await updateOnce(vm);
    expect(r.after).toEqual({ action: 'committed', version: '2.0.0', slot: 'B' });
    expect(await vm.slotDigests('A')).toEqual(slotA);
    const rootfs = rootfsOf(await vm.journal());
    expect(rootfs?.method).toBe('full');
    expect(rootfs?.deltaFallback).toBeUndefined();
    expect(rootfs?.downloadedBytes).toBe(rootfs?.artifactSizeBytes);
  });
});
