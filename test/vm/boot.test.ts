// Factory boot of slot A under QEMU (OVMF → GRUB → kernel → abota initramfs → guest init):
// from inside the guest / is the dm-verity device of the signed release's root hash, mounted
// read-only; a write to /etc lands on Data and survives a reboot; from the host guest port 22
// answers and another listening port does not; the guest reaches the host only through the
// guestfwd. A rootfs changed after signing never boots: the kernel refuses the block.
import { copyFile, mkdir, open, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { describeWithTool, makeTempDir } from '@abota/testkit';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { abota, minimalRelease, TEST_SIZES, testKeys, vmKernel } from './fixture.js';
import { freePort, GUEST_SERVER_ADDRESS, Vm } from './qemu.js';

const BOOT_TIMEOUT_MS = 300_000;
// Up to the end of the line: the console delivers a line in pieces.
const READY = /abota-guest: ready slot=(\w) label=(\S+) uptime=(\S+)\r?\n/;

/** GET http://127.0.0.1:port/ with a deadline: the body, or the error's name. */
async function httpGet(port: number, timeoutMs: number): Promise<string> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(timeoutMs) });
    return `${res.status} ${await res.text()}`;
  } catch (err) {
    return `failed: ${(err as Error).name}`;
  }
}

describeWithTool('qemu-system-x86_64', 'qemu-system-x86', 'factory boot of slot A through dm-verity', () => {
  let dir: string;
  let disk: string;
  let rootHash: string;
  let partitions: { name: string; offsetBytes: number }[];
  let vm: Vm | undefined;
  let hostServer: Server;
  let serverPort: number;

  beforeAll(async () => {
    dir = await makeTempDir('abota-vm-');
    const release = await minimalRelease(dir, await testKeys(dir), await vmKernel(), '1.0.0', 'v1');
    rootHash = release.rootHash;
    disk = join(dir, 'disk.raw');
    // What the caller provisions on Data (the agent's config and token in the full guest).
    await mkdir(join(dir, 'data/lib/abota'), { recursive: true });
    await writeFile(join(dir, 'data/lib/abota/provisioned.txt'), 'from the disk builder\n');
    const summary = await abota([
      'image',
      'disk',
      '--release',
      release.dir,
      '--data-dir-content',
      join(dir, 'data'),
      '--out',
      disk,
      ...TEST_SIZES,
    ]);
    partitions = summary['partitions'] as typeof partitions;
    hostServer = createServer((_req, res) => res.end('from the host server\n'));
    serverPort = await new Promise<number>((resolve) =>
      hostServer.listen(0, '127.0.0.1', () => resolve((hostServer.address() as { port: number }).port)),
    );
  });

  afterEach(async () => {
    await vm?.stop();
    vm = undefined;
  });

  afterAll(async () => {
    hostServer?.close();
    // The directory (disk, serial logs) is kept when ABOTA_VM_KEEP=1, for a look after a failure.
    if (process.env['ABOTA_VM_KEEP'] !== '1' && dir !== undefined) {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('boots A: / is the verity device of the signed root hash, read-only; /etc persists on Data across a reboot; only port 22 is open', async () => {
    const sshPort = await freePort();
    const otherPort = await freePort();
    const vmDir = join(dir, 'vm-a');
    await mkdir(vmDir);
    vm = await Vm.start({
      disk,
      dir: vmDir,
      hostForwards: [
        { hostPort: sshPort, guestPort: 22 },
        { hostPort: otherPort, guestPort: 8080 },
      ],
      serverPort,
    });
    const first = await vm.waitFor(READY, BOOT_TIMEOUT_MS);
    const firstBootMs = performance.now() - vm.startedAt;
    expect(first[1]).toBe('A');

    const mounts = await vm.run('cat /proc/mounts');
    expect(mounts.output).toMatch(/^\/dev\/mapper\/abota-root \/ erofs ro[,\s]/m);
    const table = await vm.run('cat /run/abota/root.table');
    expect(table.output).toContain(' verity 1 ');
    expect(table.output).toContain(` ${rootHash} `);
    expect(table.output).toContain('restart_on_corruption');
    expect((await vm.run('touch /written-to-root')).status).not.toBe(0);
    expect((await vm.run('cat /var/lib/abota/provisioned.txt')).output).toBe('from the disk builder\n');
    // The factory slot's signed manifest, for the agent to know what slot A holds.
    const factory = await vm.run('cat /var/.abota/slots/A/manifest.json');
    expect(factory.output).toContain('"version":"1.0.0"');
    expect(factory.output).toContain(rootHash);
    expect((await vm.run('ls /var/.abota/slots')).output.trim()).toBe('A');
    const labels = (await vm.run('ls /dev/disk/by-partlabel')).output.split(/\s+/).filter((l) => l !== '');
    expect(labels.sort()).toEqual(
      ['BootA', 'BootB', 'BootEFIA', 'BootEFIB', 'Data', 'ESP', 'Log', 'RootFSA', 'RootFSB', 'Unused'].sort(),
    );

    // Firewall: 22 answers from the host; 8080 listens (loopback in the guest shows it) but is dropped.
    expect(await httpGet(sshPort, 20_000)).toBe('200 guest v1\n');
    expect((await vm.run('wget -qO- http://127.0.0.1:8080/')).output).toBe('guest v1\n');
    expect(await httpGet(otherPort, 8_000)).toMatch(/^failed/);
    const nft = await vm.run(
      'cat /proc/net/nf_conntrack 2>/dev/null | wc -l; ls /sys/module | grep -c nf_tables',
    );
    expect(nft.output.trim().split('\n').pop()).toBe('1');
    // The guest reaches the host only through the guestfwd (restrict=on: nothing else).
    const viaFwd = await vm.run(
      `wget -qO- http://${GUEST_SERVER_ADDRESS.host}:${GUEST_SERVER_ADDRESS.port}/`,
    );
    expect(viaFwd.output).toBe('from the host server\n');

    const marker = `persisted-${Date.now()}`;
    expect((await vm.run(`echo ${marker} > /etc/abota-test && sync`)).status).toBe(0);
    expect((await vm.run('cat /var/.abota/overlays/etc/upper/abota-test')).output).toBe(`${marker}\n`);
    const env = await vm.run('cat /boot/efi/EFI/abota/grubenv | grep -a _');
    expect(env.output).toContain('A_TRY=0');

    const beforeReboot = vm.mark();
    const rebootStarted = performance.now();
    vm.write('reboot -f\n');
    const second = await vm.waitFor(READY, BOOT_TIMEOUT_MS, beforeReboot);
    const secondBootMs = performance.now() - rebootStarted;
    expect(second[1]).toBe('A');
    expect((await vm.run('cat /etc/abota-test')).output).toBe(`${marker}\n`);
    console.log(
      `boot times (TCG): first ${(firstBootMs / 1000).toFixed(1)} s to the guest init (guest uptime ${first[3]} s), ` +
        `reboot ${(secondBootMs / 1000).toFixed(1)} s (guest uptime ${second[3]} s)`,
    );
  });

  it('a rootfs byte changed after signing: the kernel refuses the block and restarts, GRUB finds no slot left to try; the raw partition is never mounted', async () => {
    const tampered = join(dir, 'tampered.raw');
    await copyFile(disk, tampered);
    const offset = partitions.find((p) => p.name === 'RootFSA')!.offsetBytes;
    const fh = await open(tampered, 'r+');
    const byte = Buffer.alloc(1);
    await fh.read(byte, 0, 1, offset + 1024);
    byte[0] = byte[0]! ^ 0xff;
    await fh.write(byte, 0, 1, offset + 1024);
    await fh.close();
    const vmDir = join(dir, 'vm-tampered');
    await mkdir(vmDir);
    vm = await Vm.start({ disk: tampered, dir: vmDir });
    // Boot 1: GRUB spends A's try, the kernel refuses block 0 and restarts. Boot 2: A_TRY=1 and
    // B is empty, so grub.cfg's "no slot" branch runs (and gives A another chance next time).
    await vm.waitFor(/abota: no bootable slot \(ORDER=A B A_OK=1 B_OK=0\)/, 2 * BOOT_TIMEOUT_MS);
    expect(vm.output).toMatch(/verity.*(corrupted|metadata block|data block)/i);
    expect(vm.output.indexOf('abota: booting slot A')).toBeLessThan(
      vm.output.indexOf('abota: no bootable slot'),
    );
    expect(vm.output).not.toMatch(READY);
  });
});
