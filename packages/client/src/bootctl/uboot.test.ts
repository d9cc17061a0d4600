import { spawnSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeWithTool, withTempDir } from '@abota/testkit';
import { describe, expect, it } from 'vitest';
import {
  emulateUBootBoot,
  UBootBootControl,
  type UBootConvention,
  ubootInitialEnv,
  ubootSelectSlot,
} from './uboot.js';
import { formatUBootEnv, readUBootEnv, type UBootEnvConfig } from './ubootenv.js';

const env = (o: Record<string, string>) => new Map(Object.entries(o));
const bootcount: UBootConvention = { kind: 'bootcount' };
const rauc: UBootConvention = { kind: 'rauc' };

function redundant(path: string): UBootEnvConfig {
  return {
    copies: [
      { path, offsetBytes: 0, sizeBytes: 0x2000 },
      { path, offsetBytes: 0x2000, sizeBytes: 0x2000 },
    ],
  };
}

describe('ubootSelectSlot, bootcount convention (docs/formats.md §3.4)', () => {
  const base = { boot_slot: 'B', bootlimit: '1', altbootcmd: 'run fallback' };

  it('does not count (or save) boots while upgrade_available is 0', () => {
    const r = ubootSelectSlot(env({ ...base, upgrade_available: '0', bootcount: '7' }), bootcount);
    expect(r.slot).toBe('B');
    expect(r.newEnv.get('bootcount')).toBe('7');
  });

  it('counts a trial boot and saves the count', () => {
    const r = ubootSelectSlot(env({ ...base, upgrade_available: '1', bootcount: '0' }), bootcount);
    expect(r.slot).toBe('B');
    expect(r.newEnv.get('bootcount')).toBe('1');
  });

  it('runs altbootcmd once bootcount exceeds bootlimit: other slot, upgrade_available=0', () => {
    const r = ubootSelectSlot(env({ ...base, upgrade_available: '1', bootcount: '1' }), bootcount);
    expect(r.slot).toBe('A');
    expect(Object.fromEntries(r.newEnv)).toMatchObject({
      boot_slot: 'A',
      upgrade_available: '0',
      bootcount: '2',
    });
  });

  it('stops at the prompt without altbootcmd, and never rolls back with bootlimit 0', () => {
    expect(
      ubootSelectSlot(
        env({ boot_slot: 'B', bootlimit: '1', upgrade_available: '1', bootcount: '1' }),
        bootcount,
      ).slot,
    ).toBe('rescue');
    expect(
      ubootSelectSlot(env({ ...base, bootlimit: '0', upgrade_available: '1', bootcount: '50' }), bootcount)
        .slot,
    ).toBe('B');
  });

  it('boots rescue when the selector names no slot', () => {
    expect(ubootSelectSlot(env({ boot_slot: 'C' }), bootcount).slot).toBe('rescue');
  });
});

describe('ubootSelectSlot, RAUC convention (docs/formats.md §3.4)', () => {
  it('decrements the first slot in BOOT_ORDER with attempts left, in hexadecimal', () => {
    const r = ubootSelectSlot(env({ BOOT_ORDER: 'B A', BOOT_A_LEFT: '3', BOOT_B_LEFT: 'a' }), rauc);
    expect(r.slot).toBe('B');
    expect(r.newEnv.get('BOOT_B_LEFT')).toBe('9');
  });

  it('fills in the script defaults and saves them', () => {
    const r = ubootSelectSlot(new Map(), rauc);
    expect(r.slot).toBe('A');
    expect(Object.fromEntries(r.newEnv)).toEqual({ BOOT_ORDER: 'A B', BOOT_A_LEFT: '2', BOOT_B_LEFT: '3' });
  });

  it('with no attempts left anywhere, resets all counters and resets the board', () => {
    const r = ubootSelectSlot(env({ BOOT_ORDER: 'X B', BOOT_A_LEFT: '5', BOOT_B_LEFT: '0' }), rauc);
    expect(r.slot).toBe('rescue');
    expect(r.newEnv.get('BOOT_A_LEFT')).toBe('3');
    expect(r.newEnv.get('BOOT_B_LEFT')).toBe('3');
  });
});

