// A/B updates of the full guest (guest/: busybox init, dropbear, node + the bundled agent) under
// QEMU, from a real abota-server on the host reached through the guestfwd. Two VMs share their
// boots between scenarios (CI runs this under TCG on 2 cores):
//   VM 1: factory A → a release whose health check fails on B → back on A, reported failed;
//         → 2.0.0 by delta, QEMU killed while slot B is written → A boots, the agent resumes
//         and completes → B boots through verity, health check passes, committed on the server.
//   VM 2: factory A → 2.0.0 installed into B → bytes of RootFSB changed on the stopped disk →
//         the kernel's dm-verity refuses them, GRUB falls back to A, the agent reports
//         rolled-back; A's partition and Data's content unchanged.
// Measured: time per boot (QEMU start → guest init done), install time, boot-to-commit, the
// agent's peak RSS in the guest (VmHWM printed at shutdown); written to figures.json.
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeWithTool, makeTempDir } from '@abota/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flipBytes, partitionNamed, partitionSha256 } from './disk-bytes.js';
import { sshRun, sshWhenUp } from './guest-ssh.js';
import { agentPeaksKiB, BOOT_TIMEOUT_MS, bootGuest, secondsToInit, slotBooted } from './guest-vm.js';
import { freePort, type Vm } from './qemu.js';
import { type FactoryDisk, UpdateFleet } from './update-fleet.js';

const INSTALL_TIMEOUT_MS = 900_000;
const MARKER = '/etc/abota-test-marker';

interface Figures {
  bootSeconds: number[];
  installSeconds: Record<string, number>;
  bootToCommitSeconds?: number;
  agentPeakKiB: number[];
}

