// GRUBless boot (issue 18) through systemd-boot: the full guest (guest/) on a disk made by
// `abota image disk --boot uefi --loader systemd-boot`, its agent in the uefi backend's
// systemd-boot mode, under OVMF with Secure Boot enforced (the UKIs and systemd-boot signed with
// a test key the varstore enrols). One VM goes through every scenario in sequence:
//   1. factory boot: the firmware starts systemd-boot ("Linux Boot Manager"), which boots
//      EFI/Linux/abota-a.efi; the agent registers on A and makes it LoaderEntryDefault.
//   2. a bad B: 2.0.0 installed into B (the agent copies B's UKI from BootEFIB onto the ESP as
//      abota-b+1.efi and arms LoaderEntryOneShot), then RootFSB changed on the stopped disk: B's
//      UKI boots but never reaches init (dm-verity refuses the root), systemd-boot has counted
//      the try down (abota-b+0-1.efi), so the default A boots and the agent reports rolled back.
//   3. a B whose health check fails (1.1.0, built while the VM boots): B boots once through
//      systemd-boot, the agent rejects it (abota-b+0-1.efi left, no tries) and reboots; the
//      default A boots and the server lists the device failed on 1.0.0.
//   4. 2.0.0 again: B boots (LoaderEntrySelected abota-b+1.efi), passes its health check, the
//      agent blesses it (abota-b.efi, LoaderEntryDefault) and the server lists it committed.
// The ESP's file names are read from the host (mtools on the disk), the Loader* variables in the
// guest (efivarfs): the state systemd-boot and `bootctl` see.
import { spawnSync } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describeWithTool, makeTempDir } from '@abota/testkit';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { flipBytes, partitionNamed } from './disk-bytes.js';
import { sshWhenUp } from './guest-ssh.js';
import { BOOT_TIMEOUT_MS, secondsToInit } from './guest-vm.js';
import { freePort, type Vm } from './qemu.js';
import { type FactoryDisk, UpdateFleet } from './update-fleet.js';

const INSTALL_TIMEOUT_MS = 900_000;
const LOADER_GUID = '4a67b082-0a4c-41cf-b6c7-440b29bb8c4f';

/** The slot the initramfs resolved from the partition systemd-stub was loaded from (after `from`). */
async function slotBooted(vm: Vm, from = 0): Promise<{ slot: 'A' | 'B'; index: number }> {
  const m = await vm.waitFor(/abota-init: booted from partition (\S+): slot ([AB])/, BOOT_TIMEOUT_MS, from);
  return { slot: m[2] as 'A' | 'B', index: m.index + m[0].length };
}

