// The guest tree runs: its node, agent, dropbear and busybox start inside the tree alone
// (chroot, so only the tree's libraries and paths exist), and its agent config passes the
// agent's own schema with the VM's partlabels.
import { spawnSync } from 'node:child_process';
import { readFile, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAgentConfig } from '@abota/client';
import { describeWithTool, makeTempDir } from '@abota/testkit';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildGuestTree, type GuestTree } from './guest-tree.js';
import { abota, vmKernel } from '../fixture.js';

const LAYOUT = {
  espPartlabel: 'ESP',
  grubenvPath: '/boot/efi/EFI/abota/grubenv',
  rootfsHashOffsetBytes: 256 * 1024 * 1024,
  bootHashOffsetBytes: 48 * 1024 * 1024,
};

/** Run argv inside the tree: chroot as root, else in a user namespace that maps us to root. */
function inTree(root: string, argv: string[]): { status: number | null; out: string } {
  const cmd =
    process.getuid?.() === 0 ? ['chroot', root, ...argv] : ['unshare', '-r', 'chroot', root, ...argv];
  const r = spawnSync(cmd[0]!, cmd.slice(1), {
    encoding: 'utf8',
    env: { PATH: '/usr/bin:/bin:/usr/sbin:/sbin' },
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describeWithTool('dropbear', 'dropbear-bin', 'guest tree', () => {
  let work: string;
  let tree: GuestTree;

  beforeAll(async () => {
    work = await makeTempDir('abota-guest-tree-');
    await abota(['keys', 'init', join(work, 'keys')]);
    tree = await buildGuestTree({
      dir: join(work, 'tree'),
      version: '1.0.0',
      kernel: await vmKernel(),
      trustRootPath: join(work, 'keys', 'root.json'),
      serverUrl: 'http://10.0.2.100',
      product: 'abota-vm',
      hardware: 'qemu-x86_64',
      layout: LAYOUT,
      authorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEb0 test'],
    });
  }, 120_000);

  afterAll(async () => {
    spawnSync('rm', ['-rf', work]);
  });

  it('has busybox init as /sbin/init and a shell', async () => {
    expect(await readlink(join(tree.dir, 'sbin', 'init'))).toBe('../bin/busybox');
    expect(tree.appletLinks).toBeGreaterThan(100);
    expect(inTree(tree.dir, ['/bin/sh', '-c', 'echo ok'])).toEqual({ status: 0, out: 'ok\n' });
  });

  it('runs the pinned node and the bundled agent with only the libraries copied into it', () => {
    const node = inTree(tree.dir, ['/usr/bin/node', '-p', 'process.versions.node']);
    expect(node.status, node.out).toBe(0);
    expect(node.out.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const agent = inTree(tree.dir, ['/usr/bin/abota-agent', '--help']);
    expect(agent.status, agent.out).toBe(0);
    expect(agent.out).toMatch(/abota-agent/);
  });

  it('runs dropbear with its libraries', () => {
    const r = inTree(tree.dir, ['/usr/sbin/dropbear', '-V']);
    expect(r.out).toMatch(/Dropbear v\d/);
  });

  it('carries an agent config the agent accepts, naming the slots by partlabel and the grubenv on the ESP', async () => {
    const raw = JSON.parse(await readFile(join(tree.dir, 'etc', 'abota', 'agent.json'), 'utf8')) as unknown;
    const config = parseAgentConfig(raw);
    expect(config.slots.B.rootfs).toEqual({
      path: '/dev/disk/by-partlabel/RootFSB',
      hashOffsetBytes: LAYOUT.rootfsHashOffsetBytes,
    });
    expect(config.slots.A.boot?.path).toBe('/dev/disk/by-partlabel/BootA');
    expect(config.bootControl).toEqual({ backend: 'grub', envPath: LAYOUT.grubenvPath });
    expect(config.dataDir).toBe('/var/lib/abota');
    expect(config.trustRootPath).toBe('/usr/share/abota/root.json');
    expect(config.healthChecks[0]?.command).toEqual(['/usr/lib/abota/health-check']);
    expect(await readFile(join(tree.dir, 'usr', 'share', 'abota', 'root.json'), 'utf8')).toBe(
      await readFile(join(work, 'keys', 'root.json'), 'utf8'),
    );
  });

  it('loads the NIC and FAT modules after their dependencies', async () => {
    const list = (await readFile(join(tree.dir, 'etc', 'abota-guest', 'modules'), 'utf8')).trim().split('\n');
    const names = list.map((p) => p.replace(/^.*\//, ''));
    expect(names.indexOf('fat.ko')).toBeLessThan(names.indexOf('vfat.ko'));
    expect(names.indexOf('net_failover.ko')).toBeLessThan(names.indexOf('virtio_net.ko'));
    for (const p of list) expect((await stat(join(tree.dir, p))).size).toBeGreaterThan(0);
  });

  it('gives root the authorized keys with the modes dropbear insists on', async () => {
    expect((await stat(join(tree.dir, 'root', '.ssh', 'authorized_keys'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(tree.dir, 'root'))).mode & 0o777).toBe(0o700);
  });

  it('has no package manager program', async () => {
    // Debian's busybox-static still runs its dpkg/rpm applets from its own shell (standalone
    // shell): nothing in the tree links them, and / is read-only (dm-verity) for them anyway.
    const dirs = ['bin', 'sbin', 'usr/bin', 'usr/sbin'];
    for (const pm of ['apt', 'apt-get', 'dpkg', 'dpkg-deb', 'opkg', 'rpm', 'rpm2cpio']) {
      for (const d of dirs) await expect(stat(join(tree.dir, d, pm))).rejects.toThrow(/ENOENT/);
    }
  });
});
