import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeWithTool, withTempDir } from '@abota/testkit';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ClientError } from '../errors.js';
import {
  currentCopyIndex,
  decodeUBootEnv,
  editUBootEnv,
  encodeUBootEnv,
  formatUBootEnv,
  parseFwEnvConfig,
  readFwEnvConfigFile,
  readUBootEnv,
  type UBootEnvConfig,
} from './ubootenv.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const SIZE = 0x4000;
const EXAMPLE = new Map([
  ['bootcount', '0'],
  ['bootlimit', '3'],
  ['upgrade_available', '1'],
]);

function single(path: string): UBootEnvConfig {
  return { copies: [{ path, offsetBytes: 0, sizeBytes: SIZE }] };
}
function redundant(path: string): UBootEnvConfig {
  return {
    copies: [
      { path, offsetBytes: 0, sizeBytes: SIZE },
      { path, offsetBytes: SIZE, sizeBytes: SIZE },
    ],
  };
}

describe('U-Boot env image (docs/formats.md §3.1)', () => {
  it('matches the worked example and the three known SHA-256 answers', () => {
    const zero = encodeUBootEnv(EXAMPLE, { sizeBytes: SIZE, redundant: false, padByte: 0 });
    expect(Buffer.from(zero.subarray(0, 4)).toString('hex')).toBe('e503abbd');
    expect(sha256(zero)).toBe('fd06bee8e9ddf789af1e354fd0d279e2dbe26ef6a87e62665c85c68226619b6e');
    const ff = encodeUBootEnv(EXAMPLE, { sizeBytes: SIZE, redundant: false, padByte: 0xff });
    expect(sha256(ff)).toBe('8efd6083365f3bb5768ecb09d12e60fe1652ee79a9819daccb5ed622c19f8908');
    const red = encodeUBootEnv(EXAMPLE, { sizeBytes: SIZE, redundant: true, flags: 1, padByte: 0xff });
    expect(sha256(red)).toBe('e44901be8351ece0028785578f4d2b2ea1377e4dae7d24a00e5b0c86a1302b46');
  });

  it('sorts variables by name and ends the list with a double NUL', () => {
    const img = encodeUBootEnv(
      new Map([
        ['b', '2'],
        ['a', '1'],
      ]),
      { sizeBytes: 64, redundant: false, padByte: 0xff },
    );
    expect(Buffer.from(img.subarray(4, 13)).toString('latin1')).toBe('a=1\0b=2\0\0');
    expect(img[13]).toBe(0xff);
  });

  it('decodes what it encodes, in both modes, with any padding (property)', () => {
    const name = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_.-]{0,15}$/);
    const value = fc.string({ maxLength: 40 }).filter((v) => !v.includes('\0'));
    fc.assert(
      fc.property(
        fc.dictionary(name, value, { maxKeys: 20 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 255 }),
        (vars, red, flags, padByte) => {
          const map = new Map(Object.entries(vars));
          const img = encodeUBootEnv(map, { sizeBytes: 2048, redundant: red, flags, padByte });
          const d = decodeUBootEnv(img, red);
          expect(d.crcValid).toBe(true);
          expect(d.flags).toBe(red ? flags : undefined);
          expect(d.vars).toEqual(map);
        },
      ),
      { seed: 7, numRuns: 200 },
    );
  });

  it('detects a corrupted data byte (also in the padding) but not a changed flags byte', () => {
    const img = encodeUBootEnv(EXAMPLE, { sizeBytes: 256, redundant: true, flags: 5 });
    const pad = Uint8Array.from(img);
    pad[200] = 1;
    expect(decodeUBootEnv(pad, true).crcValid).toBe(false);
    const flag = Uint8Array.from(img);
    flag[4] = 9;
    expect(decodeUBootEnv(flag, true)).toMatchObject({ crcValid: true, flags: 9 });
  });

  it('refuses variables that do not fit or cannot be stored', () => {
    const big = new Map([['x', 'y'.repeat(100)]]);
    expect(() => encodeUBootEnv(big, { sizeBytes: 100, redundant: false })).toThrow(
      expect.objectContaining({ code: 'ERR_UBOOTENV_TOO_LARGE' }),
    );
    for (const [k, v] of [
      ['a=b', '1'],
      ['', '1'],
      ['a', 'x\0y'],
    ] as const) {
      expect(() => encodeUBootEnv(new Map([[k, v]]), { sizeBytes: 100, redundant: false })).toThrow(
        expect.objectContaining({ code: 'ERR_UBOOTENV_BAD_VARIABLE' }),
      );
    }
  });
});

