// Online key rotation on a running fleet (issue #16 defect 2): the operator rotates the trust
// root with the real CLI (`abota keys rotate` + `abota product set-root`, PUT /trust-root), the
// real update server serves each polling device the roots after its own, and the agent walks
// them (TUF §5.3) before it verifies a release signed under the new root. Also after a simulated
// key compromise (old root and release keys replaced and deleted), and a forged root slipped into
// a poll answer by a tampering proxy: refused, the device keeps its root, the slots are untouched.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  createTrustRoot,
  generateSigningKey,
  importSigningKey,
  type ReleaseManifest,
  signManifest,
  signTrustRoot,
  verifyTrustRoot,
} from '@abota/manifest';
import { SimulatedVm } from '@abota/simulator';
import { labJson } from '@abota/update-server/lab';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createFleet,
  type Fleet,
  type FleetVm,
  HARDWARE,
  offeringFetch,
  PRODUCT,
  runAbota,
  updateOnce,
} from '../fixtures/fleet.js';

let fleet: Fleet;
/** Registered on root v1 and kept offline until root v3: it needs two rotations in one poll. */
let late: FleetVm;
/** The v2 release key and root, as the attacker of the key-compromise test kept them. */
let stolenReleaseKey: string;
let rootV2Text: string;

beforeAll(async () => {
  fleet = await createFleet();
  await fleet.buildRelease({ version: '1.0.0', securityVersion: 1 });
  await fleet.push('1.0.0');
  late = await fleet.newVm('late');
}, 180_000);

afterAll(async () => {
  await fleet?.close();
});

async function rotate(args: string[]): Promise<void> {
  await runAbota(['keys', 'rotate', fleet.keysDir, ...args, '--json']);
  await fleet.operator(['product', 'set-root', PRODUCT, '--root', fleet.rootPath, '--json']);
}

async function deviceRootVersion(vm: SimulatedVm): Promise<number> {
  return (await (await vm.openAgent()).trustRoot()).version;
}

/** Both slots and the boot environment: what a refused release must leave byte-identical. */
async function snapshot(vm: SimulatedVm) {
  return { A: await vm.slotDigests('A'), B: await vm.slotDigests('B'), grubenv: await vm.grubenv() };
}

/**
 * Roll `version` out to the device and live the update: installed into the inactive slot,
 * committed after the reboot, the slot it ran untouched, and the device now on root `rootVersion`.
 */
async function installsUnderRoot({ vm, deviceId }: FleetVm, version: string, rootVersion: number) {
  const active = await vm.bootedSlot();
  if (active === 'rescue') throw new Error('the VM booted its rescue system');
  const activeBefore = await vm.slotDigests(active);
  await fleet.server.createRollout(fleet.releaseIds.get(version)!, { deviceIds: [deviceId] });
  const r = await updateOnce(vm);
  expect(r.check).toMatchObject({ status: 'installed', version });
  expect(r.after).toEqual({ action: 'committed', version, slot: active === 'A' ? 'B' : 'A' });
  expect(await vm.slotDigests(active)).toEqual(activeBefore);
  expect(await deviceRootVersion(vm)).toBe(rootVersion);
}

