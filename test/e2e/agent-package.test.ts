// The installable agent as a device gets it: `scripts/package-agent.mjs` builds the tarball and
// the .deb, both are unpacked (tar, dpkg-deb -x) and the unpacked agent runs with the Node.js
// runtime it carries, under the systemd unit's Environment= lines: --version, init + doctor on a
// file-backend device, register, and a real check that installs a release from a real server,
// then a simulated reboot and the commit.
import { execFile, spawnSync } from 'node:child_process';
import { mkdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseAgentConfig } from '@abota/client';
import { describeWithTool, makeTempDir, runProgram } from '@abota/testkit';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { unitEnvironment } from '../fixtures/agent-unit.js';
import { createFleet, type Fleet, HARDWARE, PRODUCT } from '../fixtures/fleet.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const UNIT = join(ROOT, 'infra/systemd/abota-agent.service');

let work: string;
let fleet: Fleet;
let packaged: { version: string; node: string; files: { path: string }[] };
let unitEnv: Record<string, string>;

/** The unpacked agent under the unit's environment (asynchronously: the server is in this process). */
async function agent(bin: string, args: string[]): Promise<{ status: number; out: string; err: string }> {
  const r = await runProgram(bin, args, {
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...unitEnv },
  });
  return { status: r.code ?? -1, out: r.stdout, err: r.stderr };
}

