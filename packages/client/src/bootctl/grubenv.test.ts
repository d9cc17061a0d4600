import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeWithTool, withTempDir } from '@abota/testkit';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ClientError } from '../errors.js';
import {
  createGrubEnv,
  createGrubEnvFile,
  editGrubEnv,
  editGrubEnvFile,
  type GrubEnvEdit,
  parseGrubEnv,
  setGrubEnv,
} from './grubenv.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const text = (b: Uint8Array) => Buffer.from(b).toString('latin1');

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof ClientError ? e.code : `not a ClientError: ${String(e)}`;
  }
  return undefined;
}

describe('grubenv format (docs/formats.md §2.1)', () => {
  it('creates the empty 1024-byte block with the known SHA-256', () => {
    const block = createGrubEnv();
    expect(block.length).toBe(1024);
    expect(sha256(block)).toBe('f64122858064885ef0733e42c6a3d2d3fd642671f714db0d974b880c0f087430');
  });

  it('matches the known SHA-256 after setting ORDER and the RAUC flags', () => {
    const block = setGrubEnv(createGrubEnv(), [
      ['ORDER', 'A B'],
      ['A_OK', '0'],
      ['B_OK', '0'],
      ['A_TRY', '0'],
      ['B_TRY', '0'],
    ]);
    const lines = 'ORDER=A B\nA_OK=0\nB_OK=0\nA_TRY=0\nB_TRY=0\n';
    expect(text(block.subarray(94, 94 + lines.length + 1))).toBe(`${lines}#`);
    expect(sha256(block)).toBe('99f562699aca414a25eabcda6731acc0e86902b75e96a9255c04397bc9bfd702');
  });

  it('escapes backslash and newline only, and reads them back', () => {
    const value = 'a b=c\\d\ne"f\'';
    const block = setGrubEnv(createGrubEnv(), [['X', value]]);
    const stored = 'X=a b=c\\\\d\\\ne"f\'\n';
    expect(text(block.subarray(94, 94 + stored.length + 1))).toBe(`${stored}#`);
    expect(parseGrubEnv(block).get('X')).toBe(value);
  });

  it('rewrites an existing variable in place, keeping order and block size', () => {
    let block = setGrubEnv(createGrubEnv(), [
      ['A', '1'],
      ['B', '2'],
      ['C', '3'],
    ]);
    block = setGrubEnv(block, [['A', 'longer value']]);
    expect([...parseGrubEnv(block).keys()]).toEqual(['A', 'B', 'C']);
    block = editGrubEnv(block, [{ op: 'unset', name: 'B' }]);
    expect(text(block.subarray(94, 94 + 21))).toBe('A=longer value\nC=3\n##');
    expect(block.length).toBe(1024);
    expect(block.subarray(94 + 20).every((b) => b === 0x23)).toBe(true);
  });

  it('fails with ERR_GRUBENV_TOO_SMALL when a value does not fit, leaving the input untouched', () => {
    const block = setGrubEnv(createGrubEnv(), [['X', 'y']]);
    const copy = Uint8Array.from(block);
    // 930 bytes of lines fit; "X=y\n" uses 4, so "Z=…\n" may take exactly the other 926.
    expect(codeOf(() => setGrubEnv(block, [['Z', 'z'.repeat(924)]]))).toBe('ERR_GRUBENV_TOO_SMALL');
    expect(codeOf(() => setGrubEnv(block, [['Z', 'z'.repeat(923)]]))).toBeUndefined();
    expect(block).toEqual(copy);
  });

  it('rejects a block without the signature, an unterminated variable and a line without "="', () => {
    const good = setGrubEnv(createGrubEnv(), [['X', '1']]);
    const noSig = Uint8Array.from(good);
    noSig[2] = 0x67;
    expect(codeOf(() => parseGrubEnv(noSig))).toBe('ERR_GRUBENV_INVALID');
    const unterminated = new TextEncoder().encode('# GRUB Environment Block\nX=1');
    expect(codeOf(() => parseGrubEnv(unterminated))).toBe('ERR_GRUBENV_INVALID');
    const noEquals = new TextEncoder().encode('# GRUB Environment Block\nhello\n###');
    expect(codeOf(() => parseGrubEnv(noEquals))).toBe('ERR_GRUBENV_INVALID');
  });

  it('refuses to edit a block whose padding is not preceded by a newline', () => {
    const broken = new TextEncoder().encode('# GRUB Environment Block\n#comment###');
    expect(parseGrubEnv(broken).size).toBe(0);
    expect(codeOf(() => setGrubEnv(broken, [['X', '1']]))).toBe('ERR_GRUBENV_INVALID');
  });

  it('refuses names that would read back as something else', () => {
    for (const name of ['', 'A=B', '#A', 'A\nB', 'A\\B']) {
      expect(codeOf(() => setGrubEnv(createGrubEnv(), [[name, '1']]))).toBe('ERR_GRUBENV_BAD_VARIABLE');
    }
    expect(codeOf(() => setGrubEnv(createGrubEnv(), [['A', 'x\0y']]))).toBe('ERR_GRUBENV_BAD_VARIABLE');
  });

  it('writes files atomically: same size, mode kept, symlink followed, no temp file left behind', async () => {
    await withTempDir(async (dir) => {
      const real = join(dir, 'grubenv');
      await createGrubEnvFile(real);
      await chmod(real, 0o600);
      await symlink('grubenv', join(dir, 'link'));
      await editGrubEnvFile(join(dir, 'link'), [{ op: 'set', name: 'ORDER', value: 'B A' }]);
      expect((await stat(real)).mode & 0o777).toBe(0o600);
      expect((await stat(real)).size).toBe(1024);
      expect(parseGrubEnv(await readFile(real)).get('ORDER')).toBe('B A');
      expect((await readdir(dir)).sort()).toEqual(['grubenv', 'link']);
    });
  });
});

