import { spawnSync } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describeWithTool, withTempDir } from '@abota/testkit';
import { describe, expect, it } from 'vitest';
import { emulateGrubBoot, GrubBootControl, grubSelectSlot } from './grub.js';
import { createGrubEnvFile, readGrubEnvFile } from './grubenv.js';

const env = (o: Record<string, string>) => new Map(Object.entries(o));

describe('grubSelectSlot: RAUC grub.cfg selection (docs/formats.md §2.3)', () => {
  it('picks the first slot in ORDER that is OK and untried, persisting its TRY=1', () => {
    const { slot, newEnv } = grubSelectSlot(
      env({ ORDER: 'B A', A_OK: '1', A_TRY: '0', B_OK: '1', B_TRY: '0' }),
    );
    expect(slot).toBe('B');
    expect(Object.fromEntries(newEnv)).toEqual({
      ORDER: 'B A',
      A_OK: '1',
      A_TRY: '0',
      B_OK: '1',
      B_TRY: '1',
    });
  });

  it('skips a tried slot and marks every slot it passes as tried', () => {
    const { slot, newEnv } = grubSelectSlot(
      env({ ORDER: 'B A', A_OK: '1', A_TRY: '0', B_OK: '1', B_TRY: '1' }),
    );
    expect(slot).toBe('A');
    expect(newEnv.get('A_TRY')).toBe('1');
    expect(newEnv.get('B_TRY')).toBe('1');
  });

  it('boots rescue when nothing is selectable and gives good-but-tried slots another chance', () => {
    const first = grubSelectSlot(env({ ORDER: 'A B', A_OK: '1', A_TRY: '1', B_OK: '0', B_TRY: '1' }));
    expect(first.slot).toBe('rescue');
    expect(first.newEnv.get('A_TRY')).toBe('0');
    expect(first.newEnv.get('B_TRY')).toBe('1'); // not OK: stays tried
    expect(grubSelectSlot(first.newEnv).slot).toBe('A');
  });

  it('applies the script defaults to an empty grubenv and saves all five variables', () => {
    const { slot, newEnv } = grubSelectSlot(new Map());
    expect(slot).toBe('rescue');
    expect(Object.fromEntries(newEnv)).toEqual({
      A_TRY: '1',
      A_OK: '0',
      B_TRY: '1',
      B_OK: '0',
      ORDER: 'A B',
    });
  });

  it('ignores unknown bootnames, reads non-numbers as 0 and keeps unrelated variables', () => {
    const { slot, newEnv } = grubSelectSlot(env({ ORDER: 'C A', A_OK: 'yes', B_OK: '1', saved_entry: 'x' }));
    expect(slot).toBe('rescue'); // B is not in ORDER; A_OK "yes" is 0
    expect(newEnv.get('saved_entry')).toBe('x');
    expect(grubSelectSlot(env({ ORDER: 'C B', B_OK: '1' })).slot).toBe('B');
  });
});

describe('GrubBootControl', () => {
  it('reports ERR_BOOTCTL_STATE_MISSING with the command to run when the grubenv does not exist', async () => {
    await withTempDir(async (dir) => {
      const control = new GrubBootControl({ envPath: join(dir, 'grubenv'), bootedSlot: 'A' });
      await expect(control.markGood('A')).rejects.toMatchObject({
        code: 'ERR_BOOTCTL_STATE_MISSING',
        message: expect.stringContaining('grub-editenv'),
      });
    });
  });

  it('keeps the grubenv 1024 bytes through updates and emulated boots (GRUB save_env needs a fixed size)', async () => {
    await withTempDir(async (dir) => {
      const envPath = join(dir, 'grubenv');
      await createGrubEnvFile(envPath);
      const control = new GrubBootControl({ envPath, bootedSlot: 'A' });
      await control.setPrimary('A');
      await control.setTryOnce('B');
      expect(await emulateGrubBoot(envPath)).toBe('B');
      await control.markBad('B');
      expect((await stat(envPath)).size).toBe(1024);
      expect(Object.fromEntries((await readGrubEnvFile(envPath)).vars)).toEqual({
        A_OK: '1',
        A_TRY: '0',
        ORDER: 'B A',
        B_OK: '0',
        B_TRY: '0',
      });
    });
  });

  it('rejects slot names other than A and B', async () => {
    await withTempDir(async (dir) => {
      const control = new GrubBootControl({ envPath: join(dir, 'grubenv') });
      // @ts-expect-error: JavaScript callers and config files can pass anything
      await expect(control.setPrimary('C')).rejects.toMatchObject({ code: 'ERR_BOOTCTL_UNKNOWN_SLOT' });
    });
  });
});

describeWithTool('grub-editenv', 'grub-common', 'GrubBootControl and grub-editenv', (tool) => {
  const editenv = (...args: string[]) => {
    const r = spawnSync(tool, args, { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout;
  };

  it('writes the same bytes as the grub-editenv calls RAUC makes for the same transitions', async () => {
    await withTempDir(async (dir) => {
      const ours = join(dir, 'ours');
      const theirs = join(dir, 'theirs');
      await createGrubEnvFile(ours);
      editenv(theirs, 'create');
      const control = new GrubBootControl({ envPath: ours, bootedSlot: 'A' });
      const steps: [() => Promise<void>, string[]][] = [
        [() => control.setPrimary('A'), ['A_OK=1', 'A_TRY=0', 'ORDER=A B']],
        [() => control.markGood('A'), ['A_OK=1', 'A_TRY=0']],
        [() => control.setTryOnce('B'), ['B_OK=1', 'B_TRY=0', 'ORDER=B A']],
        [() => control.markBad('B'), ['B_OK=0', 'B_TRY=0']],
      ];
      for (const [ourStep, theirArgs] of steps) {
        await ourStep();
        editenv(theirs, 'set', ...theirArgs);
        expect(await readFile(ours)).toEqual(await readFile(theirs));
      }
    });
  });

  it('an emulated GRUB boot leaves a grubenv that grub-editenv lists as expected', async () => {
    await withTempDir(async (dir) => {
      const envPath = join(dir, 'grubenv');
      editenv(envPath, 'create');
      editenv(envPath, 'set', 'ORDER=B A', 'A_OK=1', 'A_TRY=0', 'B_OK=1', 'B_TRY=0', 'saved_entry=0');
      expect(await emulateGrubBoot(envPath)).toBe('B');
      expect(editenv(envPath, 'list')).toBe('ORDER=B A\nA_OK=1\nA_TRY=0\nB_OK=1\nB_TRY=1\nsaved_entry=0\n');
    });
  });
});
