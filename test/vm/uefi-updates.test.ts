// GRUBless A/B updates of the full guest (guest/: busybox init, dropbear, node + the bundled
// agent), firmware-only path (issue 18): no bootloader, each slot's signed UKI in BootEFIA/B,
// OVMF with Secure Boot enforced and the fleet's key enrolled, one Boot#### per slot, the agent
// in the uefi backend's firmware mode (BootNext arms a trial, BootOrder changes at commit, the
// AbotaTrial counter abandons a slot that does not come up). One VM, its boots shared:
//   factory A → a release whose health check fails on B → back on A, reported failed
//   → 2.0.0 by delta into B, the agent SIGKILLed while it arms the trial and QEMU killed right
//     after → a verified slot boots, the agent completes → B commits (BootOrder 0002 first)
//   → slot A (the other slot now) written with 2.0.1 and changed on the stopped disk → dm-verity
//     refuses it, the firmware falls back to B, the counter abandons A, reported rolled-back.
// efibootmgr in the guest reads the same variables: its view must match the backend's.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ABOTA_VENDOR_GUID, EFI_GLOBAL_GUID } from '@abota/client';
import { describeWithTool, makeTempDir } from '@abota/testkit';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { flipBytes, partitionNamed, partitionSha256 } from './disk-bytes.js';
import { type SshResult, sshRun, sshWhenUp } from './guest-ssh.js';
import { firmwareSlotBooted, secondsToInit } from './guest-vm.js';
import { freePort, type Vm } from './qemu.js';
import { type FactoryDisk, type ReleaseSpec, UpdateFleet } from './update-fleet.js';

const INSTALL_TIMEOUT_MS = 900_000;
/** OVMF with SMM checks each 18 MiB UKI's signature under TCG: minutes when the host is loaded. */
const BOOT_TIMEOUT_MS = 600_000;
/** One scenario: an install and up to three boots of OVMF with SMM under TCG. */
const TEST_TIMEOUT_MS = 1_500_000;
const MARKER = '/etc/abota-test-marker';
const EFIVARS = '/sys/firmware/efi/efivars';
const TRIAL_VAR = `${EFIVARS}/AbotaTrial-${ABOTA_VENDOR_GUID}`;
const BOOT_NEXT_VAR = `${EFIVARS}/BootNext-${EFI_GLOBAL_GUID}`;
const LATER_RELEASES: ReleaseSpec[] = [
  { version: '1.1.0', healthy: false, deltaFrom: ['1.0.0'] },
  { version: '2.0.0', deltaFrom: ['1.0.0'] },
  { version: '2.0.1', deltaFrom: ['2.0.0'] },
];

/** The boot variables as efibootmgr prints them, and what the firmware boots next from them. */
interface EfibootmgrView {
  bootCurrent?: string;
  bootNext?: string;
  bootOrder: string[];
  /** Boot#### (4 hex digits) → description, '*' entries active. */
  entries: Map<string, { description: string; active: boolean }>;
}

function parseEfibootmgr(out: string): EfibootmgrView {
  const view: EfibootmgrView = { bootOrder: [], entries: new Map() };
  for (const line of out.split('\n')) {
    const kv = /^(BootCurrent|BootNext|BootOrder): (\S+)/.exec(line);
    if (kv?.[1] === 'BootCurrent') view.bootCurrent = kv[2]!;
    else if (kv?.[1] === 'BootNext') view.bootNext = kv[2]!;
    else if (kv?.[1] === 'BootOrder') view.bootOrder = kv[2]!.split(',');
    const e = /^Boot([0-9A-F]{4})(\*?) (.*?)(?:\t|$)/.exec(line);
    if (e !== null) view.entries.set(e[1]!, { description: e[3]!.trim(), active: e[2] === '*' });
  }
  return view;
}

/** The slot a Boot#### number names in efibootmgr's view ("abota A"/"abota B"), else the number. */
function slotOf(view: EfibootmgrView, n: string | undefined): string | undefined {
  if (n === undefined) return undefined;
  return /^abota ([AB])$/.exec(view.entries.get(n)?.description ?? '')?.[1] ?? n;
}

/** UEFI's choice: BootNext, else the first active entry of BootOrder. */
function firmwareNext(view: EfibootmgrView): string | undefined {
  if (view.bootNext !== undefined) return slotOf(view, view.bootNext);
  return slotOf(
    view,
    view.bootOrder.find((n) => view.entries.get(n)?.active === true),
  );
}