describe('redundant copy selection (docs/formats.md §3.2)', () => {
  const v = (flags: number) => ({ crcValid: true, flags });
  it.each([
    [1, 1, 0],
    [1, 2, 1],
    [3, 2, 0],
    [7, 6, 0],
    [255, 0, 1],
    [0, 255, 0],
    [254, 255, 1],
  ])('flags %i / %i → copy %i is current', (f0, f1, want) => {
    expect(currentCopyIndex(v(f0), v(f1))).toBe(want);
  });
  it('uses the only copy with a valid CRC, and none when both are bad', () => {
    expect(currentCopyIndex({ crcValid: false, flags: 9 }, v(1))).toBe(1);
    expect(currentCopyIndex(v(1), { crcValid: false, flags: 9 })).toBe(0);
    expect(currentCopyIndex({ crcValid: false, flags: 1 }, { crcValid: false, flags: 2 })).toBeUndefined();
  });
});

describe('fw_env.config (docs/formats.md §3.3)', () => {
  it('reads offsets like %lli and sizes as hexadecimal, skipping comments', () => {
    const cfg = parseFwEnvConfig('# env\n/tmp/env.bin 0x0 0x4000\n\n/tmp/env.bin 16384 4000 0x1000 1\n');
    expect(cfg.copies).toEqual([
      { path: '/tmp/env.bin', offsetBytes: 0, sizeBytes: 0x4000 },
      { path: '/tmp/env.bin', offsetBytes: 16384, sizeBytes: 0x4000 },
    ]);
    expect(parseFwEnvConfig('/dev/mmcblk0 010 0x20').copies[0].offsetBytes).toBe(8);
  });
  it.each([
    ['a 0 0x4000\na 0x4000 0x4000\na 0x8000 0x4000', 'three lines'],
    ['a 0 0x4000\na 0x4000 0x2000', 'different sizes'],
    ['a 0 0x4000\na 0x2000 0x4000', 'overlapping copies'],
    ['a zero 0x4000', 'a bad offset'],
    ['a 0 size', 'a bad size'],
    ['a 0', 'a missing size'],
    ['', 'no lines'],
  ])('rejects %j (%s) with ERR_UBOOTENV_CONFIG', (text) => {
    expect(() => parseFwEnvConfig(text)).toThrow(expect.objectContaining({ code: 'ERR_UBOOTENV_CONFIG' }));
  });
});

