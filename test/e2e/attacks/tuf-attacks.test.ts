// The TUF attack classes (TUF specification §1.5.2 "Goals to protect against specific attacks"),
// each played end to end against a real update server and the real agent of a simulated VM, with
// the tampering proxy between them (test/fixtures/tampering-proxy.ts): the man in the middle, the
// compromised server or mirror. Every attempt must be refused with its own error code while the
// booted slot's files and the boot env stay byte-identical (sha256 before and after), and the
// device must still boot the slot it ran. docs/attacks.md maps each attack to its test here.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateSigningKey, MAX_SECURITY_VERSION, type ReleaseManifest } from '@abota/manifest';
import { describe, expect, it } from 'vitest';
import {
  type AttackOutcome,
  attackOnce,
  blobsOf,
  deviceBytes,
  imagesOf,
  manifestJwsOf,
  manifestOf,
  offerThrough,
  releaseKeys,
  signedBy,
  useAttackLab,
} from '../../fixtures/attack-target.js';
import { type FleetVm, PRODUCT, updateOnce } from '../../fixtures/fleet.js';
import { endlessAnswer, isBlob, isPoll, replaceBlob, rewriteOffer } from '../../fixtures/tampering-proxy.js';

const DAY_MS = 86_400_000;
/** Loose bound on what loopback socket buffers take before the reader stops (measured ~4 MiB). */
const SOCKET_BUFFERS_BYTES = 8 * 1024 * 1024;
/** The agent's bound on a JSON answer (MAX_JSON_BYTES, packages/client/src/http/bounded-body.ts). */
const MAX_RESPONSE_BYTES = 1024 * 1024;

const lab = useAttackLab({
  setup: async (fleet) => {
    // Every VM starts on 1.0.0 (securityVersion 1) unless it says otherwise.
    await fleet.buildRelease({ version: '1.0.0', securityVersion: 1 });
    await fleet.buildRelease({ version: '1.5.0', securityVersion: 1 });
    // Uncompressed: 2.0.0's and 3.0.0's blobs have equal sizes and different bytes, so a swap of
    // one for the other gets past every size check and meets the digest checks (mix-and-match).
    await fleet.buildRelease({ version: '2.0.0', securityVersion: 2, codec: 'none' });
    await fleet.buildRelease({ version: '3.0.0', securityVersion: 2, codec: 'none' });
    // Validly signed, but for other hardware / already stale (never pushed: the attacker has them).
    await fleet.buildRelease({ version: '2.3.0', securityVersion: 2, compatible: ['other-hw'] });
    await fleet.buildRelease({ version: '2.5.0', securityVersion: 2, expires: '1d', imageVersion: '2.0.0' });
    for (const version of ['1.0.0', '1.5.0', '2.0.0', '3.0.0']) await fleet.push(version);
  },
});

/** The proxy offers the fleet's release `version` (validly signed) in place of every offer. */
async function replay(version: string, edit?: (offer: Record<string, unknown>) => void): Promise<void> {
  offerThrough(
    lab.proxy,
    await manifestJwsOf(lab.fleet, version),
    await manifestOf(lab.fleet, version),
    edit,
  );
}

/** A VM (on `onVersion`, default 1.0.0) that the server offers `version` to. */
async function offeredTo(name: string, version: string, onVersion?: string): Promise<FleetVm> {
  const target = await lab.fleet.newVm(name, onVersion === undefined ? {} : { onVersion });
  await lab.fleet.server.createRollout(lab.fleet.releaseIds.get(version)!, { deviceIds: [target.deviceId] });
  return target;
}

/**
 * The attack was refused with `code`: the booted slot and the boot env are byte-identical, no
 * reboot was asked for, the agent remembers the refusal, the server heard it, and the device
 * still boots the slot it ran before.
 */
