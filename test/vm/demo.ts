// `npm run demo:vm`: the whole chain on one VM, each step printed with its time — releases
// 1.0.0 and 2.0.0 (delta from 1.0.0) of a small guest, the factory disk, a real abota-server
// on 127.0.0.1 (embedded defaults), the VM booted under QEMU (OVMF → GRUB → dm-verity root),
// the update A→B over the network by delta, the reboot, the commit. The disk, the releases and
// the serial logs stay in the directory it names at the end (README "Boot the demo disk").
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentPeaksKiB, BOOT_TIMEOUT_MS, bootGuest, secondsToInit, slotBooted } from './guest-vm.js';
import { freePort, type Vm } from './qemu.js';
import { UpdateFleet } from './update-fleet.js';

const INSTALL_TIMEOUT_MS = 900_000;
const started = performance.now();

async function step<T>(what: string, run: () => Promise<T>): Promise<T> {
  const t = performance.now();
  process.stdout.write(`… ${what}\n`);
  const result = await run();
  const total = ((performance.now() - started) / 1000).toFixed(1);
  process.stdout.write(`✓ ${what} (${((performance.now() - t) / 1000).toFixed(1)} s, ${total} s total)\n`);
  return result;
}

async function main(): Promise<void> {
  const dir = process.env['ABOTA_DEMO_DIR'] ?? (await mkdtemp(join(tmpdir(), 'abota-demo-vm-')));
  process.stdout.write(`abota VM demo in ${dir}\n`);
  const fleet = await step('start abota-server (PGlite + files), make the keys, create the product', () =>
    UpdateFleet.create(dir),
  );
  let vm: Vm | undefined;
  try {
    await step(
      'build and push release 1.0.0 (guest tree → erofs rootfs → boot image + signed manifest)',
      () => fleet.release({ version: '1.0.0' }),
    );
    await step('build and push release 2.0.0 with a delta from 1.0.0', () =>
      fleet.release({ version: '2.0.0', deltaFrom: ['1.0.0'] }),
    );
    const disk = await step(
      'write the factory disk (GPT, ESP + GRUB, slot A = 1.0.0, Data with a token)',
      () => fleet.factoryDisk('vm', '1.0.0'),
    );
    const sshPort = await freePort();
    const boot = (n: number, allowReboot: boolean): Promise<Vm> =>
      bootGuest({
        disk: disk.path,
        dir: join(dir, 'vms', 'vm', `boot-${n}`),
        serverPort: fleet.server.port,
        sshPort,
        allowReboot,
      });
    vm = await step('boot the VM: OVMF → GRUB → slot A through dm-verity → init', async () => {
      const v = await boot(1, false);
      process.stdout.write(
        `  GRUB booted slot ${await slotBooted(v)}; guest init done after ${(await secondsToInit(v)).toFixed(1)} s\n`,
      );
      return v;
    });
    const device = await step('the agent registers and confirms slot A (health check)', () =>
      fleet.waitForDevice((d) => d.currentVersion === '1.0.0' && d.bootedSlot === 'A', BOOT_TIMEOUT_MS),
    );
    await step(
      `roll out 2.0.0 to device ${device.id}; the agent installs it into B by delta and reboots`,
      async () => {
        await fleet.rollout('2.0.0', device.id);
        await vm!.waitExit(INSTALL_TIMEOUT_MS);
        const used =
          /applying delta (sha256:[0-9a-f]{12})\S* \((\d+) bytes instead of the (\d+)-byte artifact\)/.exec(
            vm!.output,
          );
        if (used !== null)
          process.stdout.write(`  rootfs by delta ${used[1]}…: ${used[2]} bytes instead of ${used[3]}\n`);
        process.stdout.write(
          `  agent peak RSS in the guest: ${agentPeaksKiB(vm!.output)
            .map((k) => `${(k / 1024).toFixed(1)} MiB`)
            .join(', ')}\n`,
        );
      },
    );
    vm = await step('reboot: GRUB tries slot B, dm-verity root of 2.0.0, health check, commit', async () => {
      const v = await boot(2, false);
      process.stdout.write(`  GRUB booted slot ${await slotBooted(v)}\n`);
      const row = await fleet.waitForDevice(
        (d) =>
          d.id === device.id &&
          d.currentVersion === '2.0.0' &&
          d.installState === 'committed' &&
          d.bootedSlot === 'B',
        BOOT_TIMEOUT_MS,
      );
      process.stdout.write(
        `  server: device ${row.id} ${row.installState} ${row.currentVersion} on slot ${row.bootedSlot}\n`,
      );
      return v;
    });
  } finally {
    await vm?.stop();
    await fleet.close();
  }
  process.stdout.write(
    `\nLeft in ${dir}:\n  vms/vm/disk.raw          the VM's disk (now on slot B, 2.0.0)\n  releases/<version>/release  the signed releases\n  vms/vm/boot-*/serial.log the serial console of each boot\n  abota-server.log         the update server's log\nBoot the disk by hand: README "The VM demo".\n`,
  );
}

// Exit explicitly: a finished run was seen to keep the event loop alive (a handle of the tsx
// loader or the VM console socket), and the demo must end when it says it is done.
main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`demo:vm failed: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