describe('concurrent edits in one process', () => {
  it('serialises read–modify–write cycles on the same file, so no update is lost', async () => {
    await withTempDir(async (dir) => {
      const f = join(dir, 'grubenv');
      await createGrubEnvFile(f);
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          editGrubEnvFile(f, [{ op: 'set', name: `V${i}`, value: String(i) }]),
        ),
      );
      const vars = parseGrubEnv(await readFile(f));
      expect([...vars.keys()].sort()).toEqual(Array.from({ length: 20 }, (_, i) => `V${i}`).sort());
    });
  });

  it('a failing edit does not block the ones queued after it', async () => {
    await withTempDir(async (dir) => {
      const f = join(dir, 'grubenv');
      await createGrubEnvFile(f);
      const results = await Promise.allSettled([
        editGrubEnvFile(f, [{ op: 'set', name: 'BIG', value: 'x'.repeat(2000) }]),
        editGrubEnvFile(f, [{ op: 'set', name: 'SMALL', value: '1' }]),
      ]);
      expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled']);
      expect(parseGrubEnv(await readFile(f)).get('SMALL')).toBe('1');
    });
  });
});

describeWithTool('grub-editenv', 'grub-common', 'grubenv interoperability with grub-editenv', (tool) => {
  function grubEditenv(args: string[]) {
    const r = spawnSync(tool, args, { encoding: 'utf8' });
    return { status: r.status, stderr: r.stderr };
  }

  it('creates the same bytes as grub-editenv create', async () => {
    await withTempDir(async (dir) => {
      expect(grubEditenv([join(dir, 'g'), 'create']).status).toBe(0);
      await createGrubEnvFile(join(dir, 'a'));
      expect(await readFile(join(dir, 'a'))).toEqual(await readFile(join(dir, 'g')));
    });
  });

  const unit = fc.constantFrom('A', 'B', ' ', '0', '1', '\\', '\n', 'x', '=', '"', 'é');
  const edit = fc.record({
    byGrub: fc.boolean(),
    unset: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
    name: fc.constantFrom('ORDER', 'A_OK', 'B_OK', 'A_TRY', 'B_TRY', 'X', 'LONGER_NAME'),
    value: fc.oneof(
      { weight: 3, arbitrary: fc.string({ unit, maxLength: 30 }) },
      { weight: 1, arbitrary: fc.string({ unit, minLength: 150, maxLength: 500 }) },
    ),
  });

  it('mixed abota / grub-editenv edits stay byte-identical to grub-editenv alone (300 random edits)', async () => {
    let edits = 0;
    let tooSmall = 0;
    await withTempDir(async (dir) => {
      await fc.assert(
        fc.asyncProperty(fc.array(edit, { minLength: 30, maxLength: 30 }), async (ops) => {
          const mixed = join(dir, 'mixed');
          const reference = join(dir, 'reference');
          await writeFile(mixed, createGrubEnv());
          expect(grubEditenv([reference, 'create']).status).toBe(0);
          let model = createGrubEnv();
          for (const op of ops) {
            edits++;
            const e: GrubEnvEdit = op.unset
              ? { op: 'unset', name: op.name }
              : { op: 'set', name: op.name, value: op.value };
            const args = op.unset ? ['unset', op.name] : ['set', `${op.name}=${op.value}`];
            let expectedError: string | undefined;
            try {
              model = editGrubEnv(model, [e]);
            } catch (err) {
              expectedError = (err as ClientError).code;
            }
            const before = await readFile(mixed);
            const ref = grubEditenv([reference, ...args]);
            if (op.byGrub) {
              const r = grubEditenv([mixed, ...args]);
              expect(r.status).toBe(expectedError === undefined ? 0 : 1);
            } else {
              const code = await editGrubEnvFile(mixed, [e]).then(
                () => undefined,
                (err: unknown) => (err as ClientError).code,
              );
              expect(code).toBe(expectedError);
            }
            if (expectedError !== undefined) {
              tooSmall++;
              expect(expectedError).toBe('ERR_GRUBENV_TOO_SMALL');
              expect(ref.status).toBe(1);
              expect(ref.stderr).toContain('environment block too small');
              expect(await readFile(mixed)).toEqual(before);
            } else {
              expect(ref.status).toBe(0);
            }
            const refBytes = await readFile(reference);
            expect(Buffer.from(model)).toEqual(refBytes);
            expect(await readFile(mixed)).toEqual(refBytes);
          }
          const listing = spawnSync(tool, [mixed, 'list']).stdout;
          const ours = [...parseGrubEnv(model)].map(([k, v]) => `${k}=${v}\n`).join('');
          expect(listing.toString('utf8')).toBe(ours);
        }),
        { seed: 20261125, numRuns: 10 },
      );
    });
    expect(edits).toBe(300);
    expect(tooSmall).toBeGreaterThan(0); // the sequence did exercise "environment block too small"
  });

  it('a multi-variable set that does not fit changes nothing, for grub-editenv and for abota', async () => {
    await withTempDir(async (dir) => {
      const f = join(dir, 'g');
      expect(grubEditenv([f, 'create']).status).toBe(0);
      const before = await readFile(f);
      const r = grubEditenv([f, 'set', 'A=1', `B=${'b'.repeat(1000)}`]);
      expect(r.status).toBe(1);
      expect(await readFile(f)).toEqual(before);
      await expect(
        editGrubEnvFile(f, [
          { op: 'set', name: 'A', value: '1' },
          { op: 'set', name: 'B', value: 'b'.repeat(1000) },
        ]),
      ).rejects.toMatchObject({ code: 'ERR_GRUBENV_TOO_SMALL' });
      expect(await readFile(f)).toEqual(before);
    });
  });

  it('keeps a non-default block size, as grub-editenv does', async () => {
    await withTempDir(async (dir) => {
      const ours = join(dir, 'a');
      const theirs = join(dir, 'g');
      await createGrubEnvFile(ours, 2048);
      await createGrubEnvFile(theirs, 2048);
      const big = 'v'.repeat(1500);
      await editGrubEnvFile(ours, [{ op: 'set', name: 'BIG', value: big }]);
      expect(grubEditenv([theirs, 'set', `BIG=${big}`]).status).toBe(0);
      expect((await stat(ours)).size).toBe(2048);
      expect(await readFile(ours)).toEqual(await readFile(theirs));
    });
  });
});
