// Agent config: schema defaults, path resolution relative to the file, ABOTA_* overrides.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadAgentConfig, parseAgentConfig } from './config.js';

const minimal = {
  deviceKeyPath: 'device-key.json',
  trustRootPath: 'root.json',
  product: 'eflow-vm',
  hardware: 'hyperv-x64',
  slots: {
    A: { rootfs: { path: '/dev/disk/by-partlabel/RootFSA', hashOffsetBytes: 4 * 1024 ** 3 } },
    B: { rootfs: { path: '/dev/disk/by-partlabel/RootFSB', hashPath: '/dev/disk/by-partlabel/HashB' } },
  },
  bootControl: { backend: 'grub' },
  dataDir: 'data',
};

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe('agent config', () => {
  it('fills the documented defaults', () => {
    const c = parseAgentConfig(minimal);
    expect(c.kernelCmdlinePath).toBe('/proc/cmdline');
    expect(c.rebootCommand).toEqual(['systemctl', 'reboot']);
    expect(c.poll).toEqual({ minSeconds: 60, maxSeconds: 86_400, defaultSeconds: 3600, jitterFraction: 0.2 });
    expect(c.factory).toEqual({ version: '0.0.0', securityVersion: 0 });
    expect(c.bootControl).toEqual({ backend: 'grub', envPath: '/boot/grub/grubenv' });
    expect(c.healthChecks).toEqual([]);
  });

  it('requires a hash location for every image and names the field', () => {
    const bad = structuredClone(minimal) as { slots: { A: { rootfs: Record<string, unknown> } } };
    delete bad.slots.A.rootfs['hashOffsetBytes'];
    expect(() => parseAgentConfig(bad)).toThrow(/slots\.A\.rootfs: give hashPath .* or hashOffsetBytes/);
  });

  it('refuses unknown keys (typos must not silently fall back to defaults)', () => {
    expect(() => parseAgentConfig({ ...minimal, rebootComand: ['x'] })).toThrow(
      /ERR_CONFIG_INVALID|Unrecognized key/,
    );
  });

  it('names the field path and what was wrong in every refusal, with code ERR_CONFIG_INVALID', () => {
    const refusal = (value: unknown): { code: unknown; message: string } => {
      try {
        parseAgentConfig(value);
      } catch (e) {
        return { code: (e as { code?: unknown }).code, message: (e as Error).message };
      }
      throw new Error('expected the config to be refused');
    };
    const cases: [unknown, RegExp][] = [
      [{ ...minimal, rebootComand: ['x'] }, /rebootComand: Unrecognized key/],
      [{ ...minimal, server: { url: 'ftp://example.test' } }, /server\.url: expected an http\(s\) URL/],
      [
        { ...minimal, bootControl: { backend: 'lilo' } },
        /bootControl\.backend: .*"grub" \| "uboot" \| "uefi" \| "file".*"lilo"/,
      ],
      [
        { ...minimal, bootControl: { backend: 'uefi', mode: 'grub' } },
        /bootControl\.mode: .*"systemd-boot" \| "firmware"/,
      ],
      [
        {
          ...minimal,
          bootControl: { backend: 'uefi', mode: 'systemd-boot', ukiNames: { A: 'a+1', B: 'b' } },
        },
        /bootControl\.ukiNames\.A: a UKI name/,
      ],
      [{ ...minimal, poll: { minSeconds: 1.5 } }, /poll\.minSeconds: .*integer/i],
      [{ ...minimal, poll: { minSeconds: 100, defaultSeconds: 50 } }, /poll: poll bounds must satisfy/],
      [{ ...minimal, slots: { ...minimal.slots, B: { rootfs: { path: '' } } } }, /slots\.B\.rootfs\.path: /],
      [{ ...minimal, healthChecks: [{ command: [] }] }, /healthChecks\.0\.command: /],
      [{ ...minimal, product: 7 }, /product: .*string.*7/],
    ];
    for (const [value, message] of cases) {
      const r = refusal(value);
      expect(r.code).toBe('ERR_CONFIG_INVALID');
      expect(r.message).toMatch(message);
    }
  });

  it('resolves relative paths against the config file and applies ABOTA_* overrides', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'abota-config-'));
    dirs.push(dir);
    const path = join(dir, 'agent.json');
    await writeFile(path, JSON.stringify(minimal));
    const c = await loadAgentConfig(path, {
      ABOTA_SERVER_URL: 'https://updates.example.test',
      ABOTA_BANDWIDTH_LIMIT: '500000',
      ABOTA_DATA_DIR: '/var/lib/abota',
    });
    expect(c.deviceKeyPath).toBe(join(dir, 'device-key.json'));
    expect(c.trustRootPath).toBe(join(dir, 'root.json'));
    expect(c.dataDir).toBe('/var/lib/abota');
    expect(c.server).toEqual({
      url: 'https://updates.example.test',
      audience: 'abota',
      tokenLifetimeSeconds: 180,
    });
    expect(c.bandwidthLimitBytesPerSecond).toBe(500_000);
    await expect(loadAgentConfig(path, { ABOTA_BANDWIDTH_LIMIT: 'fast' })).rejects.toMatchObject({
      code: 'ERR_CONFIG_INVALID',
    });
  });

  it('gives the uefi backend its defaults and resolves its paths', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'abota-config-'));
    dirs.push(dir);
    const path = join(dir, 'agent.json');
    await writeFile(path, JSON.stringify({ ...minimal, bootControl: { backend: 'uefi', mode: 'firmware' } }));
    expect((await loadAgentConfig(path, {})).bootControl).toEqual({
      backend: 'uefi',
      mode: 'firmware',
      efivarsPath: '/sys/firmware/efi/efivars',
      espPath: '/boot/efi',
    });
    await writeFile(
      path,
      JSON.stringify({
        ...minimal,
        bootControl: {
          backend: 'uefi',
          mode: 'systemd-boot',
          efivarsPath: 'vars',
          espPath: 'esp',
          tryBoots: 3,
        },
      }),
    );
    expect((await loadAgentConfig(path, {})).bootControl).toEqual({
      backend: 'uefi',
      mode: 'systemd-boot',
      efivarsPath: join(dir, 'vars'),
      espPath: join(dir, 'esp'),
      tryBoots: 3,
    });
  });
});
