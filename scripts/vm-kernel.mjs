#!/usr/bin/env node
// Fetch the guest kernel the real-VM tests and `npm run demo:vm` boot: Debian's cloud kernel
// (linux-image-cloud-amd64's current dependency, ~27 MB), unpacked without installing it.
// Its dm-verity, dm-mod, virtio-blk/pci, erofs, squashfs, overlay and nf_tables are modules
// (an initramfs loads them); ext4 and EFI stub are built in.
//
// Prints one JSON line: { version, vmlinuz, modulesDir, config } (modulesDir holds
// lib/modules/<version>/). The unpacked kernel is kept under .cache/vm/kernel/<version>/ so
// later runs cost nothing; ABOTA_VM_KERNEL_DIR overrides the cache root.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);
const cacheRoot = process.env['ABOTA_VM_KERNEL_DIR'] ?? join(root, '.cache', 'vm', 'kernel');
const META = 'linux-image-cloud-amd64';

function fail(message) {
  process.stderr.write(`vm-kernel: ${message}\n`);
  process.exit(1);
}

function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  if (r.error?.code === 'ENOENT') {
    fail(`${cmd} not found: the guest kernel comes from Debian's archive (apt-get, dpkg-deb)`);
  }
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} failed: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

function describeKernel(dir, version) {
  return {
    version,
    vmlinuz: join(dir, 'boot', `vmlinuz-${version}`),
    modulesDir: dir,
    config: join(dir, 'boot', `config-${version}`),
  };
}

// Which package the meta-package points at today (e.g. linux-image-6.1.0-57-cloud-amd64).
const depends = run('apt-cache', ['depends', META]);
const pkg = /Depends:\s*(linux-image-\S+-cloud-amd64)/.exec(depends)?.[1];
if (pkg === undefined) {
  fail(`apt-cache knows no ${META}; run "apt-get update" first`);
}
const version = pkg.replace(/^linux-image-/, '');
const dir = join(cacheRoot, version);
if (!existsSync(join(dir, 'boot', `vmlinuz-${version}`))) {
  const work = `${dir}.partial`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  run('apt-get', ['download', '-q', pkg], work);
  const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
  if (deb === undefined) fail(`apt-get download ${pkg} left no .deb in ${work}`);
  run('dpkg-deb', ['-x', deb, 'x'], work);
  rmSync(dir, { recursive: true, force: true });
  renameSync(join(work, 'x'), dir);
  rmSync(work, { recursive: true, force: true });
}
process.stdout.write(`${JSON.stringify(describeKernel(dir, version))}\n`);