describe('UBootBootControl', () => {
  it('refuses setTryOnce without altbootcmd (the trial could not fall back) and changes nothing', async () => {
    await withTempDir(async (dir) => {
      const cfg = redundant(join(dir, 'env.bin'));
      const initial = ubootInitialEnv(bootcount, 'A');
      initial.delete('altbootcmd');
      await formatUBootEnv(cfg, initial);
      const before = await readFile(join(dir, 'env.bin'));
      const control = new UBootBootControl({ env: cfg, convention: bootcount, bootedSlot: 'A' });
      await expect(control.setTryOnce('B')).rejects.toMatchObject({ code: 'ERR_BOOTCTL_STATE_INVALID' });
      expect(await readFile(join(dir, 'env.bin'))).toEqual(before);
    });
  });

  it('refuses to confirm a slot the selector does not point at (bootcount convention)', async () => {
    await withTempDir(async (dir) => {
      const cfg = redundant(join(dir, 'env.bin'));
      await formatUBootEnv(cfg, ubootInitialEnv(bootcount, 'A'));
      const control = new UBootBootControl({ env: cfg, convention: bootcount, bootedSlot: 'A' });
      await expect(control.markGood('B')).rejects.toMatchObject({
        code: 'ERR_BOOTCTL_STATE_INVALID',
        message: expect.stringContaining('boot_slot="A"'),
      });
    });
  });

  it('confirming an already confirmed slot writes nothing, so per-boot markGood does not wear the flash', async () => {
    for (const convention of [bootcount, rauc]) {
      await withTempDir(async (dir) => {
        const path = join(dir, 'env.bin');
        await formatUBootEnv(redundant(path), ubootInitialEnv(convention, 'A'));
        const before = await readFile(path);
        await new UBootBootControl({ env: redundant(path), convention, bootedSlot: 'A' }).markGood('A');
        expect(await readFile(path)).toEqual(before);
      });
    }
  });

  it('passes a corrupt environment through as ERR_UBOOTENV_NO_VALID_COPY', async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, 'env.bin'), Buffer.alloc(0x4000, 0xff));
      const control = new UBootBootControl({ env: redundant(join(dir, 'env.bin')), convention: rauc });
      await expect(control.getPrimarySlot()).rejects.toMatchObject({ code: 'ERR_UBOOTENV_NO_VALID_COPY' });
    });
  });

  it('honours RAUC attempt counts: tryAttempts for a trial, attempts (hex) when confirmed', async () => {
    await withTempDir(async (dir) => {
      const cfg = redundant(join(dir, 'env.bin'));
      const convention: UBootConvention = { kind: 'rauc', attempts: 10, tryAttempts: 2 };
      await formatUBootEnv(cfg, ubootInitialEnv(convention, 'A'));
      const control = new UBootBootControl({ env: cfg, convention, bootedSlot: 'A' });
      expect((await readUBootEnv(cfg)).vars.get('BOOT_A_LEFT')).toBe('a');
      await control.setTryOnce('B');
      expect(await emulateUBootBoot(cfg, convention)).toBe('B');
      expect(await emulateUBootBoot(cfg, convention)).toBe('B'); // second unconfirmed attempt
      expect(await emulateUBootBoot(cfg, convention)).toBe('A');
      await control.markGood('B');
      expect((await readUBootEnv(cfg)).vars.get('BOOT_B_LEFT')).toBe('a');
    });
  });
});

describeWithTool('fw_printenv', 'libubootenv-tool', 'UBootBootControl and libubootenv', (tool) => {
  it('the try-once write is what fw_printenv shows, in one write (flags advance by one)', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'env.bin');
      const cfg = redundant(path);
      await writeFile(join(dir, 'fw_env.config'), `${path} 0x0 0x2000\n${path} 0x2000 0x2000\n`);
      await formatUBootEnv(cfg, ubootInitialEnv(bootcount, 'A'));
      await new UBootBootControl({ env: cfg, convention: bootcount, bootedSlot: 'A' }).setTryOnce('B');
      const bytes = await readFile(path);
      expect([bytes[4], bytes[0x2004]]).toEqual([1, 2]);
      const r = spawnSync(
        tool,
        ['-c', join(dir, 'fw_env.config'), 'boot_slot', 'upgrade_available', 'bootcount'],
        {
          encoding: 'utf8',
        },
      );
      expect(r.stdout).toBe('boot_slot=B\nupgrade_available=1\nbootcount=0\n');
    });
  });

  it('an environment provisioned with fw_setenv drives a full trial and rollback', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'env.bin');
      const cfg = redundant(path);
      const cfgPath = join(dir, 'fw_env.config');
      await writeFile(cfgPath, `${path} 0x0 0x2000\n${path} 0x2000 0x2000\n`);
      await formatUBootEnv(cfg, new Map([['bootdelay', '0']]));
      const script = [...ubootInitialEnv(rauc, 'A')].map(([k, v]) => `${k}=${v}`).join('\n');
      await writeFile(join(dir, 'script'), `${script}\n`);
      const set = spawnSync(
        tool.replace(/fw_printenv$/, 'fw_setenv'),
        ['-c', cfgPath, '-s', join(dir, 'script')],
        {
          encoding: 'utf8',
        },
      );
      expect(set.status, set.stderr).toBe(0);
      const control = new UBootBootControl({ env: cfg, convention: rauc, bootedSlot: 'A' });
      await control.setTryOnce('B');
      expect(await emulateUBootBoot(cfg, rauc)).toBe('B');
      expect(await emulateUBootBoot(cfg, rauc)).toBe('A');
      const listed = spawnSync(tool, ['-c', cfgPath, 'BOOT_ORDER', 'BOOT_A_LEFT', 'BOOT_B_LEFT'], {
        encoding: 'utf8',
      });
      expect(listed.stdout).toBe('BOOT_ORDER=B A\nBOOT_A_LEFT=2\nBOOT_B_LEFT=0\n');
    });
  });
});