describe('online trust root rotation', () => {
  it('rotates the release key to root v2 on a running fleet; a release signed under v2 installs', async () => {
    const { vm, deviceId } = await fleet.newVm('rotated');
    expect(await deviceRootVersion(vm)).toBe(1);
    await rotate(['--release-keys', '1']);
    await fleet.buildRelease({ version: '2.0.0', securityVersion: 1 });
    await fleet.push('2.0.0');
    await installsUnderRoot({ vm, deviceId }, '2.0.0', 2);

    // After a compromise of the v2 root and release keys: v3 has fresh root keys (2 of 2) and a
    // fresh release key, signed by v2's threshold (the rotation must chain) and by its own.
    stolenReleaseKey = await readFile(join(fleet.keysDir, 'keys', 'release-2.jwk.json'), 'utf8');
    const rootV2 = await verifyTrustRoot(await readFile(fleet.rootPath, 'utf8'));
    rootV2Text = await readFile(fleet.rootPath, 'utf8');
    await rotate(['--root-keys', '2', '--root-threshold', '2', '--release-keys', '1']);
    const v3 = await verifyTrustRoot(await readFile(fleet.rootPath, 'utf8'));
    expect(v3.version).toBe(3);
    expect(v3.roles.root.threshold).toBe(2);
    expect(v3.roles.root.keyIds).not.toContain(rootV2.roles.root.keyIds[0]);
    // The compromised keys are destroyed; releases are built with the new ones only.
    await rm(join(fleet.keysDir, 'keys', 'root-1.jwk.json'));
    await rm(join(fleet.keysDir, 'keys', 'release-1.jwk.json'));
    await rm(join(fleet.keysDir, 'keys', 'release-2.jwk.json'));
    await fleet.buildRelease({ version: '3.0.0', securityVersion: 1 });
    await fleet.push('3.0.0');

    // The genuine v3 release installs; the device walked v2 → v3.
    await installsUnderRoot({ vm, deviceId }, '3.0.0', 3);
  });

  it('a device still on root v1 is served v2 and v3 in one poll and installs the release signed under v3', async () => {
    expect(await deviceRootVersion(late.vm)).toBe(1);
    await installsUnderRoot(late, '3.0.0', 3);
  });

  /**
   * A fresh device on root v1 (and release 1.0.0) is offered 3.0.0 through the tampering proxy:
   * the attack must leave both slots and the boot environment byte-identical.
   */
  async function attack(name: string, roots: string[] | undefined, manifestJws: string, version: string) {
    // Baked root v1 (kept by `abota keys rotate` as roots/1.root.json), release 1.0.0 in slot A.
    const vm = await SimulatedVm.createFromRelease({
      dir: join(fleet.work, 'vms', name),
      trustRootPath: join(fleet.keysDir, 'roots', '1.root.json'),
      product: PRODUCT,
      hardware: HARDWARE,
      serverUrl: fleet.server.url,
      releaseDir: fleet.releases.get('1.0.0')!,
    });
    const deviceId = await (await vm.openAgent()).register(
      await fleet.server.createProvisioningToken(PRODUCT),
    );
    expect(await deviceRootVersion(vm)).toBe(1);
    await fleet.server.createRollout(fleet.releaseIds.get('3.0.0')!, { deviceIds: [deviceId] });
    await (await vm.openAgent()).afterBoot({ reboot: true });
    const before = await snapshot(vm);
    const agent = await vm.openAgent({
      fetch: offeringFetch(manifestJws, version, roots !== undefined ? { roots } : {}),
    });
    const err = (await agent.checkOnce({ reboot: true }).then(
      () => undefined,
      (e: unknown) => e,
    )) as { code?: string } | undefined;
    expect(await vm.rebootRequested()).toBe(false);
    expect(await snapshot(vm)).toEqual(before);
    return { vm, code: err?.code };
  }

  async function releaseManifest(version: string): Promise<ReleaseManifest> {
    return JSON.parse(await readFile(join(fleet.releases.get(version)!, 'manifest.json'), 'utf8'));
  }

  it('refuses a release signed with the compromised v2 release key once root v3 revoked it', async () => {
    const stolen = await importSigningKey(JSON.parse(stolenReleaseKey));
    const rootV2 = await verifyTrustRoot(rootV2Text);
    const forged = await signManifest(
      { ...(await releaseManifest('3.0.0')), version: '3.1.0' },
      [stolen],
      rootV2,
    );
    // The server's genuine roots v2, v3 pass; only the manifest is the attacker's.
    const r = await attack('stolen-key', undefined, JSON.stringify(forged), '3.1.0');
    expect(r.code).toMatch(/^ERR_(THRESHOLD_NOT_MET|SIGNATURE_INVALID)$/);
    expect(await deviceRootVersion(r.vm)).toBe(3);
  });

  it('refuses a forged root v2 (not signed by the threshold of v1) and its release; the device keeps v1', async () => {
    const rootKey = await generateSigningKey();
    const releaseKey = await generateSigningKey();
    const forgedRoot = await createTrustRoot({
      version: 2,
      expires: new Date(Date.now() + 30 * 86_400_000),
      rootKeys: [rootKey],
      rootThreshold: 1,
      releaseKeys: [releaseKey],
      releaseThreshold: 1,
    });
    // Self-signed only: no v1 root key signed it.
    const signedForged = await signTrustRoot(forgedRoot, [rootKey]);
    const forgedRelease = await signManifest(
      { ...(await releaseManifest('3.0.0')), version: '4.0.0' },
      [releaseKey],
      forgedRoot,
    );
    // The server refuses it as a rotation of the current root.
    await expect(
      labJson(
        await fleet.server.api.v1.admin.products[':id']['trust-root'].$put({
          param: { id: PRODUCT },
          json: { trustRoot: signedForged },
        }),
      ),
    ).rejects.toThrow();
    const r = await attack(
      'forged-root',
      [JSON.stringify(signedForged)],
      JSON.stringify(forgedRelease),
      '4.0.0',
    );
    expect(r.code).toMatch(/^ERR_(THRESHOLD_NOT_MET|SIGNATURE_INVALID)$/);
    expect(await deviceRootVersion(r.vm)).toBe(1);
  });
});
