// Which root hash the booted slot's images have: the kernel command line, state.json, the
// factory config — and nothing when none of them says (the agent never guesses a delta source).
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from '@abota/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { parseAgentConfig } from './config.js';
import {
  bootedRootHashes,
  cmdlineRootHash,
  type DeviceState,
  readDeviceState,
  writeDeviceState,
} from './device-state.js';

const H1 = '11'.repeat(32);
const H2 = '22'.repeat(32);
const H3 = '33'.repeat(32);
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function configWith(cmdline: string, factoryRootHashes?: { rootfs?: string; boot?: string }) {
  const dir = await makeTempDir('abota-state-');
  dirs.push(dir);
  await writeFile(join(dir, 'cmdline'), `${cmdline}\n`);
  return parseAgentConfig({
    deviceKeyPath: join(dir, 'key.json'),
    trustRootPath: join(dir, 'root.json'),
    product: 'p',
    hardware: 'h',
    factory: {
      version: '1.0.0',
      securityVersion: 1,
      ...(factoryRootHashes ? { rootHashes: factoryRootHashes } : {}),
    },
    slots: {
      A: { rootfs: { path: join(dir, 'a'), hashOffsetBytes: 0 } },
      B: { rootfs: { path: join(dir, 'b'), hashOffsetBytes: 0 } },
    },
    bootControl: { backend: 'file', statePath: join(dir, 'boot.json') },
    dataDir: dir,
    kernelCmdlinePath: join(dir, 'cmdline'),
  });
}

const empty: DeviceState = { schemaVersion: 1, slots: {}, securityVersionFloor: 1 };

describe('cmdlineRootHash', () => {
  it("reads abota.roothash= (abota's initramfs) like roothash=, and refuses the two disagreeing", () => {
    expect(cmdlineRootHash(`console=ttyS0 abota.slot=B abota.roothash=${H1} abota.salt=00`)).toBe(H1);
    expect(cmdlineRootHash(`roothash=${H1} abota.roothash=${H1}`)).toBe(H1);
    expect(cmdlineRootHash(`roothash=${H1} abota.roothash=${H2}`)).toBeUndefined();
  });

  it('reads roothash= (systemd-veritysetup convention) among other words', () => {
    expect(cmdlineRootHash(`BOOT_IMAGE=/vmlinuz ro root=/dev/dm-0 roothash=${H1} abota.slot=A`)).toBe(H1);
    expect(cmdlineRootHash(`roothash=${H1.toUpperCase()}`)).toBe(H1);
  });
  it('is undefined when absent, malformed, or given twice with different values', () => {
    expect(cmdlineRootHash('quiet abota.slot=A')).toBeUndefined();
    expect(cmdlineRootHash('roothash=xyz')).toBeUndefined();
    expect(cmdlineRootHash('roothash=abc')).toBeUndefined();
    expect(cmdlineRootHash(`roothash=${H1} roothash=${H2}`)).toBeUndefined();
    expect(cmdlineRootHash(`roothash=${H1} roothash=${H1}`)).toBe(H1);
    expect(cmdlineRootHash(`usrhash=${H1}`)).toBeUndefined();
  });
});

describe('bootedRootHashes', () => {
  it('a slot never written by the agent holds the factory image: factory.rootHashes', async () => {
    const config = await configWith('abota.slot=A', { rootfs: H1, boot: H2 });
    expect(await bootedRootHashes(config, empty, 'A')).toEqual({ rootfs: H1, boot: H2 });
  });
  it('the kernel command line wins for the rootfs', async () => {
    const config = await configWith(`abota.slot=A roothash=${H3}`, { rootfs: H1, boot: H2 });
    expect(await bootedRootHashes(config, empty, 'A')).toEqual({ rootfs: H3, boot: H2 });
  });
  it('a committed slot: what state.json recorded at commit, not the factory values', async () => {
    const config = await configWith('abota.slot=B', { rootfs: H1 });
    const state: DeviceState = {
      ...empty,
      slots: { B: { version: '2.0.0', securityVersion: 2, rootHashes: { rootfs: H2 } } },
    };
    expect(await bootedRootHashes(config, state, 'B')).toEqual({ rootfs: H2 });
  });
  it('unknown stays unknown: a state file from before deltas, or a slot the agent once overwrote', async () => {
    const config = await configWith('abota.slot=B', { rootfs: H1 });
    const old: DeviceState = { ...empty, slots: { B: { version: '2.0.0', securityVersion: 2 } } };
    expect(await bootedRootHashes(config, old, 'B')).toEqual({});
    const rewritten: DeviceState = { ...empty, rewrittenSlots: ['A'] };
    expect(await bootedRootHashes(config, rewritten, 'A')).toEqual({});
    expect(await bootedRootHashes(config, rewritten, 'B')).toEqual({ rootfs: H1 });
  });
  it('state.json with root hashes round-trips, and one without them still reads (backwards compatible)', async () => {
    const config = await configWith('abota.slot=A');
    const state: DeviceState = {
      ...empty,
      slots: { A: { version: '1.0.0', securityVersion: 1, rootHashes: { rootfs: H1 } } },
      rewrittenSlots: ['A'],
    };
    await writeDeviceState(config, state);
    expect(await readDeviceState(config)).toEqual(state);
    await writeFile(
      join(config.dataDir, 'state.json'),
      JSON.stringify({
        schemaVersion: 1,
        slots: { A: { version: '1.0.0', securityVersion: 1 } },
        securityVersionFloor: 1,
      }),
    );
    expect((await readDeviceState(config)).slots.A).toEqual({ version: '1.0.0', securityVersion: 1 });
  });
  it('a factory root hash that is not lower-case hex is a config error', async () => {
    await expect(configWith('', { rootfs: 'XYZ' })).rejects.toMatchObject({ code: 'ERR_CONFIG_INVALID' });
  });
});
