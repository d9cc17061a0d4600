// The agent CLI on a simulated uefi device (both modes): abota-agent install arms the trial
// through the uefi backend, simulate-reboot plays the firmware (BootNext, BootOrder) or
// systemd-boot (LoaderEntryOneShot, +N counters), mark-good commits, mark-bad rejects a trial
// and the next reboot returns to the old slot.
import { spawnSync } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findTool, withTempDir } from '@abota/testkit';
import { expect, it } from 'vitest';
import { runCli } from '../test/cli.js';
import { makeDevice, makeRelease, makeTrust } from '../test/release-fixture.js';
import { provisionFirmwareEfivars, provisionSystemdBootEsp, unlockTree } from '../test/uefi-fixtures.js';

it.each(['firmware', 'systemd-boot'] as const)(
  '%s: install → simulated reboot → mark-good commits; a rejected trial falls back',
  async (mode) => {
    await withTempDir(async (root) => {
      try {
        const trust = await makeTrust();
        const dev = await makeDevice(join(root, 'device'), trust);
        let efivars: string;
        let esp = join(root, 'esp');
        if (mode === 'firmware') efivars = await provisionFirmwareEfivars(join(root, 'efivars'));
        else ({ efivars, esp } = await provisionSystemdBootEsp(root));
        const config = join(root, 'agent.json');
        await writeFile(
          config,
          JSON.stringify({
            ...dev.configInput,
            bootControl: { backend: 'uefi', mode, efivarsPath: efivars, espPath: esp },
            bootIdPath: join(root, 'boot-id'),
          }),
        );
        const cli = async (...args: string[]) => {
          const r = await runCli([...args, '--config', config]);
          expect(r.code, r.err).toBe(0);
          return r.out;
        };
        expect(await cli('simulate-reboot')).toMatch(/^booted slot A /);
        await cli('mark-good');

        const v2 = await makeRelease({ dir: join(root, 'v2'), trust, version: '2.0.0' });
        expect(await cli('install', v2.dir)).toBe(
          'installed 2.0.0 into slot B; it boots once at the next reboot\n',
        );
        expect(await cli('status')).toMatch(/next boot|B/);
        expect(await cli('simulate-reboot')).toMatch(/^booted slot B /);
        expect(await cli('mark-good')).toBe('committed 2.0.0 on slot B\n');
        expect(await cli('simulate-reboot')).toMatch(/^booted slot B /);
        const efibootmgr = findTool('efibootmgr');
        if (mode === 'firmware' && efibootmgr !== undefined) {
          const r = spawnSync(efibootmgr, [], {
            encoding: 'utf8',
            env: { ...process.env, EFIVARFS_PATH: `${efivars}/` },
          });
          expect(r.stdout).toMatch(/^BootCurrent: 0001\nBootOrder: 0001,0000,0002\n/);
        }
        if (mode === 'systemd-boot') {
          expect((await readdir(join(esp, 'EFI', 'Linux'))).sort()).toEqual(['abota-a.efi', 'abota-b.efi']);
        }

        const v3 = await makeRelease({ dir: join(root, 'v3'), trust, version: '3.0.0', seed: 3 });
        expect(await cli('install', v3.dir)).toBe(
          'installed 3.0.0 into slot A; it boots once at the next reboot\n',
        );
        expect(await cli('simulate-reboot')).toMatch(/^booted slot A /);
        expect(await cli('mark-bad')).toMatch(/^rejected 3.0.0/);
        expect(await cli('simulate-reboot')).toMatch(/^booted slot B /);
        expect(await cli('simulate-reboot')).toMatch(/^booted slot B /);
        expect(await cli('status')).toMatch(/2\.0\.0/);
      } finally {
        await unlockTree(root);
      }
    });
  },
  120_000,
);