async function expectRefused(
  target: FleetVm,
  r: AttackOutcome,
  code: string,
  o: { reported?: boolean } = {},
) {
  expect(r.tamperedRequests).toBeGreaterThan(0);
  expect(r.code, r.message).toBe(code);
  expect(r.after).toEqual(r.before);
  expect(r.rebootRequested).toBe(false);
  if (o.reported !== false) {
    expect(r.lastRefusalCode).toBe(code);
    expect(r.serverErrorCodes).toContain(code);
  }
  const boot = await target.vm.boot();
  expect(boot).toMatchObject({ slot: r.before.bootedSlot, failedBoots: [] });
}

/** The proxy edits the offered manifest's JWS object with `forge`. */
function forgedInTransit(forge: (jws: Record<string, unknown>) => void) {
  return rewriteOffer((offer) => {
    const release = offer['release'] as { manifestJws: string };
    const jws = JSON.parse(release.manifestJws) as Record<string, unknown>;
    forge(jws);
    release.manifestJws = JSON.stringify(jws);
  });
}

describe('arbitrary installation: the attacker’s own bytes', () => {
  const forgeries: { name: string; code: string; forge: (jws: Record<string, unknown>) => void }[] = [
    {
      name: 'the signed payload edited (root hash of an attacker image), signatures kept',
      code: 'ERR_SIGNATURE_INVALID',
      forge: (jws) => {
        const payload = JSON.parse(Buffer.from(String(jws['payload']), 'base64url').toString('utf8'));
        payload.images.rootfs.verity.rootHash = 'ab'.repeat(32);
        jws['payload'] = Buffer.from(JSON.stringify(payload)).toString('base64url');
      },
    },
    {
      name: 'an unsigned manifest claiming `alg: none`',
      code: 'ERR_JWS_MALFORMED',
      forge: (jws) => {
        const protectedHeader = Buffer.from(JSON.stringify({ alg: 'none', typ: 'abota-release+jws' }));
        jws['signatures'] = [{ protected: protectedHeader.toString('base64url'), signature: '' }];
      },
    },
    {
      name: 'every signature stripped',
      code: 'ERR_JWS_MALFORMED',
      forge: (jws) => {
        jws['signatures'] = [];
      },
    },
  ];

  it.each(forgeries)('refuses a manifest forged in transit: $name ($code)', async ({ code, forge }) => {
    const target = await offeredTo(`forged-${forgeries.findIndex((f) => f.forge === forge)}`, '2.0.0');
    lab.proxy.use(forgedInTransit(forge));
    await expectRefused(target, await attackOnce(lab.fleet, target, lab.proxy), code);
    // Nothing was downloaded: the manifest is refused before any blob is asked for.
    expect(lab.proxy.log.filter((e) => isBlobPath(e.path))).toEqual([]);
  });

  it('the agent process (`abota-agent check`) refuses a payload forged in transit too: exit 3, ERR_SIGNATURE_INVALID, bytes unchanged', async () => {
    const target = await offeredTo('forged-process', '2.0.0');
    await (await target.vm.openAgent()).afterBoot({ reboot: true });
    lab.proxy.use(forgedInTransit(forgeries[0]!.forge));
    const before = await deviceBytes(target.vm);
    const agent = target.vm.spawnAgent(['check'], { env: { ABOTA_SERVER_URL: lab.proxy.url } });
    const exit = await agent.exited;
    expect(exit.code, agent.stderr).toBe(3);
    expect(agent.stderr).toContain('ERR_SIGNATURE_INVALID');
    expect(await deviceBytes(target.vm)).toEqual(before);
    expect(lab.proxy.log.some((e) => e.tampered)).toBe(true);
  });

  it('refuses an artifact altered in transit under its genuine manifest, before the boot env changes', async () => {
    const target = await offeredTo('forged-artifact', '2.0.0');
    const [rootfs] = blobsOf(await manifestOf(lab.fleet, '2.0.0'));
    lab.proxy.use(
      replaceBlob(rootfs!.artifact, (original) => {
        const forged = Buffer.from(original);
        forged[forged.length >> 1]! ^= 0x01;
        return forged;
      }),
    );
    await expectRefused(target, await attackOnce(lab.fleet, target, lab.proxy), 'ERR_INSTALL_BLOCK_CORRUPT');
  });
});

