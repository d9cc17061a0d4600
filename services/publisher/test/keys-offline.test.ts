// `abota keys` as a release engineer runs it (the real bin): root keys in a directory of their
// own that can stay offline, release builds that never need them, and a warning whenever private
// keys are written unencrypted.
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTempDir, releaseBuildArgs, runNode } from '@abota/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ABOTA = fileURLToPath(new URL('../bin/abota.js', import.meta.url));
const NO_PASSPHRASE = { ABOTA_KEY_PASSPHRASE: undefined };
let work: string;

beforeAll(async () => {
  work = await makeTempDir('abota-keys-offline-');
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('abota keys with the root keys kept offline', () => {
  it('puts root keys in --root-keys-dir, builds releases without them, and needs them only to rotate', async () => {
    const keys = join(work, 'keys');
    const usb = join(work, 'usb');
    const init = await runNode(ABOTA, ['keys', 'init', keys, '--root-keys-dir', usb], { env: NO_PASSPHRASE });
    expect(init.code, init.stderr).toBe(0);
    expect(await readdir(join(keys, 'keys'))).toEqual(['release-1.jwk.json']);
    expect(await readdir(usb)).toEqual(['root-1.jwk.json']);
    expect(init.stderr).toContain('warning: 2 private key file(s) written UNENCRYPTED');

    const image = join(work, 'rootfs.img');
    await writeFile(image, Buffer.alloc(64 * 1024, 1));
    const build = await runNode(ABOTA, releaseBuildArgs({ image, keys, out: join(work, 'release') }));
    expect(build.code, build.stderr).toBe(0);

    const detached = await runNode(ABOTA, ['keys', 'rotate', keys], { env: NO_PASSPHRASE });
    expect(detached.code).toBe(1);
    expect(detached.stderr).toContain('ERR_KEY_MISSING');
    expect(detached.stderr).toContain('--root-keys-dir');
    const rotated = await runNode(ABOTA, ['keys', 'rotate', keys, '--root-keys-dir', usb, '--json'], {
      env: NO_PASSPHRASE,
    });
    expect(rotated.code, rotated.stderr).toBe(0);
    expect((JSON.parse(rotated.stdout) as { version: number }).version).toBe(2);
  });

  it('does not warn when the new key files are encrypted', async () => {
    const r = await runNode(ABOTA, ['keys', 'init', join(work, 'encrypted')], {
      env: { ABOTA_KEY_PASSPHRASE: 'correct horse battery staple' },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('UNENCRYPTED');
  });
});