describe('reading and writing copies', () => {
  it('writes the non-current copy with flags + 1 and wraps 255 → 0', async () => {
    await withTempDir(async (dir) => {
      const f = join(dir, 'env.bin');
      const cfg = redundant(f);
      const img = (flags: number, vars: Map<string, string>) =>
        encodeUBootEnv(vars, { sizeBytes: SIZE, redundant: true, flags });
      await writeFile(
        f,
        Buffer.concat([img(254, new Map([['v', 'old']])), img(255, new Map([['v', 'new']]))]),
      );
      expect(await readUBootEnv(cfg)).toMatchObject({
        copyIndex: 1,
        flags: 255,
        vars: new Map([['v', 'new']]),
      });
      await editUBootEnv(cfg, [['v', 'newer']]);
      const bytes = await readFile(f);
      expect(bytes[4]).toBe(0); // copy 0 rewritten with 255 + 1 = 0 …
      expect(await readUBootEnv(cfg)).toMatchObject({
        copyIndex: 0,
        flags: 0,
        vars: new Map([['v', 'newer']]),
      });
      await editUBootEnv(cfg, [['v', 'newest']]);
      expect((await readFile(f))[SIZE + 4]).toBe(1); // … and it counts on from there
    });
  });

  it('writes nothing when an edit changes nothing', async () => {
    await withTempDir(async (dir) => {
      const f = join(dir, 'env.bin');
      await formatUBootEnv(redundant(f), EXAMPLE);
      const before = await readFile(f);
      await editUBootEnv(redundant(f), [['bootcount', '0']]);
      expect(await readFile(f)).toEqual(before);
    });
  });

  it('reports ERR_UBOOTENV_NO_VALID_COPY for a missing or blank environment', async () => {
    await withTempDir(async (dir) => {
      const f = join(dir, 'env.bin');
      await expect(readUBootEnv(redundant(f))).rejects.toMatchObject({ code: 'ERR_UBOOTENV_NO_VALID_COPY' });
      await writeFile(f, Buffer.alloc(2 * SIZE));
      await expect(readUBootEnv(redundant(f))).rejects.toMatchObject({ code: 'ERR_UBOOTENV_NO_VALID_COPY' });
    });
  });
});

describe('concurrent edits in one process', () => {
  it('serialises them: every update lands and the flags advance once per write', async () => {
    await withTempDir(async (dir) => {
      const f = join(dir, 'env.bin');
      await formatUBootEnv(redundant(f), new Map());
      await Promise.all(
        Array.from({ length: 20 }, (_, i) => editUBootEnv(redundant(f), [[`v${i}`, String(i)]])),
      );
      const state = await readUBootEnv(redundant(f));
      expect(state.vars.size).toBe(20);
      expect(state.flags).toBe(21);
    });
  });
});

describeWithTool('mkenvimage', 'u-boot-tools', 'U-Boot env images identical to mkenvimage', (tool) => {
  it.each([
    [[], 0xff, false],
    [['-p', '0'], 0, false],
    [['-r'], 0xff, true],
  ] as const)('mkenvimage %j gives the same bytes (input order kept)', async (args, padByte, red) => {
    await withTempDir(async (dir) => {
      const vars = new Map([
        ['upgrade_available', '1'],
        ['bootcount', '0'],
        ['bootargs', 'console=ttyS0 root=/dev/vda2 abota.slot=A'],
      ]);
      await writeFile(join(dir, 'in.txt'), [...vars].map(([k, v]) => `${k}=${v}\n`).join(''));
      const r = spawnSync(tool, ['-s', '0x4000', ...args, '-o', join(dir, 'out.bin'), join(dir, 'in.txt')]);
      expect(r.status).toBe(0);
      const ours = encodeUBootEnv(vars, { sizeBytes: SIZE, redundant: red, flags: 1, padByte, sort: false });
      expect(Buffer.from(ours)).toEqual(await readFile(join(dir, 'out.bin')));
    });
  });
});