describeWithTool('dpkg-deb', 'dpkg', 'the packaged agent (tarball and .deb)', () => {
  beforeAll(async () => {
    work = await makeTempDir('abota-package-');
    unitEnv = await unitEnvironment();
    const { stdout } = await run(
      'node',
      [join(ROOT, 'scripts/package-agent.mjs'), '--out', join(work, 'out'), '--json'],
      {
        maxBuffer: 1 << 20,
      },
    );
    packaged = JSON.parse(stdout);
    await mkdir(join(work, 'tar'));
    await run('tar', ['-xzf', packaged.files[0]!.path, '-C', join(work, 'tar')]);
    await run('dpkg-deb', ['-x', packaged.files[1]!.path, join(work, 'deb')]);
    fleet = await createFleet();
    await fleet.buildRelease({ version: '1.0.0', securityVersion: 1 });
    await fleet.buildRelease({ version: '2.0.0', securityVersion: 1 });
    await fleet.push('2.0.0');
  }, 600_000);

  afterAll(async () => {
    await fleet?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('names the versioned files and carries the pinned Node.js 24 runtime', async () => {
    const { version } = JSON.parse(await readFile(join(ROOT, 'packages/client/package.json'), 'utf8'));
    expect(packaged.version).toBe(version);
    expect(packaged.node).toMatch(/^24\./);
    expect(packaged.files.map((f) => f.path.split('/').pop())).toEqual([
      `abota-agent-${version}-linux-x64.tar.gz`,
      `abota-agent_${version}_amd64.deb`,
    ]);
    const tree = join(work, 'tar', `abota-agent-${version}-linux-x64`);
    const deb = join(work, 'deb');
    for (const bin of [join(tree, 'bin/abota-agent'), join(deb, 'usr/bin/abota-agent')]) {
      const r = await agent(bin, ['--version']);
      expect(r.status).toBe(0);
      expect(r.out).toMatch(
        new RegExp(`^abota-agent ${version} \\(built \\S+Z, node v${packaged.node}\\)\\n$`),
      );
    }
    expect(await readlink(join(deb, 'usr/bin/abota-agent'))).toBe('../lib/abota-agent/bin/abota-agent');
    expect(await readFile(join(deb, 'lib/systemd/system/abota-agent.service'), 'utf8')).toBe(
      await readFile(UNIT, 'utf8'),
    );
    expect((await stat(join(deb, 'usr/lib/abota-agent/lib/node'))).mode & 0o111).not.toBe(0);
    expect(await readFile(join(tree, 'share/systemd/abota-agent.service'), 'utf8')).toBe(
      await readFile(UNIT, 'utf8'),
    );
    await readFile(join(tree, 'README.md'), 'utf8');
    for (const example of [join(deb, 'etc/abota/agent.json.example'), join(tree, 'share/agent.json.example')])
      parseAgentConfig(JSON.parse(await readFile(example, 'utf8')), example);
    const control = spawnSync(
      'dpkg-deb',
      ['-f', packaged.files[1]!.path, 'Package', 'Version', 'Architecture'],
      {
        encoding: 'utf8',
      },
    );
    expect(control.stdout).toBe(`Package: abota-agent\nVersion: ${version}\nArchitecture: amd64\n`);
  });

  it('sets up a file-backend device (init, doctor), registers, and installs and commits a release from a real server', async () => {
    const bin = join(work, 'deb', 'usr/bin/abota-agent');
    const device = join(work, 'device');
    await mkdir(device);
    const images = join(fleet.work, 'images');
    await writeFile(join(device, 'rootfs-a.img'), await readFile(join(images, 'rootfs-1.0.0.img')));
    await writeFile(join(device, 'boot-a.img'), await readFile(join(images, 'boot-1.0.0.img')));
    await writeFile(join(device, 'root.json'), await readFile(fleet.rootPath));
    const slot = (s: string) => ({
      rootfs: { path: `rootfs-${s}.img`, hashPath: `rootfs-${s}.verity` },
      boot: { path: `boot-${s}.img`, hashPath: `boot-${s}.verity` },
    });
    const config = join(device, 'agent.json');
    await writeFile(
      config,
      JSON.stringify({
        server: { url: fleet.server.url },
        deviceKeyPath: 'data/device-key.json',
        trustRootPath: 'root.json',
        product: PRODUCT,
        hardware: HARDWARE,
        factory: { version: '1.0.0', securityVersion: 1 },
        slots: { A: slot('a'), B: slot('b') },
        bootControl: { backend: 'file', statePath: 'boot-state.json' },
        dataDir: 'data',
        kernelCmdlinePath: 'cmdline',
        bootIdPath: 'boot-id',
        rebootCommand: [bin, 'simulate-reboot', '--config', config],
      }),
    );
    const before = await agent(bin, ['doctor', '-c', config]);
    expect(before.status).toBe(5);
    expect(before.out).toContain('fix: run "abota-agent init"');

    expect((await agent(bin, ['init', '-c', config])).status).toBe(0);
    expect((await agent(bin, ['simulate-reboot', '-c', config])).out).toContain('booted slot A');
    const doctor = await agent(bin, ['doctor', '-c', config, '--json']);
    expect(doctor.status).toBe(0);
    expect(JSON.parse(doctor.out).findings.map((f: { code: string }) => f.code)).toEqual([
      'ERR_DOCTOR_NOT_REGISTERED',
    ]);

    const token = await fleet.server.createProvisioningToken(PRODUCT);
    const registered = await agent(bin, ['register', '-c', config, '--token', token, '--json']);
    expect(registered.status).toBe(0);
    const { deviceId } = JSON.parse(registered.out) as { deviceId: string };
    expect((await agent(bin, ['check', '-c', config])).out).toMatch(/^no update offered/);

    await fleet.server.createRollout(fleet.releaseIds.get('2.0.0')!, { deviceIds: [deviceId] });
    const check = await agent(bin, ['check', '-c', config, '--reboot']);
    expect(check).toMatchObject({ status: 0, out: 'installed 2.0.0; rebooting\n' });
    expect(await readFile(join(device, 'cmdline'), 'utf8')).toBe('abota.slot=B\n');
    const good = await agent(bin, ['mark-good', '-c', config]);
    expect(good.out).toBe('committed 2.0.0 on slot B\n');
    const status = JSON.parse((await agent(bin, ['status', '-c', config, '--json'])).out);
    expect(status).toMatchObject({ bootedSlot: 'B', primarySlot: 'B', version: '2.0.0' });
    expect(await fleet.server.device(deviceId)).toMatchObject({ currentVersion: '2.0.0' });
  });
});