/** The ESP's EFI/Linux as the host sees it on the disk (mtools, no mount): systemd-boot's entries. */
function espEntries(disk: FactoryDisk): string[] {
  const esp = partitionNamed(disk.partitions, 'ESP');
  const r = spawnSync('mdir', ['-b', '-i', `${disk.path}@@${esp.offsetBytes}`, '::/EFI/Linux'], {
    encoding: 'utf8',
    env: { ...process.env, MTOOLS_SKIP_CHECK: '1' },
  });
  if (r.status !== 0) throw new Error(`mdir: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .map((l) => l.trim().replace(/^::\/EFI\/Linux\//, ''))
    .filter((l) => l !== '')
    .sort();
}

/** One FAT file out of a partition of the disk (mtools). */
async function fatFile(disk: FactoryDisk, part: string, path: string, out: string): Promise<Buffer> {
  const p = partitionNamed(disk.partitions, part);
  const r = spawnSync('mcopy', ['-o', '-i', `${disk.path}@@${p.offsetBytes}`, `::${path}`, out], {
    env: { ...process.env, MTOOLS_SKIP_CHECK: '1' },
  });
  if (r.status !== 0) throw new Error(`mcopy ${path}: ${r.stderr.toString()}`);
  return readFile(out);
}

describeWithTool('qemu-system-x86_64', 'qemu-system-x86', 'GRUBless updates through systemd-boot', () => {
  let work: string;
  let fleet: UpdateFleet;
  let disk: FactoryDisk;
  let vm: Vm | undefined;
  let sshPort: number;
  let deviceId: string;
  /** 2.0.0, then 1.1.0 (whose health check fails): built in the background while the VM boots. */
  let update: Promise<unknown>;
  let unhealthy: Promise<unknown>;
  let boots = 0;
  const figures: Record<string, number> = {};
  const started = performance.now();

  async function boot(allowReboot: boolean): Promise<Vm> {
    boots += 1;
    vm = await fleet.bootDisk(disk, join(work, 'vm', `boot-${boots}`), sshPort, allowReboot);
    return vm;
  }

  /** The Loader* variables systemd-boot and the agent wrote, read in the guest (efivarfs). */
  async function loaderVariables(): Promise<Record<string, string>> {
    const names = ['LoaderEntrySelected', 'LoaderEntryDefault', 'LoaderEntryOneShot'];
    const script = names
      .map(
        (n) =>
          `printf '${n}='; f=/sys/firmware/efi/efivars/${n}-${LOADER_GUID}; [ -e $f ] && tail -c +5 $f | tr -d '\\000'; echo`,
      )
      .join('; ');
    const r = await sshWhenUp(fleet.sshKey, sshPort, script);
    return Object.fromEntries(
      r.stdout
        .trim()
        .split('\n')
        .map((l) => l.split('=') as [string, string]),
    );
  }

  /**
   * After a rejected B: the server lists the device `installState` on A with 1.0.0, A is what
   * systemd-boot booted and the default, nothing armed, and B's entry has no tries left
   * (systemd-boot renamed it +1 → +0-1 before booting it): never chosen again.
   */
  async function expectBackOnA(installState: 'rolled-back' | 'failed'): Promise<void> {
    const row = await fleet.waitForDevice(
      (d) => d.installState === installState && d.bootedSlot === 'A',
      BOOT_TIMEOUT_MS,
      deviceId,
    );
    expect(row.currentVersion).toBe('1.0.0');
    expect(await loaderVariables()).toMatchObject({
      LoaderEntrySelected: 'abota-a.efi',
      LoaderEntryDefault: 'abota-a.efi',
      LoaderEntryOneShot: '',
    });
    const ls = await sshWhenUp(fleet.sshKey, sshPort, 'sync; ls /boot/efi/EFI/Linux');
    expect(ls.stdout.trim().split('\n').sort()).toEqual(['abota-a.efi', 'abota-b+0-1.efi']);
  }

  beforeAll(async () => {
    work = await makeTempDir('abota-vm-sdboot-');
    fleet = await UpdateFleet.create(work, { uefi: true, loader: 'systemd-boot', secureBoot: true });
    let t = performance.now();
    await fleet.release({ version: '1.0.0' });
    figures['releaseSeconds'] = Math.round((performance.now() - t) / 1000);
    t = performance.now();
    disk = await fleet.factoryDisk('vm', '1.0.0');
    figures['diskSeconds'] = Math.round((performance.now() - t) / 1000);
    // The later releases are built one after the other while the VM boots (TCG takes one core);
    // each scenario waits for its own. Their failures are reported by the scenario that awaits.
    update = fleet.release({ version: '2.0.0' });
    unhealthy = update.then(() => fleet.release({ version: '1.1.0', healthy: false, deltaFrom: ['1.0.0'] }));
    update.catch(() => {});
    unhealthy.catch(() => {});
    sshPort = await freePort();
  }, 1_800_000);

  afterAll(async () => {
    await vm?.stop();
    await fleet?.close();
    figures['totalSeconds'] = Math.round((performance.now() - started) / 1000);
    console.log(`systemd-boot VM figures (TCG): ${JSON.stringify(figures)}`);
    if (process.env['ABOTA_VM_KEEP'] !== '1' && work !== undefined)
      await rm(work, { recursive: true, force: true });
  });

  it('factory boot: Secure Boot firmware starts signed systemd-boot, which boots abota-a.efi; the agent registers on A and makes it the default', async () => {
    expect(espEntries(disk)).toEqual(['abota-a.efi']);
    const v = await boot(false);
    const a = await slotBooted(v);
    expect(a.slot).toBe('A');
    figures['factoryBootSeconds'] = Math.round(await secondsToInit(v));
    expect(v.output).toContain('BdsDxe: starting Boot0001 "Linux Boot Manager"');
    expect(v.output).toMatch(/secureboot: Secure boot enabled/);
    const row = await fleet.waitForDevice(
      (d) => d.currentVersion === '1.0.0' && d.bootedSlot === 'A',
      BOOT_TIMEOUT_MS,
    );
    deviceId = row.id;
    const inGuest = await sshWhenUp(fleet.sshKey, sshPort, 'cat /run/abota/cmdline; ls /boot/efi/EFI/Linux');
    expect(inGuest.stdout).toContain('abota.slot=A ');
    expect(inGuest.stdout).toMatch(/^abota-a\.efi$/m);
    // systemd-boot exported the entry it booted; the agent's markGood made it the default.
    await expect.poll(loaderVariables, { timeout: 120_000 }).toMatchObject({
      LoaderEntrySelected: 'abota-a.efi',
      LoaderEntryDefault: 'abota-a.efi',
    });
  });

  it('a B that never reaches init (RootFSB changed after the install): systemd-boot counts its one try down, the default A boots, the agent reports rolled back', async () => {
    await update;
    const t = performance.now();
    await fleet.rollout('2.0.0', deviceId);
    await vm!.waitExit(INSTALL_TIMEOUT_MS);
    figures['installSeconds'] = Math.round((performance.now() - t) / 1000);
    // The agent copied B's UKI out of BootEFIB onto the ESP, byte for byte, and armed it.
    expect(espEntries(disk)).toEqual(['abota-a.efi', 'abota-b+1.efi']);
    const onEsp = await fatFile(disk, 'ESP', '/EFI/Linux/abota-b+1.efi', join(work, 'esp-b.efi'));
    const inSlot = await fatFile(disk, 'BootEFIB', '/EFI/BOOT/BOOTX64.EFI', join(work, 'slot-b.efi'));
    expect(onEsp.length).toBeGreaterThan(1024 * 1024);
    expect(onEsp.equals(inSlot)).toBe(true);

    const rootfsB = partitionNamed(disk.partitions, 'RootFSB');
    await flipBytes(disk.path, rootfsB, 1024, 64);
    await flipBytes(disk.path, rootfsB, 8192, 4096);
    const v = await boot(true);
    const b = await slotBooted(v);
    expect(b.slot).toBe('B');
    const a = await slotBooted(v, b.index);
    expect(a.slot).toBe('A');
    await expectBackOnA('rolled-back');
  });

  it('a B whose health check fails: systemd-boot boots it once, the agent rejects it and reboots, the default A boots, reported failed', async () => {
    await unhealthy;
    const v = vm!;
    const from = v.mark();
    await fleet.rollout('1.1.0', deviceId);
    const failed = await v.waitFor(
      /health check: this build is made to fail its health check/,
      INSTALL_TIMEOUT_MS,
      from,
    );
    // waitFor's index counts from `from`.
    const failedEnd = from + failed.index + failed[0].length;
    expect(v.output.slice(from, failedEnd)).toMatch(/abota-init: booted from partition \S+: slot B/);
    const a = await slotBooted(v, failedEnd);
    expect(a.slot).toBe('A');
    await expectBackOnA('failed');
  });

  it('A→B: the agent copies the UKI again, systemd-boot boots B once, the health check passes, the agent blesses abota-b.efi as the default and reports committed', async () => {
    const t = performance.now();
    await fleet.rollout('2.0.0', deviceId);
    const v = vm!;
    const from = v.mark();
    const b = await slotBooted(v, from);
    expect(b.slot).toBe('B');
    const row = await fleet.waitForDevice(
      (d) => d.currentVersion === '2.0.0' && d.installState === 'committed' && d.bootedSlot === 'B',
      INSTALL_TIMEOUT_MS,
      deviceId,
    );
    figures['installToCommitSeconds'] = Math.round((performance.now() - t) / 1000);
    expect(row.id).toBe(deviceId);
    const inGuest = await sshWhenUp(
      fleet.sshKey,
      sshPort,
      'cat /etc/abota-release /run/abota/cmdline; sync; ls /boot/efi/EFI/Linux',
    );
    expect(inGuest.stdout).toMatch(/^VERSION=2\.0\.0\n/);
    expect(inGuest.stdout).toContain(`abota.roothash=${fleet.releases.get('2.0.0')!.rootHash}`);
    expect(inGuest.stdout).toContain('abota.slot=B ');
    expect(inGuest.stdout).toMatch(/^abota-a\.efi\nabota-b\.efi\n?$/m);
    expect(await loaderVariables()).toMatchObject({
      LoaderEntrySelected: 'abota-b+1.efi',
      LoaderEntryDefault: 'abota-b.efi',
      LoaderEntryOneShot: '',
    });
    await vm!.stop();
    vm = undefined;
    expect(espEntries(disk)).toEqual(['abota-a.efi', 'abota-b.efi']);
  });
});