describe('rollback: validly signed but older releases', () => {
  it('refuses an older release replayed in place of the offer (ERR_DOWNGRADE_NOT_ALLOWED)', async () => {
    const target = await offeredTo('rollback-replay', '2.0.0', '1.5.0');
    await replay('1.0.0');
    await expectRefused(target, await attackOnce(lab.fleet, target, lab.proxy), 'ERR_DOWNGRADE_NOT_ALLOWED');
  });

  it('refuses a release below its securityVersion floor even when the attacker says the rollout allows downgrades (ERR_SECURITY_VERSION_TOO_LOW)', async () => {
    const target = await offeredTo('rollback-forged-permission', '3.0.0', '2.0.0');
    await replay('1.5.0', (offer) => {
      offer['allowDowngrade'] = true;
    });
    const r = await attackOnce(lab.fleet, target, lab.proxy);
    await expectRefused(target, r, 'ERR_SECURITY_VERSION_TOO_LOW');
    expect(r.securityVersionFloor).toBe(2);
  });

  it('refuses the release it already runs, replayed as an update (ERR_SAME_VERSION)', async () => {
    const target = await offeredTo('rollback-same', '2.0.0', '1.5.0');
    await replay('1.5.0');
    await expectRefused(target, await attackOnce(lab.fleet, target, lab.proxy), 'ERR_SAME_VERSION');
  });
});

describe('fast-forward: a far-future version signed by a key the root does not trust', () => {
  it('refuses version 999999.0.0 at the highest securityVersion, keeps its floor, and still installs the genuine next release', async () => {
    const target = await offeredTo('fast-forward', '2.0.0');
    const genuine = await manifestOf(lab.fleet, '2.0.0');
    const future: ReleaseManifest = {
      ...genuine,
      version: '999999.0.0',
      securityVersion: MAX_SECURITY_VERSION,
    };
    const attackerKey = await generateSigningKey();
    const forged = await signedBy(future, [attackerKey]);
    offerThrough(lab.proxy, forged, future);
    const r = await attackOnce(lab.fleet, target, lab.proxy);
    await expectRefused(target, r, 'ERR_THRESHOLD_NOT_MET');
    // The floor did not move: had it, 2.0.0 would now be "too low" for ever.
    expect(r.securityVersionFloor).toBe(1);

    // The refusal was reported against the rollout, which the server then stops offering; the
    // operator's next rollout of the same release reaches the device through the same path.
    lab.proxy.reset();
    await lab.fleet.server.createRollout(lab.fleet.releaseIds.get('2.0.0')!, {
      deviceIds: [target.deviceId],
    });
    const next = await updateOnce(target.vm, { agent: (vm) => vm.openAgent({ serverUrl: lab.proxy.url }) });
    expect(next.after).toEqual({ action: 'committed', version: '2.0.0', slot: 'B' });
    // The hashes do see an install: another booted slot, another boot env.
    const installed = await deviceBytes(target.vm);
    expect(installed.bootedSlot).toBe('B');
    expect(installed.bootEnv).not.toBe(r.before.bootEnv);
  });
});

describe('mix-and-match: another release’s validly signed blobs under this manifest', () => {
  const swaps = [
    { blob: 'artifact', code: 'ERR_INSTALL_BLOCK_CORRUPT' },
    { blob: 'hashTree', code: 'ERR_INSTALL_HASH_TREE_INVALID' },
  ] as const;

  it.each(swaps)(
    'refuses 2.0.0 served with 3.0.0’s $blob (same size, signed in 3.0.0) ($code)',
    async ({ blob, code }) => {
      const target = await offeredTo(`mix-${blob}`, '2.0.0');
      const [wanted] = blobsOf(await manifestOf(lab.fleet, '2.0.0'));
      const [other] = blobsOf(await manifestOf(lab.fleet, '3.0.0'));
      const otherBytes = await readStoredBlob(other![blob]);
      expect(otherBytes.byteLength).toBe((await readStoredBlob(wanted![blob])).byteLength);
      lab.proxy.use(replaceBlob(wanted![blob], () => otherBytes));
      await expectRefused(target, await attackOnce(lab.fleet, target, lab.proxy), code);
    },
  );
});

