// The simulated machine on its own: provisioning from a real signed release, GRUB's selection
// over the grubenv, the kernel's verity check and what each fault switch does.
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { editGrubEnvFile } from '@abota/client';
import {
  createTrustRoot,
  formatTimestamp,
  generateSigningKey,
  type ReleaseManifest,
  signManifest,
  signTrustRoot,
  type SigningKey,
  type TrustRoot,
} from '@abota/manifest';
import { describeWithTool, makeTempDir } from '@abota/testkit';
import { formatVerity, saltToHex } from '@abota/verity';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRootfsImage } from './images.js';
import { SimulatedVm } from './vm.js';

interface Product {
  root: TrustRoot;
  rootPath: string;
  releaseKey: SigningKey;
}

async function makeProduct(dir: string): Promise<Product> {
  const rootKey = await generateSigningKey();
  const releaseKey = await generateSigningKey();
  const root = await createTrustRoot({
    version: 1,
    expires: new Date(Date.now() + 365 * 86_400_000),
    rootKeys: [rootKey],
    rootThreshold: 1,
    releaseKeys: [releaseKey],
    releaseThreshold: 1,
  });
  const rootPath = join(dir, 'root.json');
  await writeFile(rootPath, JSON.stringify(await signTrustRoot(root, [rootKey])));
  return { root, rootPath, releaseKey };
}

/** A release directory with an uncompressed rootfs (codec none), signed by `p`. */
async function makeRelease(dir: string, p: Product, version: string): Promise<string> {
  const out = join(dir, `release-${version}`);
  await mkdir(join(out, 'blobs', 'sha256'), { recursive: true });
  const image = join(out, 'image');
  await buildRootfsImage({ path: image, version, sizeBytes: 1024 * 1024, kind: 'raw' });
  const hashPath = join(out, 'tree');
  const f = await formatVerity({
    dataPath: image,
    hashPath,
    params: { algorithm: 'sha256', dataBlockSize: 4096, hashBlockSize: 4096 },
  });
  const { createHash } = await import('node:crypto');
  const put = async (path: string) => {
    const bytes = await readFile(path);
    const hex = createHash('sha256').update(bytes).digest('hex');
    await writeFile(join(out, 'blobs', 'sha256', hex), bytes);
    return { digest: `sha256:${hex}`, sizeBytes: bytes.length };
  };
  const artifact = await put(image);
  const tree = await put(hashPath);
  const now = new Date();
  const manifest: ReleaseManifest = {
    schemaVersion: 1,
    product: 'sim',
    compatible: ['hw'],
    version,
    securityVersion: 1,
    created: formatTimestamp(now),
    expires: formatTimestamp(new Date(now.getTime() + 86_400_000)),
    images: {
      rootfs: {
        sizeBytes: artifact.sizeBytes,
        verity: {
          hashType: f.params.hashType,
          algorithm: 'sha256',
          dataBlockSize: 4096,
          hashBlockSize: 4096,
          dataBlocks: f.params.dataBlocks,
          salt: saltToHex(f.params.salt),
          rootHash: f.rootHash,
          superblock: true,
          ...(f.params.uuid !== undefined ? { uuid: f.params.uuid } : {}),
          hashOffset: 0,
          hashTree: tree,
        },
        artifact: { ...artifact, codec: 'none', uncompressedSizeBytes: artifact.sizeBytes },
      },
    },
  };
  await writeFile(join(out, 'manifest.json'), JSON.stringify(manifest));
  await writeFile(
    join(out, 'manifest.jws'),
    JSON.stringify(await signManifest(manifest, [p.releaseKey], p.root)),
  );
  return out;
}

let dir: string;
let product: Product;
let release: string;

beforeAll(async () => {
  dir = await makeTempDir('abota-sim-');
  product = await makeProduct(dir);
  release = await makeRelease(dir, product, '1.0.0');
});

