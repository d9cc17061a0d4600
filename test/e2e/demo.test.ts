// `abota demo` as a user runs it (in-process main(), --json): it must really update the VM.
import { describe, expect, it } from 'vitest';
import { runAbota } from '../fixtures/fleet.js';

describe('abota demo', () => {
  it('updates the simulated VM from 1.0.0 in slot A to 2.0.0 in slot B and the server hears committed', async () => {
    const out = await runAbota(['demo', '--json']);
    const result = JSON.parse(out.slice(out.indexOf('{')));
    expect(result).toMatchObject({
      ok: true,
      kept: false,
      device: { slotBefore: 'A', slotAfter: 'B', versionBefore: '1.0.0', versionAfter: '2.0.0' },
      boot: { slot: 'B', failedBoots: 0 },
    });
    expect(result.releases.map((r: { version: string }) => r.version)).toEqual(['1.0.0', '2.0.0']);
    expect(result.serverEvents).toEqual(expect.arrayContaining(['2.0.0 committed 100%']));
    // 2.0.0 carries a delta from 1.0.0, and the VM (booted with roothash= of slot A) used it:
    // it downloaded the delta, not the full artifact.
    const rootfsDelta = result.releases[1].deltas.find((d: { image: string }) => d.image === 'rootfs');
    expect(rootfsDelta).toMatchObject({ sourceVersion: '1.0.0' });
    expect(rootfsDelta.sizeBytes).toBeLessThan(rootfsDelta.artifactSizeBytes);
    const rootfs = result.install.images.rootfs;
    expect(rootfs.method).toBe('delta');
    expect(rootfs.deltaSizeBytes).toBe(rootfsDelta.sizeBytes);
    expect(rootfs.downloadedBytes).toBeLessThan(rootfs.artifactSizeBytes);
  });
});
