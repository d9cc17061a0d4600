import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTempDir } from '@abota/testkit';
import { describe, expect, it } from 'vitest';
import {
  type BootState,
  emulateFileBoot,
  FileBootControl,
  fileSelectSlot,
  initialBootState,
  readBootStateFile,
  writeBootStateFile,
} from './file.js';

describe('fileSelectSlot', () => {
  it('boots the first good slot in order without changing the state', () => {
    const state = initialBootState('B');
    expect(fileSelectSlot(state)).toEqual({ slot: 'B', newState: state });
  });

  it('consumes one try of a slot on trial before booting it, and skips it when none are left', () => {
    const state: BootState = {
      ...initialBootState('A'),
      order: ['B', 'A'],
      slots: { A: { status: 'good', triesLeft: 0 }, B: { status: 'try', triesLeft: 1 } },
    };
    const first = fileSelectSlot(state);
    expect(first.slot).toBe('B');
    expect(first.newState.slots.B.triesLeft).toBe(0);
    expect(state.slots.B.triesLeft).toBe(1); // pure: input untouched
    expect(fileSelectSlot(first.newState).slot).toBe('A');
  });

  it('boots rescue when no slot is bootable', () => {
    const state: BootState = {
      ...initialBootState('A'),
      slots: { A: { status: 'bad', triesLeft: 0 }, B: { status: 'try', triesLeft: 0 } },
    };
    expect(fileSelectSlot(state).slot).toBe('rescue');
  });
});

describe('FileBootControl', () => {
  it('allows tryBoots unconfirmed boots before falling back', async () => {
    await withTempDir(async (dir) => {
      const statePath = join(dir, 'state.json');
      await writeBootStateFile(statePath, initialBootState('A'));
      await new FileBootControl({ statePath, tryBoots: 2 }).setTryOnce('B');
      expect([
        await emulateFileBoot(statePath),
        await emulateFileBoot(statePath),
        await emulateFileBoot(statePath),
      ]).toEqual(['B', 'B', 'A']);
    });
  });

  it('writes readable JSON atomically and leaves no temporary files', async () => {
    await withTempDir(async (dir) => {
      const statePath = join(dir, 'state.json');
      await writeBootStateFile(statePath, initialBootState('A'));
      await new FileBootControl({ statePath }).setTryOnce('B');
      expect(JSON.parse(await readFile(statePath, 'utf8'))).toEqual({
        format: 'abota-boot-state',
        version: 1,
        order: ['B', 'A'],
        slots: { A: { status: 'good', triesLeft: 0 }, B: { status: 'try', triesLeft: 1 } },
      });
      expect(await readdir(dir)).toEqual(['state.json']);
    });
  });

  it.each([
    ['not JSON', '{', 'not JSON'],
    ['a wrong format tag', JSON.stringify({ ...initialBootState(), format: 'x' }), 'format'],
    ['a slot listed twice', JSON.stringify({ ...initialBootState(), order: ['A', 'A'] }), 'twice'],
    [
      'an unknown status',
      JSON.stringify({
        ...initialBootState(),
        slots: { A: { status: 'ok', triesLeft: 0 }, B: { status: 'bad', triesLeft: 0 } },
      }),
      'slots.A.status',
    ],
  ])('rejects a state file with %s as ERR_BOOTCTL_STATE_INVALID', async (_what, content, where) => {
    await withTempDir(async (dir) => {
      const statePath = join(dir, 'state.json');
      await writeFile(statePath, content);
      await expect(readBootStateFile(statePath)).rejects.toMatchObject({
        code: 'ERR_BOOTCTL_STATE_INVALID',
        message: expect.stringContaining(where),
      });
      // And the control leaves the bad file alone rather than overwrite it.
      await expect(new FileBootControl({ statePath }).markGood('A')).rejects.toMatchObject({
        code: 'ERR_BOOTCTL_STATE_INVALID',
      });
      expect(await readFile(statePath, 'utf8')).toBe(content);
    });
  });

  it('reports a missing state file as ERR_BOOTCTL_STATE_MISSING', async () => {
    await withTempDir(async (dir) => {
      await expect(
        new FileBootControl({ statePath: join(dir, 'nope.json') }).getPrimarySlot(),
      ).rejects.toMatchObject({
        code: 'ERR_BOOTCTL_STATE_MISSING',
      });
    });
  });
});
