// The abota-agent command line over real config files, release directories and slot files.
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from '@abota/testkit';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  corruptByte,
  makeDevice,
  makeRelease,
  makeTrust,
  sha256File,
  type Trust,
} from '../test/release-fixture.js';
import { type CliResult, runCli } from '../test/cli.js';
import { exitStatusFor } from './agent-commands.js';

let trust: Trust;
const dirs: string[] = [];
beforeAll(async () => {
  trust = await makeTrust();
});
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runCli(args, env, { bootId: async () => 'boot-1' });
}

async function setup() {
  const root = await makeTempDir('abota-cli-');
  dirs.push(root);
  const dev = await makeDevice(join(root, 'device'), trust);
  const configPath = join(root, 'agent.json');
  await writeFile(configPath, JSON.stringify(dev.configInput));
  return { root, dev, configPath };
}

describe('abota-agent', () => {
  it('every command has --help', async () => {
    for (const cmd of [
      'run',
      'status',
      'check',
      'install',
      'mark-good',
      'mark-bad',
      'register',
      'doctor',
      'init',
      'simulate-reboot',
    ]) {
      const r = await cli([cmd, '--help']);
      expect(r.code).toBe(0);
      expect(r.out).toContain(`Usage: abota-agent ${cmd}`);
      expect(r.out).toContain('--json');
    }
  });

  it('install RELEASE_DIR writes the inactive slot and status --json shows the pending trial', async () => {
    const { root, dev, configPath } = await setup();
    const rel = await makeRelease({ dir: join(root, 'rel'), trust, version: '2.0.0', codec: 'brotli' });
    const r = await cli(['install', rel.dir, '--config', configPath, '--json']);
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(JSON.parse(r.out)).toEqual({ version: '2.0.0', targetSlot: 'B', phase: 'boot-pending' });
    expect(await sha256File(dev.slotFiles.B)).toBe(await sha256File(rel.imagePath));
    const s = await cli(['status', '--json'], { ABOTA_CONFIG: configPath });
    expect(JSON.parse(s.out)).toMatchObject({
      bootedSlot: 'A',
      primarySlot: 'B',
      version: '1.0.0',
      install: { phase: 'boot-pending', version: '2.0.0', targetSlot: 'B', progressPercent: 100 },
    });
    const human = await cli(['status', '--config', configPath]);
    expect(human.out).toContain('install:   2.0.0 → slot B: boot-pending, 100%');
    expect(human.out).toMatch(/rootfs: +full \d+\.\d (KiB|MiB), \d+\.\d (KiB|MiB) downloaded/);

    // Booted into the trial: the slot runs 2.0.0, not committed — not "1.0.0 on slot B".
    await writeFile(dev.configInput.kernelCmdlinePath!, 'abota.slot=B\n');
    const trial = await cli(['status', '--json', '--config', configPath]);
    expect(JSON.parse(trial.out)).toMatchObject({ bootedSlot: 'B', version: '2.0.0', trial: true });
    const trialText = await cli(['status', '--config', configPath]);
    expect(trialText.out).toContain('running:   2.0.0 on slot B, on trial: not committed');
    const committed = await cli(['mark-good', '--config', configPath]);
    expect(committed.out).toBe('committed 2.0.0 on slot B\n');
    const after = JSON.parse((await cli(['status', '--json', '--config', configPath])).out);
    expect(after).toMatchObject({ bootedSlot: 'B', version: '2.0.0' });
    expect(after.trial).toBeUndefined();
  });

  it('a corrupted release exits 3 with the error code and block index, and status shows the failure', async () => {
    const { root, configPath } = await setup();
    const rel = await makeRelease({ dir: join(root, 'rel'), trust, version: '2.0.0' });
    await corruptByte(rel.artifactPath, 42 * 4096);
    const r = await cli(['install', rel.dir, '--config', configPath]);
    expect(r.code).toBe(3);
    expect(r.err).toMatch(/^ERR_INSTALL_BLOCK_CORRUPT: image rootfs: data block 42 /);
    const j = await cli(['install', rel.dir, '--config', configPath, '--json']);
    expect(JSON.parse(j.err).error.code).toBe('ERR_INSTALL_BLOCK_CORRUPT');
    const s = await cli(['status', '--config', configPath]);
    expect(s.out).toContain('error:     ERR_INSTALL_BLOCK_CORRUPT');
  });

  it('a config that fails validation exits 5 naming the field', async () => {
    const { root } = await setup();
    const bad = join(root, 'bad.json');
    await writeFile(bad, JSON.stringify({ product: 'x' }));
    const r = await cli(['status', '--config', bad]);
    expect(r.code).toBe(5);
    expect(r.err).toMatch(/^ERR_CONFIG_INVALID: .*slots/);
    expect(r.err).toContain('hint: "abota-agent doctor" checks the whole device setup');
    expect(JSON.parse((await cli(['status', '--config', bad, '--json'])).err)).toEqual({
      error: { code: 'ERR_CONFIG_INVALID', message: expect.stringContaining('slots') },
    });
  });

  it('ABOTA_* environment variables override the config file', async () => {
    const { root, configPath } = await setup();
    const r = await cli(['check', '--config', configPath], { ABOTA_SERVER_URL: 'ftp://example' });
    expect(r.code).toBe(5);
    expect(r.err).toContain('server.url');
    await writeFile(join(root, 'device', 'cmdline'), 'abota.slot=B');
    const s = await cli(['status', '--config', configPath, '--json'], {
      ABOTA_KERNEL_CMDLINE: join(root, 'device', 'cmdline'),
    });
    expect(JSON.parse(s.out).bootedSlot).toBe('B');
  });

  it('unknown commands and options are usage errors (exit 2)', async () => {
    expect((await cli(['frobnicate'])).code).toBe(2);
    expect((await cli(['status', '--nope'])).code).toBe(2);
  });

  it('missing arguments, required options and option values are usage errors (exit 2) shown with the help', async () => {
    const register = await cli(['register', '--config', '/nonexistent.json']);
    expect(register.code).toBe(2);
    expect(register.err).toContain('abota-agent register: missing option --token <token>');
    expect(register.err).toContain('Usage: abota-agent register');
    const install = await cli(['install', '--json']);
    expect(install.code).toBe(2);
    expect(install.err).toContain('abota-agent install: missing argument <release-dir>');
    expect((await cli(['status', 'extra'])).code).toBe(2);
    expect((await cli(['status', '--config'])).code).toBe(2);
    const none = await cli([]);
    expect(none.code).toBe(2);
    expect(none.err).toContain('Commands:');
  });

  it('help names every command; help COMMAND and --help show its options and defaults', async () => {
    const top = await cli(['--help']);
    expect(top.code).toBe(0);
    for (const cmd of ['run', 'status', 'check', 'install', 'mark-good', 'mark-bad', 'register'])
      expect(top.out).toContain(`  ${cmd} [options]`);
    const help = await cli(['help', 'install'], { ABOTA_CONFIG: '/srv/agent.json' });
    expect(help.code).toBe(0);
    expect(help.out).toContain('Usage: abota-agent install [options] <release-dir>');
    expect(help.out).toContain('--allow-downgrade');
    expect(help.out).toContain('(default: "/srv/agent.json")');
  });

  it('options may come before or after the argument, as --name=value too', async () => {
    const { root, dev, configPath } = await setup();
    const rel = await makeRelease({ dir: join(root, 'rel'), trust, version: '2.0.0' });
    const r = await cli(['install', `--config=${configPath}`, '--json', rel.dir]);
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(JSON.parse(r.out)).toMatchObject({ version: '2.0.0', targetSlot: 'B' });
    expect(await sha256File(dev.slotFiles.B)).toBe(await sha256File(rel.imagePath));
  });

  it('maps error codes to exit statuses by class', () => {
    expect(exitStatusFor('ERR_SIGNATURE_INVALID')).toBe(3);
    expect(exitStatusFor('ERR_INSTALL_HASH_TREE_INVALID')).toBe(3);
    expect(exitStatusFor('ERR_HTTP_NETWORK')).toBe(4);
    expect(exitStatusFor('ERR_INSTALL_ACTIVE_SLOT')).toBe(5);
    expect(exitStatusFor(undefined)).toBe(1);
  });
});