describeWithTool(
  'fw_printenv',
  'libubootenv-tool',
  'U-Boot env interoperability with fw_printenv/fw_setenv',
  (tool) => {
    const fwSetenv = tool.replace(/fw_printenv$/, 'fw_setenv');

    async function writeConfig(dir: string, cfg: UBootEnvConfig): Promise<string> {
      const path = join(dir, 'fw_env.config');
      await writeFile(
        path,
        cfg.copies
          .map((c) => `${c.path} 0x${c.offsetBytes.toString(16)} 0x${c.sizeBytes.toString(16)}\n`)
          .join(''),
      );
      return path;
    }
    function fwPrintenv(cfgPath: string): { status: number | null; vars: Map<string, string> } {
      const r = spawnSync(tool, ['-c', cfgPath], { encoding: 'utf8' });
      const vars = new Map<string, string>();
      for (const line of r.stdout.split('\n')) {
        const eq = line.indexOf('=');
        if (eq > 0) vars.set(line.slice(0, eq), line.slice(eq + 1));
      }
      return { status: r.status, vars };
    }
    function fwSet(cfgPath: string, ...args: string[]): void {
      const r = spawnSync(fwSetenv, ['-c', cfgPath, ...args], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
    }
    const flagsOf = async (f: string) => {
      const b = await readFile(f);
      return [b[4], b[SIZE + 4]];
    };

    it('fw_printenv reads what abota writes, and abota reads what fw_setenv writes (single copy)', async () => {
      await withTempDir(async (dir) => {
        const cfg = single(join(dir, 'env.bin'));
        const cfgPath = await writeConfig(dir, cfg);
        await formatUBootEnv(cfg, EXAMPLE);
        await editUBootEnv(cfg, [
          ['boot_slot', 'B'],
          ['bootcount', undefined],
          ['cmd', 'setenv a "x y"; run b'],
        ]);
        expect(fwPrintenv(cfgPath)).toEqual({
          status: 0,
          vars: new Map([
            ['boot_slot', 'B'],
            ['bootlimit', '3'],
            ['cmd', 'setenv a "x y"; run b'],
            ['upgrade_available', '1'],
          ]),
        });
        fwSet(cfgPath, 'upgrade_available', '0', 'bootcount', '0', 'boot_slot');
        expect((await readUBootEnv(cfg)).vars).toEqual(
          new Map([
            ['bootcount', '0'],
            ['bootlimit', '3'],
            ['cmd', 'setenv a "x y"; run b'],
            ['upgrade_available', '0'],
          ]),
        );
      });
    });

    it('redundant copies: flags progress 1/1 → copy1=2 → copy0=3 → copy1=4 → copy0=5 across both tools', async () => {
      await withTempDir(async (dir) => {
        const f = join(dir, 'env.bin');
        const cfg = redundant(f);
        const cfgPath = await writeConfig(dir, cfg);
        await formatUBootEnv(cfg, EXAMPLE);
        expect(await flagsOf(f)).toEqual([1, 1]);
        fwSet(cfgPath, 'step', '1');
        expect(await flagsOf(f)).toEqual([1, 2]);
        expect(await readUBootEnv(cfg)).toMatchObject({ copyIndex: 1, flags: 2 });
        await editUBootEnv(cfg, [['step', '2']]);
        expect(await flagsOf(f)).toEqual([3, 2]);
        expect(fwPrintenv(cfgPath).vars.get('step')).toBe('2');
        fwSet(cfgPath, 'step', '3');
        expect(await flagsOf(f)).toEqual([3, 4]);
        await editUBootEnv(cfg, [['step', '4']]);
        expect(await flagsOf(f)).toEqual([5, 4]);
        expect(fwPrintenv(cfgPath).vars).toEqual(new Map([...EXAMPLE, ['step', '4']]));
        // fw_setenv with nothing to change does not write either: the flags stay put.
        fwSet(cfgPath, 'step', '4');
        expect(await flagsOf(f)).toEqual([5, 4]);
      });
    });

    it('both tools pick the 0 copy over the 255 copy (wrap-around) and write after it', async () => {
      await withTempDir(async (dir) => {
        const f = join(dir, 'env.bin');
        const cfg = redundant(f);
        const cfgPath = await writeConfig(dir, cfg);
        const img = (flags: number, v: string) =>
          encodeUBootEnv(new Map([['v', v]]), { sizeBytes: SIZE, redundant: true, flags });
        await writeFile(f, Buffer.concat([img(255, 'older'), img(0, 'newer')]));
        expect(fwPrintenv(cfgPath).vars.get('v')).toBe('newer');
        expect(await readUBootEnv(cfg)).toMatchObject({ copyIndex: 1, vars: new Map([['v', 'newer']]) });
        await editUBootEnv(cfg, [['v', 'newest']]);
        expect(await flagsOf(f)).toEqual([1, 0]);
        expect(fwPrintenv(cfgPath).vars.get('v')).toBe('newest');
      });
    });

    it('a copy with a bad CRC is ignored by both tools, and the next write replaces it', async () => {
      await withTempDir(async (dir) => {
        const f = join(dir, 'env.bin');
        const cfg = redundant(f);
        const cfgPath = await writeConfig(dir, cfg);
        await formatUBootEnv(cfg, new Map([['v', 'one']]));
        await editUBootEnv(cfg, [['v', 'two']]); // copy 1, flags 2: current
        const bytes = await readFile(f);
        bytes[SIZE + 5] = bytes[SIZE + 5]! ^ 0xff; // corrupt copy 1's first data byte
        await writeFile(f, bytes);
        expect(fwPrintenv(cfgPath).vars.get('v')).toBe('one');
        expect(await readUBootEnv(cfg)).toMatchObject({ copyIndex: 0, vars: new Map([['v', 'one']]) });
        await editUBootEnv(cfg, [['v', 'three']]);
        expect(fwPrintenv(cfgPath).vars.get('v')).toBe('three');
      });
    });

    it('neither tool reads an environment whose copies both have a bad CRC', async () => {
      await withTempDir(async (dir) => {
        const f = join(dir, 'env.bin');
        const cfg = redundant(f);
        const cfgPath = await writeConfig(dir, cfg);
        await writeFile(f, Buffer.alloc(2 * SIZE, 0xff));
        expect(fwPrintenv(cfgPath).status).not.toBe(0);
        await expect(readUBootEnv(cfg)).rejects.toMatchObject({ code: 'ERR_UBOOTENV_NO_VALID_COPY' });
      });
    });

    it('random environments written by abota read back identically through fw_printenv', async () => {
      await withTempDir(async (dir) => {
        const f = join(dir, 'env.bin');
        const cfg = redundant(f);
        const cfgPath = await writeConfig(dir, cfg);
        await formatUBootEnv(cfg, new Map());
        const name = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,12}$/);
        const value = fc.string({
          unit: fc.constantFrom('a', 'Z', '0', ' ', '=', '"', ';', '$', '{', '}', 'é'),
          maxLength: 40,
        });
        await fc.assert(
          fc.asyncProperty(fc.dictionary(name, value, { maxKeys: 15 }), async (vars) => {
            const current = await readUBootEnv(cfg);
            const edits: [string, string | undefined][] = [...current.vars.keys()].map((k) => [k, undefined]);
            edits.push(...Object.entries(vars));
            await editUBootEnv(cfg, edits);
            const printed = fwPrintenv(cfgPath);
            expect(printed.status).toBe(0);
            expect(printed.vars).toEqual(new Map(Object.entries(vars)));
          }),
          { seed: 11, numRuns: 25 },
        );
      });
    });

    it('error objects carry a code a caller can branch on', async () => {
      await withTempDir(async (dir) => {
        const err = (await readUBootEnv(single(join(dir, 'none'))).catch((e: unknown) => e)) as ClientError;
        expect(err.code).toBe('ERR_UBOOTENV_NO_VALID_COPY');
        expect(err.message).toContain(join(dir, 'none'));
      });
    });
  },
);

describe('fw_env.config files', () => {
  it('reads the file fw_setenv uses and names a missing one in the error', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'fw_env.config');
      await expect(readFwEnvConfigFile(path)).rejects.toMatchObject({
        code: 'ERR_UBOOTENV_CONFIG',
        message: expect.stringContaining(path),
      });
      await writeFile(path, '/dev/mmcblk0 0x400000 0x20000\n/dev/mmcblk0 0x420000 0x20000\n');
      expect((await readFwEnvConfigFile(path)).copies.map((c) => c.offsetBytes)).toEqual([
        0x400000, 0x420000,
      ]);
    });
  });
});