describe('endless data: answers larger than the signed sizes', () => {
  const HUGE = 2n ** 62n;
  const endless = [
    {
      name: '200 with Content-Length 2^62',
      code: 'ERR_HTTP_BAD_RESPONSE',
      answer: { status: 200, contentLength: HUGE },
    },
    {
      name: '206 whose Content-Range says the blob is 2^62 bytes',
      code: 'ERR_HTTP_BAD_RESPONSE',
      answer: {
        status: 206,
        contentLength: HUGE,
        contentRange: (range: string | undefined) => `bytes ${firstByte(range)}-${HUGE - 1n}/${HUGE}`,
      },
    },
    {
      name: '206 with the right Content-Range, Content-Length 2^62 and a body that never ends',
      code: 'ERR_HTTP_TOO_LARGE',
      answer: {
        status: 206,
        contentLength: HUGE,
        contentRange: (range: string | undefined) => {
          const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? '')!;
          return `bytes ${m[1]}-${m[2]}/${BigInt(m[2]!) + 1n}`;
        },
      },
    },
    {
      name: '200 without a length (chunked) and a body that never ends',
      code: 'ERR_HTTP_TOO_LARGE',
      answer: { status: 200 },
    },
  ] as const;

  it.each(endless)(
    'abandons a blob answered with $name ($code), having read at most the signed size',
    async ({ name, code, answer }) => {
      const target = await offeredTo(`endless-${endless.findIndex((e) => e.name === name)}`, '2.0.0');
      lab.proxy.use(endlessAnswer(isBlob, answer));
      await expectRefused(target, await attackOnce(lab.fleet, target, lab.proxy), code);
      // The device hung up: what the proxy got into the socket is at most the largest signed blob
      // plus what the loopback socket buffers hold (about 4 MiB here), not an endless stream.
      const sent = lab.proxy.log.filter((e) => isBlobPath(e.path)).reduce((n, e) => n + e.bytesSent, 0);
      expect(sent).toBeLessThan((await largestBlobBytes('2.0.0')) + SOCKET_BUFFERS_BYTES);
    },
  );

  it('abandons a poll answer that never ends (ERR_HTTP_TOO_LARGE), before installing anything', async () => {
    const target = await offeredTo('endless-poll', '2.0.0');
    lab.proxy.use(endlessAnswer(isPoll, { status: 200 }, 0x20));
    const r = await attackOnce(lab.fleet, target, lab.proxy);
    // Nothing was offered, so there is nothing to refuse or report: the poll itself failed.
    await expectRefused(target, r, 'ERR_HTTP_TOO_LARGE', { reported: false });
    const sent = lab.proxy.log
      .filter((e) => e.path === '/v1/device/poll')
      .reduce((n, e) => n + e.bytesSent, 0);
    expect(sent).toBeLessThan(MAX_RESPONSE_BYTES + SOCKET_BUFFERS_BYTES);
  });
});