describeWithTool(
  'qemu-system-x86_64',
  'qemu-system-x86',
  'GRUBless A/B updates of the full guest: firmware-only, Secure Boot',
  () => {
    let work: string;
    let fleet: UpdateFleet;
    let disk: FactoryDisk;
    let vm: Vm | undefined;
    let sshPort: number;
    let deviceId: string;
    let boots = 0;
    const figures: Record<string, number | number[] | string> = { bootSeconds: [] };
    /** Built (and pushed to the server) in the background, in order. */
    const releases = new Map<string, Promise<unknown>>();
    const started = performance.now();

    /** Start QEMU on the factory disk and its varstore (Secure Boot firmware). */
    async function boot(allowReboot: boolean): Promise<Vm> {
      boots += 1;
      vm = await fleet.bootDisk(disk, join(work, 'vm', `boot-${boots}`), sshPort, allowReboot);
      return vm;
    }

    /** The slot the firmware starts after `from`, and the seconds until that boot's init is done. */
    async function nextBoot(v: Vm, from: number): Promise<'A' | 'B'> {
      const slot = await firmwareSlotBooted(v, from, BOOT_TIMEOUT_MS);
      const t = performance.now();
      await secondsToInit(v, from, BOOT_TIMEOUT_MS);
      (figures['bootSeconds'] as number[]).push(Math.round((performance.now() - t) / 1000));
      return slot;
    }

    const ssh = (command: string): Promise<SshResult> => sshWhenUp(fleet.sshKey, sshPort, command);

    /** efibootmgr's view next to the agent's (abota-agent status): booted and next slot agree. */
    async function compareWithEfibootmgr(): Promise<{
      view: EfibootmgrView;
      status: Record<string, unknown>;
    }> {
      const r = await ssh('efibootmgr; echo @@; abota-agent status --json');
      const [efi, json] = r.stdout.split('@@\n');
      const view = parseEfibootmgr(efi!);
      const status = JSON.parse(json!) as Record<string, unknown>;
      expect(slotOf(view, view.bootCurrent)).toBe(status['bootedSlot']);
      expect(firmwareNext(view)).toBe(status['primarySlot']);
      expect(view.entries.get('0001')).toEqual({ description: 'abota A', active: true });
      expect(view.entries.get('0002')).toEqual({ description: 'abota B', active: true });
      return { view, status };
    }

    beforeAll(async () => {
      work = await makeTempDir('abota-vm-uefi-updates-');
      fleet = await UpdateFleet.create(work, { uefi: true, secureBoot: true });
      const t = performance.now();
      await fleet.release({ version: '1.0.0' });
      disk = await fleet.factoryDisk('vm', '1.0.0');
      figures['factorySeconds'] = Math.round((performance.now() - t) / 1000);
      // The later releases are built while the VM boots (QEMU under TCG takes one core): each
      // scenario waits for the release it rolls out.
      let chain: Promise<unknown> = Promise.resolve();
      for (const spec of LATER_RELEASES) {
        chain = chain.then(async () => {
          const s = performance.now();
          await fleet.release(spec);
          figures[`release ${spec.version} (s)`] = Math.round((performance.now() - s) / 1000);
        });
        const built = chain;
        built.catch(() => undefined); // awaited (and reported) by the scenario that needs it
        releases.set(spec.version, built);
      }
      expect(disk.vars).toBeDefined();
      sshPort = await freePort();
    }, 1_800_000);

    afterAll(async () => {
      await vm?.stop();
      await fleet?.close();
      figures['fileSeconds'] = Math.round((performance.now() - started) / 1000);
      console.log(`GRUBless update figures (TCG): ${JSON.stringify(figures)}`);
      if (process.env['ABOTA_VM_KEEP'] !== '1' && work !== undefined)
        await rm(work, { recursive: true, force: true });
    }, TEST_TIMEOUT_MS);

    it(
      'factory boot: Secure Boot enforced, Boot0001 starts the signed UKI of A, the agent registers with efivarfs read-write',
      async () => {
        const v = await boot(true);
        expect(await nextBoot(v, 0)).toBe('A');
        expect(v.output).toMatch(/secureboot: Secure boot enabled/);
        const row = await fleet.waitForDevice(
          (d) => d.currentVersion === '1.0.0' && d.bootedSlot === 'A',
          BOOT_TIMEOUT_MS,
        );
        deviceId = row.id;
        const r = await ssh(
          `echo uefi > ${MARKER} && sync; grep ' ${EFIVARS} ' /proc/mounts; cat /run/abota/cmdline`,
        );
        expect(r.stdout).toMatch(new RegExp(`^efivarfs ${EFIVARS} efivarfs rw[,\\s]`, 'm'));
        expect(r.stdout).toMatch(
          new RegExp(`abota\\.roothash=${fleet.releases.get('1.0.0')!.rootHash} .*abota\\.slot=A`),
        );
        const { view } = await compareWithEfibootmgr();
        expect(view.bootCurrent).toBe('0001');
        expect(view.bootOrder.slice(0, 2)).toEqual(['0001', '0002']);
      },
      TEST_TIMEOUT_MS,
    );

    it(
      'a release whose health check fails on B: BootNext boots B once, the agent rejects it, A comes back; reported failed',
      async () => {
        const v = vm!;
        const from = v.mark();
        await releases.get('1.1.0');
        const t = performance.now();
        await fleet.rollout('1.1.0', deviceId);
        expect(await firmwareSlotBooted(v, from, INSTALL_TIMEOUT_MS)).toBe('B');
        figures['install 1.1.0 (s)'] = Math.round((performance.now() - t) / 1000);
        const failed = await v.waitFor(
          /health check: this build is made to fail its health check/,
          BOOT_TIMEOUT_MS,
          from,
        );
        expect(await nextBoot(v, failed.index + from)).toBe('A');
        const row = await fleet.waitForDevice(
          (d) => d.installState === 'failed' && d.bootedSlot === 'A',
          BOOT_TIMEOUT_MS,
          deviceId,
        );
        expect(row.currentVersion).toBe('1.0.0');
        const r = await ssh(`cat ${MARKER} /etc/abota-release; ls ${TRIAL_VAR} ${BOOT_NEXT_VAR} 2>&1; true`);
        expect(r.stdout).toMatch(/^uefi\nVERSION=1\.0\.0\n/);
        // No trial left armed, no counter left behind; B out of BootOrder (rejected).
        expect(r.stdout).toMatch(/AbotaTrial-\S+: No such file/);
        expect(r.stdout).toMatch(/BootNext-\S+: No such file/);
        const { view } = await compareWithEfibootmgr();
        expect(view.bootOrder[0]).toBe('0001');
        expect(view.bootOrder).not.toContain('0002');
      },
      TEST_TIMEOUT_MS,
    );

    it(
      '2.0.0: the agent SIGKILLed while it arms the trial, QEMU killed right after; each variable is old or new, a verified slot boots and B commits',
      async () => {
        // In the guest: as soon as AbotaTrial appears (the first of the two writes that arm the
        // trial: the counter, then BootNext), stop the agent's service and SIGKILL the agent, then
        // show both variables. The test then cuts the power (QEMU killed).
        const watcher = sshRun(
          fleet.sshKey,
          sshPort,
          `while [ ! -s ${TRIAL_VAR} ]; do usleep 20000; done
         for p in $(pidof agent-service); do kill -STOP $p; done
         kill -KILL $(pidof node)
         echo "trial: $(od -An -tx1 ${TRIAL_VAR})"
         if [ -s ${BOOT_NEXT_VAR} ]; then echo "next: $(od -An -tx1 ${BOOT_NEXT_VAR})"; else echo "next: none"; fi`,
          INSTALL_TIMEOUT_MS,
        );
        await releases.get('2.0.0');
        const t = performance.now();
        await fleet.rollout('2.0.0', deviceId);
        const killed = await watcher;
        await vm!.stop();
        figures['install 2.0.0 until the kill (s)'] = Math.round((performance.now() - t) / 1000);
        expect(killed.code, killed.stderr).toBe(0);
        // The counter: attributes NV|BS|RT, version 1, slot 'B', no tries left after this boot.
        expect(killed.stdout).toMatch(/^trial:\s+07 00 00 00 01 42 00\s*$/m);
        // BootNext: none (the old value) or Boot0002 (the new one), never anything else.
        const next = /^next: (.*)$/m.exec(killed.stdout)?.[1]?.trim();
        expect(['none', '07 00 00 00 02 00']).toContain(next);
        figures['BootNext at the kill'] = next === 'none' ? 'not yet written' : 'written';

        // Power back: the firmware boots B if BootNext was written, else A, whose agent arms again.
        const v = await boot(true);
        const first = await nextBoot(v, 0);
        expect(first).toBe(next === 'none' ? 'A' : 'B');
        const row = await fleet.waitForDevice(
          (d) => d.currentVersion === '2.0.0' && d.installState === 'committed' && d.bootedSlot === 'B',
          INSTALL_TIMEOUT_MS,
          deviceId,
        );
        expect(row.id).toBe(deviceId);
        if (first === 'A') expect(v.output).toMatch(/BdsDxe: starting Boot0002 "abota B"/);
        const r = await ssh(
          `cat ${MARKER} /etc/abota-release /usr/share/abota/release-notes; grep ' / ' /proc/mounts; cat /run/abota/cmdline; ls ${TRIAL_VAR} ${BOOT_NEXT_VAR} 2>&1; true`,
        );
        expect(r.stdout).toMatch(/^uefi\nVERSION=2\.0\.0\nguest release 2\.0\.0\n/);
        expect(r.stdout).toMatch(/^\/dev\/mapper\/abota-root \/ erofs ro/m);
        expect(r.stdout).toMatch(
          new RegExp(`abota\\.roothash=${fleet.releases.get('2.0.0')!.rootHash} .*abota\\.slot=B`),
        );
        expect(r.stdout).toMatch(/AbotaTrial-\S+: No such file/);
        expect(r.stdout).toMatch(/BootNext-\S+: No such file/);
        // Committed: Boot0002 first in BootOrder, A kept after it as the fallback.
        const { view } = await compareWithEfibootmgr();
        expect(view.bootCurrent).toBe('0002');
        expect(view.bootOrder.slice(0, 2)).toEqual(['0002', '0001']);
      },
      TEST_TIMEOUT_MS,
    );

    it(
      'slot A written with 2.0.1 and changed on the stopped disk: dm-verity refuses it, the firmware falls back to B, the counter abandons A; reported rolled-back, B unchanged',
      async () => {
        // The agent reboots after the install: this QEMU ends there (-no-reboot) so the disk can be edited.
        await vm!.stop();
        const v = await boot(false);
        expect(await nextBoot(v, 0)).toBe('B');
        await sshWhenUp(fleet.sshKey, sshPort, 'true');
        await releases.get('2.0.1');
        await fleet.rollout('2.0.1', deviceId);
        await v.waitExit(INSTALL_TIMEOUT_MS);
        expect(v.output).toMatch(/abota-guest: shutdown/);

        const rootfsA = partitionNamed(disk.partitions, 'RootFSA');
        const rootfsB = partitionNamed(disk.partitions, 'RootFSB');
        const bBefore = await partitionSha256(disk.path, rootfsB);
        await flipBytes(disk.path, rootfsA, 1024, 64);
        await flipBytes(disk.path, rootfsA, 8192, 4096);

        const w = await boot(true);
        expect(await firmwareSlotBooted(w, 0, BOOT_TIMEOUT_MS)).toBe('A');
        const refused = await w.waitFor(
          /device-mapper: verity: .*data block \d+ is corrupted/,
          BOOT_TIMEOUT_MS,
        );
        expect(await nextBoot(w, refused.index + refused[0].length)).toBe('B');
        const row = await fleet.waitForDevice(
          (d) => d.installState === 'rolled-back' && d.bootedSlot === 'B',
          BOOT_TIMEOUT_MS,
          deviceId,
        );
        expect(row.currentVersion).toBe('2.0.0');
        const r = await ssh(`cat ${MARKER} /etc/abota-release; ls ${TRIAL_VAR} ${BOOT_NEXT_VAR} 2>&1; sync`);
        expect(r.stdout).toMatch(/^uefi\nVERSION=2\.0\.0\n/);
        expect(r.stdout).toMatch(/AbotaTrial-\S+: No such file/);
        const { view } = await compareWithEfibootmgr();
        expect(view.bootOrder[0]).toBe('0002');
        expect(view.bootOrder).not.toContain('0001');
        await w.stop();
        vm = undefined;
        expect(await partitionSha256(disk.path, rootfsB)).toBe(bBefore);
      },
      TEST_TIMEOUT_MS,
    );
  },
);