afterAll(async () => {
  const { rm } = await import('node:fs/promises');
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
const newVm = () =>
  SimulatedVm.createFromRelease({
    dir: join(dir, `vm-${n++}`),
    trustRootPath: product.rootPath,
    product: 'sim',
    hardware: 'hw',
    releaseDir: release,
  });

describe('SimulatedVm', () => {
  it('provisions slot A from a signed release and boots it with TRY set, as grub.cfg does', async () => {
    const vm = await newVm();
    expect(await vm.bootedSlot()).toBe('A');
    expect(await vm.grubenv()).toMatchObject({ ORDER: 'A B', A_OK: '1', A_TRY: '1', B_OK: '0' });
    expect((await vm.bootArtifacts()).A).toMatchObject({ version: '1.0.0', writtenBy: 'provisioning' });
    expect(await readFile(vm.paths.cmdline, 'utf8')).toMatch(/ abota\.slot=A\n$/);
    const config = JSON.parse(await readFile(vm.paths.agentConfig, 'utf8'));
    expect(config.factory).toEqual({ version: '1.0.0', securityVersion: 1 });
  });

  it('refuses to provision from a release signed under another trust root', async () => {
    const otherDir = join(dir, 'other-product');
    await mkdir(otherDir);
    const other = await makeProduct(otherDir);
    const foreign = await makeRelease(dir, other, '9.9.9');
    await expect(
      SimulatedVm.createFromRelease({
        dir: join(dir, 'vm-foreign'),
        trustRootPath: product.rootPath,
        product: 'sim',
        hardware: 'hw',
        releaseDir: foreign,
      }),
    ).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_(THRESHOLD_NOT_MET|SIGNATURE_INVALID)$/) });
  });

  it('counts a slot that fails dm-verity as a failed boot and falls through to the other slot', async () => {
    const vm = await newVm();
    await (await vm.openAgent()).afterBoot(); // the running A is confirmed (markGood)
    await vm.provisionSlot('B', release); // B good and first in ORDER
    await vm.corruptBlock('B', 7);
    const boot = await vm.boot();
    expect(boot.slot).toBe('A');
    expect(boot.failedBoots).toEqual([
      expect.objectContaining({
        slot: 'B',
        code: 'ERR_VERITY_DATA_CORRUPT',
        message: expect.stringMatching(/block 7\b/),
      }),
    ]);
    expect(boot.grubenv).toMatchObject({ B_TRY: '1', A_TRY: '1' });
  });

  it('does not boot a slot without a signed boot artifact, and ends in rescue when no slot boots', async () => {
    const vm = await newVm();
    await vm.corruptBlock('A', 0);
    // B was never written: no kernel for it either.
    await editGrubEnvFile(vm.paths.grubenv, () => [
      { op: 'set', name: 'B_OK', value: '1' },
      { op: 'set', name: 'A_TRY', value: '0' },
    ]);
    const boot = await vm.boot();
    expect(boot.slot).toBe('rescue');
    expect(boot.failedBoots.map((f) => `${f.slot}:${f.code}`)).toEqual([
      'A:ERR_VERITY_DATA_CORRUPT',
      'B:ERR_SIM_NO_BOOT_ARTIFACT',
    ]);
    expect(await vm.bootedSlot()).toBe('rescue');
  });

  it('runs the configured health check against the booted slot', async () => {
    const vm = await newVm();
    const config = JSON.parse(await readFile(vm.paths.agentConfig, 'utf8'));
    const [command, ...args] = config.healthChecks[0].command as string[];
    const run = () => spawnSync(command!, args).status;
    expect(run()).toBe(0);
    await vm.setHealthy('A', false);
    expect(run()).not.toBe(0);
    await vm.setHealthy('A', true);
    expect(run()).toBe(0);
  });

  it('changes the boot id on every boot and clears a pending reboot request', async () => {
    const vm = await newVm();
    const first = await vm.bootId();
    await writeFile(vm.paths.rebootRequest, '');
    expect(await vm.rebootRequested()).toBe(true);
    await vm.boot();
    expect(await vm.bootId()).not.toBe(first);
    expect(await vm.rebootRequested()).toBe(false);
    expect((await vm.bootLog()).length).toBe(2);
  });

  it('refuses to create a VM in a directory that holds something', async () => {
    await expect(
      SimulatedVm.create({ dir, trustRootPath: product.rootPath, product: 'sim', hardware: 'hw' }),
    ).rejects.toMatchObject({ code: 'ERR_SIM_VM_EXISTS' });
  });
});

describeWithTool('grub-editenv', 'grub-common', 'simulated grubenv', () => {
  it('is a grubenv that grub-editenv reads, with the variables GRUB saved at boot', async () => {
    const vm = await newVm();
    const r = spawnSync('grub-editenv', [vm.paths.grubenv, 'list'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout.split('\n').filter(Boolean).sort()).toEqual(
      ['A_OK=1', 'A_TRY=1', 'B_OK=0', 'B_TRY=0', 'ORDER=A B'].sort(),
    );
  });
});

describeWithTool('veritysetup', 'cryptsetup-bin', 'slot verification', () => {
  it('agrees with veritysetup verify on the provisioned slot', async () => {
    const vm = await newVm();
    const rootHash = (await vm.bootArtifacts()).A!.images.rootfs.rootHash;
    const s = vm.paths.slots.A;
    expect(spawnSync('veritysetup', ['verify', s.rootfs, s.rootfsHash, rootHash]).status).toBe(0);
    await vm.corruptBlock('A', 3);
    expect(spawnSync('veritysetup', ['verify', s.rootfs, s.rootfsHash, rootHash]).status).not.toBe(0);
  });
});