describe('wrong software: validly signed releases for another device', () => {
  it('refuses a release for other hardware offered in place of its own (ERR_INCOMPATIBLE_HARDWARE)', async () => {
    const target = await offeredTo('wrong-hardware', '2.0.0');
    await replay('2.3.0');
    await expectRefused(target, await attackOnce(lab.fleet, target, lab.proxy), 'ERR_INCOMPATIBLE_HARDWARE');
  });

  it('refuses a release of another product signed by the same release key (ERR_WRONG_PRODUCT)', async () => {
    const target = await offeredTo('wrong-product', '2.0.0');
    const otherProduct: ReleaseManifest = {
      ...(await manifestOf(lab.fleet, '2.0.0')),
      product: `${PRODUCT}-pro`,
    };
    const signed = await signedBy(otherProduct, await releaseKeys(lab.fleet));
    offerThrough(lab.proxy, signed, otherProduct);
    await expectRefused(target, await attackOnce(lab.fleet, target, lab.proxy), 'ERR_WRONG_PRODUCT');
  });
});

describe('indefinite freeze: stale metadata replayed for ever', () => {
  it('refuses a validly signed release replayed after its expiry (device and server clocks 2 days on) (ERR_EXPIRED)', async () => {
    const target = await offeredTo('freeze-expired', '2.0.0');
    await replay('2.5.0');
    lab.fleet.clock.offsetMs = 2 * DAY_MS;
    const r = await attackOnce(lab.fleet, target, lab.proxy, { clock: () => lab.fleet.clock.now() });
    await expectRefused(target, r, 'ERR_EXPIRED');
  });
});

describe('key compromise below the threshold: 2-of-2 release keys, one stolen', () => {
  const twoOfTwo = useAttackLab({
    keysInit: ['--release-keys', '2', '--release-threshold', '2'],
    setup: async (fleet) => {
      await fleet.buildRelease({ version: '1.0.0', securityVersion: 1 });
      await fleet.buildRelease({ version: '2.0.0', securityVersion: 2 });
      await fleet.push('2.0.0');
    },
  });

  it('refuses a release signed by the stolen key alone, or by it twice, then installs the genuine 2-of-2 release (ERR_THRESHOLD_NOT_MET)', async () => {
    const { fleet: twoKeys, proxy: twoKeysProxy } = twoOfTwo;
    const target = await twoKeys.newVm('compromised-key');
    const keys = await releaseKeys(twoKeys);
    expect(keys).toHaveLength(2);
    const stolen = keys[0]!;
    // The attacker's own build, signed with everything it holds.
    const evil: ReleaseManifest = {
      ...(await manifestOf(twoKeys, '2.0.0')),
      version: '2.0.1',
      securityVersion: 3,
    };
    const rollout = () =>
      twoKeys.server.createRollout(twoKeys.releaseIds.get('2.0.0')!, { deviceIds: [target.deviceId] });
    for (const forged of [await signedBy(evil, [stolen]), await signedBy(evil, [stolen, stolen])]) {
      await rollout();
      twoKeysProxy.reset();
      offerThrough(twoKeysProxy, forged, evil);
      const r = await attackOnce(twoKeys, target, twoKeysProxy);
      await expectRefused(target, r, 'ERR_THRESHOLD_NOT_MET');
      expect(r.securityVersionFloor).toBe(1);
    }
    // Control: the same path carries the release both keys signed.
    await rollout();
    twoKeysProxy.reset();
    const next = await updateOnce(target.vm, {
      agent: (vm) => vm.openAgent({ serverUrl: twoKeysProxy.url }),
    });
    expect(next.after).toEqual({ action: 'committed', version: '2.0.0', slot: 'B' });
  });
});

// ---- helpers -------------------------------------------------------------------------------

const isBlobPath = (path: string): boolean => path.startsWith('/v1/device/blobs/');

function firstByte(range: string | undefined): bigint {
  return BigInt(/^bytes=(\d+)-/.exec(range ?? '')?.[1] ?? '0');
}

function readStoredBlob(hex: string): Promise<Buffer> {
  return readFile(join(lab.fleet.server.blobsDir, 'sha256', hex));
}

async function largestBlobBytes(version: string): Promise<number> {
  const m = await manifestOf(lab.fleet, version);
  return Math.max(...imagesOf(m).flatMap((i) => [i.artifact.sizeBytes, i.verity.hashTree.sizeBytes]));
}