describeWithTool('qemu-system-x86_64', 'qemu-system-x86', 'A/B updates of the full guest', () => {
  let fleet: UpdateFleet;
  let work: string;
  /** 1.1.0 (its health check fails), then 2.0.0: built in the background while VM 1 boots. */
  let unhealthy: Promise<unknown>;
  let update: Promise<unknown>;
  const figures: Figures = { bootSeconds: [], installSeconds: {}, agentPeakKiB: [] };

  const bootsPerVm = new Map<string, number>();
  /** Devices of earlier VMs: a new VM's device is the one not in here. */
  const seenDevices = new Set<string>();

  /** Boot `disk`, check the slot GRUB picked, record the boot time. */
  async function boot(
    disk: FactoryDisk,
    name: string,
    sshPort: number,
    allowReboot: boolean,
    slot: 'A' | 'B',
    untilInit = true,
  ) {
    const n = (bootsPerVm.get(name) ?? 0) + 1;
    bootsPerVm.set(name, n);
    const vm = await bootGuest({
      disk: disk.path,
      dir: join(work, 'vms', name, `boot-${n}`),
      serverPort: fleet.server.port,
      sshPort,
      allowReboot,
    });
    expect(await slotBooted(vm)).toBe(slot);
    // A boot that is to fail (a changed slot) never reaches init: GRUB's fallback would.
    if (untilInit) figures.bootSeconds.push(Math.round(await secondsToInit(vm)));
    return vm;
  }

  /** Wait for the agent's reboot (QEMU ends: -no-reboot) and keep its peak memory figure. */
  async function waitForAgentReboot(vm: Vm): Promise<void> {
    await vm.waitExit(INSTALL_TIMEOUT_MS);
    figures.agentPeakKiB.push(...agentPeaksKiB(vm.output));
  }

  beforeAll(async () => {
    work = await makeTempDir('abota-vm-updates-');
    fleet = await UpdateFleet.create(work);
    await fleet.release({ version: '1.0.0' });
    // 1.1.0 and 2.0.0 are built one after the other while VM 1 boots (TCG takes one core); each
    // scenario waits for its own. Their failures are reported by the scenario that awaits.
    unhealthy = fleet.release({ version: '1.1.0', healthy: false, deltaFrom: ['1.0.0'] });
    update = unhealthy.then(() => fleet.release({ version: '2.0.0', deltaFrom: ['1.0.0'] }));
    unhealthy.catch(() => {});
    update.catch(() => {});
  }, 900_000);

  afterAll(async () => {
    await fleet?.close();
    await writeFile(join(work, 'figures.json'), `${JSON.stringify(figures, null, 2)}\n`);
    console.log(`VM update figures (${work}/figures.json): ${JSON.stringify(figures)}`);
    if (process.env['ABOTA_VM_KEEP'] !== '1') await rm(work, { recursive: true, force: true });
  });

  describe('VM 1: failing health check, power cut while writing B, then commit', () => {
    let disk: FactoryDisk;
    let vm: Vm;
    let sshPort: number;
    let deviceId: string;
    let cutInstallId: string;

    afterAll(async () => {
      await vm?.stop();
    });

    it('rolls a release whose health check fails on B back to A and reports it failed; Data keeps its files', async () => {
      disk = await fleet.factoryDisk('vm1', '1.0.0');
      sshPort = await freePort();
      vm = await boot(disk, 'vm1', sshPort, false, 'A');
      const factory = await fleet.waitForDevice(
        (d) => !seenDevices.has(d.id) && d.currentVersion === '1.0.0' && d.bootedSlot === 'A',
        BOOT_TIMEOUT_MS,
      );
      deviceId = factory.id;
      seenDevices.add(deviceId);
      await sshWhenUp(fleet.sshKey, sshPort, `echo vm1 > ${MARKER} && sync`);

      const started = performance.now();
      await unhealthy;
      await fleet.rollout('1.1.0', deviceId);
      await waitForAgentReboot(vm);
      figures.installSeconds['1.1.0'] = Math.round((performance.now() - started) / 1000);

      // The trial boot of B fails its health check; the agent reboots into A inside this QEMU.
      vm = await boot(disk, 'vm1', sshPort, true, 'B');
      const failed = await vm.waitFor(
        /health check: this build is made to fail its health check/,
        BOOT_TIMEOUT_MS,
      );
      expect(await slotBooted(vm, failed.index + failed[0].length)).toBe('A');
      const row = await fleet.waitForDevice(
        (d) => d.installState === 'failed' && d.bootedSlot === 'A',
        BOOT_TIMEOUT_MS,
        deviceId,
      );
      expect(row.currentVersion).toBe('1.0.0');
      const inGuest = await sshWhenUp(
        fleet.sshKey,
        sshPort,
        `cat ${MARKER} /etc/abota-release; cat /proc/cmdline`,
      );
      expect(inGuest.stdout).toMatch(/^vm1\nVERSION=1\.0\.0\n/);
      expect(inGuest.stdout).toMatch(/abota\.slot=A/);
    });

    it('QEMU killed while slot B is written: the VM boots A and the agent resumes and completes the install', async () => {
      await update;
      await fleet.rollout('2.0.0', deviceId);
      // Power cut (QEMU killed) as soon as the journal says the images are being written.
      const deadline = performance.now() + INSTALL_TIMEOUT_MS;
      let journal: { installId: string; version: string; phase: string } | undefined;
      while (performance.now() < deadline) {
        const r = await sshRun(fleet.sshKey, sshPort, 'cat /var/lib/abota/install-journal.json 2>/dev/null');
        journal = r.code === 0 && r.stdout.startsWith('{') ? JSON.parse(r.stdout) : undefined;
        if (journal?.version !== '2.0.0') continue;
        if (journal.phase === 'writing') break;
        expect(journal.phase).toBe('verified'); // written or later: too late to cut the power
      }
      await vm.stop();
      expect(journal?.phase).toBe('writing');
      cutInstallId = journal!.installId;

      vm = await boot(disk, 'vm1', sshPort, false, 'A');
      const after = await sshWhenUp(fleet.sshKey, sshPort, 'cat /var/lib/abota/install-journal.json');
      expect(JSON.parse(after.stdout)).toMatchObject({ installId: cutInstallId, version: '2.0.0' });
      const started = performance.now();
      await waitForAgentReboot(vm);
      figures.installSeconds['2.0.0 (resumed)'] = Math.round((performance.now() - started) / 1000);
    });

    it('boots B through dm-verity, passes the health check, and the server lists the device committed on 2.0.0', async () => {
      vm = await boot(disk, 'vm1', sshPort, false, 'B');
      const row = await fleet.waitForDevice(
        (d) => d.currentVersion === '2.0.0' && d.installState === 'committed' && d.bootedSlot === 'B',
        BOOT_TIMEOUT_MS,
        deviceId,
      );
      figures.bootToCommitSeconds = Math.round((performance.now() - vm.startedAt) / 1000);
      expect(row.id).toBe(deviceId);
      const inGuest = await sshWhenUp(
        fleet.sshKey,
        sshPort,
        `cat ${MARKER} /etc/abota-release /usr/share/abota/release-notes; grep ' / ' /proc/mounts; cat /proc/cmdline`,
      );
      expect(inGuest.stdout).toMatch(/^vm1\nVERSION=2\.0\.0\nguest release 2\.0\.0\n/);
      expect(inGuest.stdout).toMatch(/^\/dev\/mapper\/abota-root \/ erofs ro/m);
      expect(inGuest.stdout).toMatch(
        new RegExp(`abota\\.roothash=${fleet.releases.get('2.0.0')!.rootHash}.* abota\\.slot=B`),
      );
    });
  });

  describe('VM 2: slot B changed on the disk between install and reboot', () => {
    let vm: Vm | undefined;

    afterAll(async () => {
      await vm?.stop();
    });

    it("the kernel's dm-verity refuses the changed blocks, GRUB falls back to A, the agent reports rolled-back; A and Data unchanged", async () => {
      const disk = await fleet.factoryDisk('vm2', '1.0.0');
      const sshPort = await freePort();
      vm = await boot(disk, 'vm2', sshPort, false, 'A');
      const { id } = await fleet.waitForDevice(
        (d) => !seenDevices.has(d.id) && d.currentVersion === '1.0.0' && d.bootedSlot === 'A',
        BOOT_TIMEOUT_MS,
      );
      await sshWhenUp(fleet.sshKey, sshPort, `echo vm2 > ${MARKER} && sync`);
      await update;
      await fleet.rollout('2.0.0', id);
      await waitForAgentReboot(vm);

      const rootfsA = partitionNamed(disk.partitions, 'RootFSA');
      const rootfsB = partitionNamed(disk.partitions, 'RootFSB');
      const aBefore = await partitionSha256(disk.path, rootfsA);
      // The erofs superblock (bytes 1024..) and the first blocks: read by every mount.
      await flipBytes(disk.path, rootfsB, 1024, 64);
      await flipBytes(disk.path, rootfsB, 8192, 4096);

      vm = await boot(disk, 'vm2', sshPort, true, 'B', false);
      const refused = await vm.waitFor(
        /device-mapper: verity: .*data block \d+ is corrupted/,
        BOOT_TIMEOUT_MS,
      );
      expect(await slotBooted(vm, refused.index + refused[0].length)).toBe('A');
      const row = await fleet.waitForDevice(
        (d) => d.installState === 'rolled-back' && d.bootedSlot === 'A',
        BOOT_TIMEOUT_MS,
        id,
      );
      expect(row.currentVersion).toBe('1.0.0');
      const inGuest = await sshWhenUp(fleet.sshKey, sshPort, `cat ${MARKER} /etc/abota-release && sync`);
      expect(inGuest.stdout).toBe('vm2\nVERSION=1.0.0\n');
      await vm.stop();
      vm = undefined;
      expect(await partitionSha256(disk.path, rootfsA)).toBe(aBefore);
    });
  });
});
