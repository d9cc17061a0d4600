// The agent end to end on one machine: a small stand-in for the update server's device API on
// 127.0.0.1 (register, poll, report, blobs with Range; JWTs verified with jose against the
// registered key), real slot files, real signed releases, the file boot-control backend, real
// hook processes, and a simulated reboot (emulateFileBoot + a new boot id + a new cmdline).
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { makeTempDir } from '@abota/testkit';
import { importJWK, type JWK, jwtVerify } from 'jose';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  configOf,
  type Device,
  makeDevice,
  makeRelease,
  makeTrust,
  type Release,
  sha256File,
  type Trust,
} from '../test/release-fixture.js';
import { Agent, type AgentOptions } from './agent.js';
import { type BootControl, emulateFileBoot, FileBootControl, readBootStateFile } from './bootctl/index.js';
import type { AgentConfigInput } from './config.js';
import { readDeviceState } from './device-state.js';
import { readJournal, writeJournal } from './install/journal.js';
import { MAX_OUTBOX_REPORTS, ReportOutbox } from './report-outbox.js';

let trust: Trust;
const cleanup: (() => Promise<void>)[] = [];
beforeAll(async () => {
  trust = await makeTrust();
});
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function tmp(): Promise<string> {
  const d = await makeTempDir('abota-agent-');
  cleanup.push(() => rm(d, { recursive: true, force: true }));
  return d;
}

interface FakeServer {
  url: string;
  reports: Record<string, unknown>[];
  polls: Record<string, unknown>[];
  jtis: Set<string>;
  offer: Release | undefined;
  blobRequests: { path: string; range: string | undefined }[];
  /** Drop the connection after this many bytes on the first artifact request. */
  dropFirstArtifactAfter?: number;
  /** The If-None-Match header of each poll (conditional polls). */
  pollEtags: (string | undefined)[];
  /** Never answer a poll (slow retrieval: a hung server). */
  hangPolls?: boolean;
  /** Send blobs one byte every this many ms (slow retrieval: a trickle). */
  trickleBlobsEveryMs?: number;
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const parts: Buffer[] = [];
  for await (const c of req) parts.push(c as Buffer);
  return JSON.parse(Buffer.concat(parts).toString('utf8') || '{}');
}

async function startServer(): Promise<FakeServer> {
  const state: FakeServer = {
    url: '',
    reports: [],
    polls: [],
    pollEtags: [],
    jtis: new Set(),
    offer: undefined,
    blobRequests: [],
  };
  const devices = new Map<string, JWK>();
  let artifactRequests = 0;
  const auth = async (req: IncomingMessage): Promise<void> => {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (token === undefined) throw new Error('no bearer token');
    const sub = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sub as string;
    const jwk = devices.get(sub);
    if (jwk === undefined) throw new Error('unknown device');
    const { payload } = await jwtVerify(token, await importJWK(jwk, 'EdDSA'), {
      audience: 'abota',
      issuer: sub,
      subject: sub,
    });
    if (payload.exp! - payload.iat! > 300) throw new Error('token lifetime over 5 minutes');
    if (state.jtis.has(payload.jti!)) throw new Error('replayed jti');
    state.jtis.add(payload.jti!);
  };
  const server: Server = createServer((req, res) => {
    void (async () => {
      try {
        if (req.url === '/v1/device/register' && req.method === 'POST') {
          const body = (await readBody(req)) as { token: string; publicKeyJwk: JWK; product: string };
          if (body.token !== 'prov-token') {
            res
              .writeHead(401, { 'content-type': 'application/json' })
              .end(JSON.stringify({ error: { code: 'ERR_TOKEN', message: 'bad token' } }));
            return;
          }
          const id = `dev-${devices.size + 1}`;
          devices.set(id, body.publicKeyJwk);
          res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ deviceId: id }));
          return;
        }
        await auth(req);
        if (req.url === '/v1/device/poll') {
          state.polls.push((await readBody(req)) as Record<string, unknown>);
          state.pollEtags.push(req.headers['if-none-match']);
          if (state.hangPolls === true) return;
          const rel = state.offer;
          if (rel === undefined) {
            // Like the update server: the no-update answer's ETag; 304 when the device names it.
            if (req.headers['if-none-match'] === '"nu-1"') {
              res.writeHead(304, { etag: '"nu-1"', 'abota-poll-after-seconds': '555' }).end();
              return;
            }
            res
              .writeHead(200, { etag: '"nu-1"' })
              .end(JSON.stringify({ status: 'no-update', pollAfterSeconds: 600 }));
            return;
          }
          const img = rel.manifest.images.rootfs;
          const artifacts = Object.fromEntries(
            [img.artifact.digest, img.verity.hashTree.digest].map((d) => [
              d,
              `/v1/device/blobs/sha256/${d.slice(7)}`,
            ]),
          );
          res.writeHead(200, { etag: '"up-1"' }).end(
            JSON.stringify({
              status: 'update',
              rolloutId: 'ro-1',
              release: {
                version: rel.manifest.version,
                manifestJws: await readFile(join(rel.dir, 'manifest.jws'), 'utf8'),
              },
              artifacts,
              pollAfterSeconds: 300,
            }),
          );
          return;
        }
        if (req.url === '/v1/device/report') {
          state.reports.push((await readBody(req)) as Record<string, unknown>);
          res.writeHead(202).end('{}');
          return;
        }
        const m = /^\/v1\/device\/blobs\/sha256\/([0-9a-f]{64})$/.exec(req.url ?? '');
        if (m && state.offer) {
          state.blobRequests.push({ path: req.url!, range: req.headers.range });
          const blob = await readFile(join(state.offer.dir, 'blobs', 'sha256', m[1]!));
          const r = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
          const start = r ? Number(r[1]) : 0;
          const end = r && r[2] !== '' ? Number(r[2]) : blob.length - 1;
          res.writeHead(r ? 206 : 200, {
            'content-length': end - start + 1,
            ...(r ? { 'content-range': `bytes ${start}-${end}/${blob.length}` } : {}),
          });
          const body = blob.subarray(start, end + 1);
          if (state.trickleBlobsEveryMs !== undefined) {
            let i = 0;
            const t = setInterval(() => {
              if (res.destroyed || i >= body.length) return clearInterval(t);
              res.write(body.subarray(i, ++i));
            }, state.trickleBlobsEveryMs);
            res.on('close', () => clearInterval(t));
            return;
          }
          const isArtifact = `sha256:${m[1]}` === state.offer.manifest.images.rootfs.artifact.digest;
          if (isArtifact && ++artifactRequests === 1 && state.dropFirstArtifactAfter !== undefined) {
            res.write(body.subarray(0, state.dropFirstArtifactAfter), () =>
              setTimeout(() => res.socket?.destroy(), 20),
            );
            return;
          }
          res.end(body);
          return;
        }
        res.writeHead(404).end();
      } catch (e) {
        res
          .writeHead(401, { 'content-type': 'application/json' })
          .end(JSON.stringify({ error: { code: 'ERR_AUTH', message: (e as Error).message } }));
      }
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

interface Rig {
  dev: Device;
  agent: Agent;
  bootId: { value: string };
  open: (patch?: Partial<AgentConfigInput>, options?: Partial<AgentOptions>) => Promise<Agent>;
}

async function rig(serverUrl?: string, patch: Partial<AgentConfigInput> = {}): Promise<Rig> {
  const root = await tmp();
  const dev = await makeDevice(join(root, 'device'), trust);
  const bootId = { value: 'boot-1' };
  const open = (more: Partial<AgentConfigInput> = {}, options: Partial<AgentOptions> = {}) =>
    Agent.open({
      config: configOf(dev, { ...patch, ...more, ...(serverUrl ? { server: { url: serverUrl } } : {}) }),
      bootId: async () => bootId.value,
      checkpointBytes: 1024 * 1024,
      reportIntervalMs: 0,
      backoff: { baseDelayMs: 1, maxDelayMs: 5, maxAttempts: 5 },
      ...options,
    });
  return { dev, agent: await open(), bootId, open };
}

/** Power-cycle the simulated device: the bootloader picks a slot, the kernel cmdline names it. */
async function reboot(r: Rig): Promise<string> {
  const slot = await emulateFileBoot(r.dev.bootStatePath);
  await writeFile(join(r.dev.root, 'cmdline'), `abota.slot=${slot}\n`);
  r.bootId.value = `${r.bootId.value}+`;
  return slot;
}

describe('agent with the update server API', () => {
  it('withheld updates: warns "no valid offer for N days" after freezeWarningDays of no-update answers, until a release verifies', async () => {
    const server = await startServer();
    const logs: { level: string; message: string; code?: string }[] = [];
    const r = await rig(server.url, { freezeWarningDays: 30 });
    const agent = await r.open({}, { log: (e) => logs.push(e) });
    expect(await agent.register('prov-token')).toBe('dev-1');
    const before = Date.now();
    expect(await agent.checkOnce()).toMatchObject({ status: 'no-update' });
    const first = await agent.status();
    expect(Date.parse(first.offers.since!)).toBeGreaterThanOrEqual(before - 1000);
    expect(first.offers.lastValidOffer).toBeUndefined();
    expect(first.offers.warning).toBeUndefined();
    expect(logs.filter((e) => e.code === 'WARN_NO_VALID_OFFER')).toEqual([]);

    // 31 days of "no update" answers since the agent first ran (the device clock moves on, the
    // device JWTs need the real one: the record is dated back instead).
    const since = new Date(Date.now() - 31 * 86_400_000 - 60_000).toISOString();
    await writeFile(join(agent.config.dataDir, 'offer-freshness.json'), JSON.stringify({ since }));
    expect(await agent.checkOnce()).toMatchObject({ status: 'no-update' });
    await agent.checkOnce();
    const warned = logs.filter((e) => e.code === 'WARN_NO_VALID_OFFER');
    expect(warned).toHaveLength(1); // once a day, not once a poll
    expect(warned[0]!.message).toMatch(/^no valid offer for 31 days \(none since the agent first ran on /);
    expect((await agent.status()).offers.warning?.days).toBe(31);

    server.offer = await makeRelease({
      dir: join(r.dev.root, '..', 'rel'),
      trust,
      version: '1.1.0',
      securityVersion: 3,
    });
    expect(await agent.checkOnce()).toMatchObject({ status: 'installed', version: '1.1.0' });
    const st = await agent.status();
    expect(st.offers.lastValidOffer?.version).toBe('1.1.0');
    expect(st.offers.warning).toBeUndefined();
  });

  it('registers, polls with device JWTs, installs the offer with a resumed download, reports, and commits after reboot', async () => {
    const server = await startServer();
    const r = await rig(server.url);
    const rel = await makeRelease({
      dir: join(r.dev.root, '..', 'rel'),
      trust,
      version: '1.1.0',
      securityVersion: 3,
    });
    expect(await r.agent.register('prov-token')).toBe('dev-1');
    expect((await readDeviceState(r.agent.config)).deviceId).toBe('dev-1');

    expect(await r.agent.checkOnce()).toEqual({ status: 'no-update', pollAfterSeconds: 600 });
    server.offer = rel;
    server.dropFirstArtifactAfter = 3 * 1024 * 1024 + 100;
    const result = await r.agent.checkOnce({ reboot: true });
    expect(result).toMatchObject({ status: 'installed', version: '1.1.0', rebooted: true });
    expect(await sha256File(r.dev.slotFiles.B)).toBe(await sha256File(rel.imagePath));
    const artifactRanges = server.blobRequests
      .filter((b) => b.path.endsWith(rel.manifest.images.rootfs.artifact.digest.slice(7)))
      .map((b) => Number(/^bytes=(\d+)-/.exec(b.range ?? '')?.[1]));
    expect(artifactRanges.length).toBe(2);
    expect(artifactRanges[0]).toBe(0);
    expect(artifactRanges[1]).toBeGreaterThan(0);
    expect(server.polls[0]).toMatchObject({
      version: '1.0.0',
      bootedSlot: 'A',
      product: 'eflow-vm',
      hardware: 'hyperv-x64',
    });

    expect(await reboot(r)).toBe('B');
    const after = await (await r.open()).afterBoot();
    expect(after).toEqual({ action: 'committed', version: '1.1.0', slot: 'B' });
    const states = server.reports.map((x) => x['state']);
    expect(states[0]).toBe('downloading');
    expect(states.slice(-3)).toEqual(['installed', 'rebooting', 'committed']);
    expect(server.reports.at(-1)).toMatchObject({ rolloutId: 'ro-1', version: '1.1.0', state: 'committed' });
    const boot = await readBootStateFile(r.dev.bootStatePath);
    expect(boot.order[0]).toBe('B');
    expect(boot.slots.B.status).toBe('good');
    const st = await (await r.open()).status();
    expect(st).toMatchObject({
      deviceId: 'dev-1',
      bootedSlot: 'B',
      primarySlot: 'B',
      version: '1.1.0',
      securityVersionFloor: 3,
    });
    expect(st.install).toMatchObject({ phase: 'committed', progressPercent: 100 });
    // The next poll reports the new version from the new slot.
    server.offer = undefined;
    await (await r.open()).checkOnce();
    expect(server.polls.at(-1)).toMatchObject({ version: '1.1.0', bootedSlot: 'B' });
  });

  it('conditional polls: If-None-Match after a no-update answer, 304 taken as no-update, unconditional after an offer', async () => {
    const server = await startServer();
    const r = await rig(server.url);
    await r.agent.register('prov-token');
    expect(await r.agent.checkOnce()).toEqual({ status: 'no-update', pollAfterSeconds: 600 });
    // Unchanged: a 304 with no body is no-update, with the delay the 304 carries.
    expect(await r.agent.checkOnce()).toEqual({ status: 'no-update', pollAfterSeconds: 555 });
    expect(await r.agent.checkOnce()).toEqual({ status: 'no-update', pollAfterSeconds: 555 });
    expect(server.pollEtags).toEqual([undefined, '"nu-1"', '"nu-1"']);
    // Changed: the conditional poll gets the offer (refused here: other hardware) ...
    server.offer = await makeRelease({
      dir: join(r.dev.root, '..', 'rel'),
      trust,
      version: '1.1.0',
      compatible: ['rpi4'],
    });
    await expect(r.agent.checkOnce()).rejects.toMatchObject({ code: 'ERR_INCOMPATIBLE_HARDWARE' });
    // ... and after an offer the next poll is unconditional (a 304 never stands for an offer).
    server.offer = undefined;
    expect(await r.agent.checkOnce()).toEqual({ status: 'no-update', pollAfterSeconds: 600 });
    expect(await r.agent.checkOnce()).toEqual({ status: 'no-update', pollAfterSeconds: 555 });
    expect(server.pollEtags).toEqual([undefined, '"nu-1"', '"nu-1"', '"nu-1"', undefined, '"nu-1"']);
  });

  it('an offer the device refuses is reported as failed with the policy error code, slots untouched', async () => {
    const server = await startServer();
    const r = await rig(server.url);
    await r.agent.register('prov-token');
    server.offer = await makeRelease({
      dir: join(r.dev.root, '..', 'rel'),
      trust,
      version: '1.1.0',
      compatible: ['rpi4'],
    });
    const before = await sha256File(r.dev.slotFiles.B);
    await expect(r.agent.checkOnce()).rejects.toMatchObject({ code: 'ERR_INCOMPATIBLE_HARDWARE' });
    expect(server.reports.at(-1)).toMatchObject({
      rolloutId: 'ro-1',
      version: '1.1.0',
      state: 'failed',
      errorCode: 'ERR_INCOMPATIBLE_HARDWARE',
    });
    expect(server.blobRequests).toEqual([]);
    expect(await sha256File(r.dev.slotFiles.B)).toBe(before);
  });

  it('registration with a wrong provisioning token fails with the server error and stores no device id', async () => {
    const server = await startServer();
    const r = await rig(server.url);
    const err = await r.agent.register('wrong').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_HTTP_STATUS' });
    expect((err as Error).message).toContain('HTTP 401: ERR_TOKEN bad token');
    expect((await readDeviceState(r.agent.config)).deviceId).toBeUndefined();
  });

  it('a poll response over 1 MiB is refused', async () => {
    const root = await tmp();
    const big = createServer((_req, res) => {
      res.writeHead(200).end(JSON.stringify({ status: 'no-update', pad: 'x'.repeat(1024 * 1024 + 1) }));
    });
    await new Promise<void>((ok) => big.listen(0, '127.0.0.1', ok));
    cleanup.push(async () => {
      big.closeAllConnections();
      await new Promise((ok) => big.close(ok));
    });
    const dev = await makeDevice(join(root, 'device'), trust);
    const agent = await Agent.open({
      config: configOf(dev, {
        deviceId: 'dev-x',
        server: { url: `http://127.0.0.1:${(big.address() as AddressInfo).port}` },
      }),
    });
    const { DeviceKey } = await import('./http/device-auth.js');
    await DeviceKey.generate(agent.config.deviceKeyPath);
    await expect(agent.checkOnce()).rejects.toMatchObject({ code: 'ERR_HTTP_TOO_LARGE' });
  });

  it('refuses a device key file readable by others', async () => {
    const server = await startServer();
    const r = await rig(server.url);
    await r.agent.register('prov-token');
    const { chmod } = await import('node:fs/promises');
    await chmod(r.agent.config.deviceKeyPath, 0o644);
    await expect((await r.open()).checkOnce()).rejects.toMatchObject({ code: 'ERR_DEVICE_KEY' });
  });
});

describe('trust root rotation shipped with a release', () => {
  async function rotatedTrust(signedByPrevious: boolean): Promise<Trust> {
    const { createTrustRoot, generateSigningKey, signTrustRoot } = await import('@abota/manifest');
    const rootKey = await generateSigningKey();
    const releaseKey = await generateSigningKey();
    const root = await createTrustRoot({
      version: 2,
      expires: new Date(Date.now() + 86_400_000 * 100),
      rootKeys: [rootKey],
      rootThreshold: 1,
      releaseKeys: [releaseKey],
      releaseThreshold: 1,
    });
    const signed = signedByPrevious
      ? await signTrustRoot(root, [trust.rootKey, rootKey], trust.root)
      : await signTrustRoot(root, [rootKey]);
    return { rootKey, releaseKey, root, signedRootText: JSON.stringify(signed) };
  }

  it('a root v2 signed by the device root v1 is adopted and the release signed under v2 installs', async () => {
    const r = await rig();
    const v2 = await rotatedTrust(true);
    const rel = await makeRelease({ dir: join(r.dev.root, '..', 'rel'), trust: v2, version: '1.1.0' });
    expect((await r.agent.installFromDirectory(rel.dir)).phase).toBe('boot-pending');
    expect((await (await r.open()).trustRoot()).version).toBe(2);
  });

  it('a root v2 not signed by root v1 is ignored, so its release is refused before any slot write', async () => {
    const r = await rig();
    const rogue = await rotatedTrust(false);
    const rel = await makeRelease({ dir: join(r.dev.root, '..', 'rel'), trust: rogue, version: '1.1.0' });
    const before = await sha256File(r.dev.slotFiles.B);
    await expect(r.agent.installFromDirectory(rel.dir)).rejects.toMatchObject({
      code: 'ERR_THRESHOLD_NOT_MET',
    });
    expect(await sha256File(r.dev.slotFiles.B)).toBe(before);
    expect((await r.agent.trustRoot()).version).toBe(1);
  });
});

describe('an expired device root (TUF client workflow: expiry is checked after the chain)', () => {
  /** A device whose baked root v1 expired yesterday, and a root v2 (unexpired) signed by v1 and itself. */
  async function expiredDevice(): Promise<{ r: Rig; v1: Trust; v2: Trust }> {
    const { createTrustRoot, generateSigningKey, signTrustRoot } = await import('@abota/manifest');
    /** Root `version` with a fresh root key, signed by it and by `previous` (the rotation step). */
    const rootVersion = async (version: number, expiresInDays: number, previous?: Trust): Promise<Trust> => {
      const rootKey = await generateSigningKey();
      const root = await createTrustRoot({
        version,
        expires: new Date(Date.now() + expiresInDays * 86_400_000),
        rootKeys: [rootKey],
        rootThreshold: 1,
        releaseKeys: [trust.releaseKey],
        releaseThreshold: 1,
      });
      const signed = previous
        ? await signTrustRoot(root, [previous.rootKey, rootKey], previous.root)
        : await signTrustRoot(root, [rootKey]);
      return { rootKey, releaseKey: trust.releaseKey, root, signedRootText: JSON.stringify(signed) };
    };
    const v1 = await rootVersion(1, -1);
    const v2 = await rootVersion(2, 100, v1);
    const root = await tmp();
    const dev = await makeDevice(join(root, 'device'), v1);
    const open = () =>
      Agent.open({ config: configOf(dev), bootId: async () => 'boot-1', checkpointBytes: 1024 * 1024 });
    return { r: { dev, agent: await open(), bootId: { value: 'boot-1' }, open }, v1, v2 };
  }

  it('installs a release that carries an unexpired root v2 signed by the expired root v1, and adopts v2', async () => {
    const { r, v2 } = await expiredDevice();
    const rel = await makeRelease({ dir: join(r.dev.root, '..', 'rel'), trust: v2, version: '1.1.0' });
    expect((await r.agent.installFromDirectory(rel.dir)).phase).toBe('boot-pending');
    expect((await (await r.open()).trustRoot()).version).toBe(2);
  });

  it('refuses a release that carries no newer root (ERR_ROOT_EXPIRED) before any slot write', async () => {
    const { r, v1 } = await expiredDevice();
    const rel = await makeRelease({ dir: join(r.dev.root, '..', 'rel'), trust: v1, version: '1.1.0' });
    const before = await sha256File(r.dev.slotFiles.B);
    await expect(r.agent.installFromDirectory(rel.dir)).rejects.toMatchObject({ code: 'ERR_ROOT_EXPIRED' });
    expect(await sha256File(r.dev.slotFiles.B)).toBe(before);
  });
});

describe('slow retrieval (a hung poll, a trickling blob): the agent gives up in time, slots untouched', () => {
  const limits = {
    requestTimeoutSeconds: 0.3,
    minDownloadBytesPerSecond: 1000,
    slowDownloadWindowSeconds: 0.3,
  };

  async function slowRig(server: FakeServer): Promise<Rig> {
    const r = await rig(undefined, { server: { url: server.url, ...limits } });
    await r.agent.register('prov-token');
    return r;
  }

  it('abandons a poll the server never answers with ERR_HTTP_TIMEOUT within the request deadline', async () => {
    const server = await startServer();
    const r = await slowRig(server);
    server.hangPolls = true;
    const before = { A: await sha256File(r.dev.slotFiles.A), B: await sha256File(r.dev.slotFiles.B) };
    const started = performance.now();
    await expect(r.agent.checkOnce()).rejects.toMatchObject({ code: 'ERR_HTTP_TIMEOUT' });
    // 5 tries (the rig's backoff) × 0.3 s, plus at most 5 ms between tries.
    expect(performance.now() - started).toBeLessThan(3000);
    expect(server.polls.length).toBe(5);
    expect({ A: await sha256File(r.dev.slotFiles.A), B: await sha256File(r.dev.slotFiles.B) }).toEqual(
      before,
    );
  });

  it('abandons a blob that trickles one byte every 50 ms with ERR_HTTP_TOO_SLOW, the active slot untouched', async () => {
    const server = await startServer();
    const r = await slowRig(server);
    server.offer = await makeRelease({ dir: join(r.dev.root, '..', 'rel'), trust, version: '1.1.0' });
    server.trickleBlobsEveryMs = 50;
    const activeBefore = await sha256File(r.dev.slotFiles.A);
    const started = performance.now();
    await expect(r.agent.checkOnce()).rejects.toMatchObject({ code: 'ERR_HTTP_TOO_SLOW' });
    expect(performance.now() - started).toBeLessThan(5000);
    expect(await sha256File(r.dev.slotFiles.A)).toBe(activeBefore);
    expect(await readBootStateFile(r.dev.bootStatePath)).toMatchObject({
      order: ['A', 'B'],
      slots: { A: { status: 'good' } },
    });
    // A transport failure is no verdict on the release: not `failed` (it would count against the
    // rollout and the server would stop offering it); the install resumes from its journal.
    expect(server.reports.at(-1)).toMatchObject({ state: 'device-error', errorCode: 'ERR_HTTP_TOO_SLOW' });
  });
});

describe('abota-agent run (daemon loop)', () => {
  it('installs an offer, runs the reboot hook once, waits for the reboot, then commits on the new slot', async () => {
    const server = await startServer();
    const r = await rig(server.url);
    await r.agent.register('prov-token');
    server.offer = await makeRelease({ dir: join(r.dev.root, '..', 'rel'), trust, version: '1.1.0' });
    const marker = join(r.dev.root, 'reboots.log');
    const rebootCommand = ['sh', '-c', `echo reboot >> '${marker}'`];
    const runOnce = async (sleeps: number): Promise<number[]> => {
      const delays: number[] = [];
      const ac = new AbortController();
      const agent = await Agent.open({
        config: configOf(r.dev, { server: { url: server.url }, rebootCommand }),
        bootId: async () => r.bootId.value,
        random: () => 0.75,
        sleep: async (ms) => {
          delays.push(ms);
          if (delays.length >= sleeps) ac.abort();
        },
        backoff: { baseDelayMs: 1, maxDelayMs: 5, maxAttempts: 3 },
      });
      await agent.run(ac.signal);
      return delays;
    };
    const delays = await runOnce(2);
    expect((await readFile(marker, 'utf8')).trim().split('\n')).toEqual(['reboot']);
    expect(server.polls.length).toBe(1); // the second round saw the pending reboot and did not poll
    // pollAfterSeconds 300 with jitter 0.2 and random 0.75 → 300 × 1.1 s
    expect(delays[0]).toBe(330_000);
    expect(await sha256File(r.dev.slotFiles.B)).toBe(await sha256File(server.offer.imagePath));

    server.offer = undefined;
    expect(await reboot(r)).toBe('B');
    await runOnce(1);
    expect(server.reports.at(-1)).toMatchObject({ version: '1.1.0', state: 'committed' });
    expect(server.polls.at(-1)).toMatchObject({ version: '1.1.0', bootedSlot: 'B' });
  });
});

describe('after the reboot', () => {
  async function installed(patch: Partial<AgentConfigInput> = {}): Promise<{ r: Rig; rel: Release }> {
    const r = await rig(undefined, patch);
    const rel = await makeRelease({
      dir: join(r.dev.root, '..', 'rel'),
      trust,
      version: '1.1.0',
      securityVersion: 2,
    });
    const j = await r.agent.installFromDirectory(rel.dir);
    expect(j.phase).toBe('boot-pending');
    return { r, rel };
  }

  it('before the reboot has happened (same boot id) nothing is decided', async () => {
    const { r } = await installed();
    expect(await (await r.open()).afterBoot()).toEqual({ action: 'reboot-pending', version: '1.1.0' });
    expect((await readJournal(r.agent.config.dataDir))?.phase).toBe('boot-pending');
  });

  it('failing health checks mark the new slot bad so the next boot returns to A', async () => {
    const { r } = await installed({
      healthChecks: [{ command: ['sh', '-c', 'echo service down >&2; exit 3'] }],
    });
    expect(await reboot(r)).toBe('B');
    const res = await (await r.open()).afterBoot();
    expect(res).toMatchObject({ action: 'rejected', slot: 'B' });
    expect((res as { reason: string }).reason).toContain('exited with status 3: service down');
    const j = await readJournal(r.agent.config.dataDir);
    expect(j).toMatchObject({ phase: 'failed', error: { code: 'ERR_HEALTH_CHECK_FAILED' } });
    expect(await reboot(r)).toBe('A');
    expect((await readDeviceState(r.agent.config)).slots.B).toBeUndefined();
  });

  it('a trial boot that never confirms falls back to A and is reported as rolled back', async () => {
    const { r } = await installed();
    expect(await reboot(r)).toBe('B'); // the new slot hangs before the agent runs...
    expect(await reboot(r)).toBe('A'); // ...so the bootloader falls back
    const res = await (await r.open()).afterBoot();
    expect(res).toEqual({ action: 'rolled-back', version: '1.1.0', slot: 'A' });
    expect((await readJournal(r.agent.config.dataDir))?.error?.code).toBe('ERR_ROLLED_BACK');
    const bc = new FileBootControl({ statePath: r.dev.bootStatePath, bootedSlot: 'A' });
    expect(await bc.getSlotState('B')).toEqual({ bootable: false, good: false });
    const st = await (await r.open()).status();
    expect(st.version).toBe('1.0.0');
  });

  it('while the new slot runs on trial, nothing overwrites the old slot (its only fallback)', async () => {
    const { r } = await installed();
    expect(await reboot(r)).toBe('B');
    const newer = await makeRelease({
      dir: join(r.dev.root, '..', 'rel2'),
      trust,
      version: '1.2.0',
      securityVersion: 2,
      seed: 11,
    });
    const slotA = await sha256File(r.dev.slotFiles.A);
    const agent = await r.open();
    await expect(agent.installFromDirectory(newer.dir)).rejects.toMatchObject({
      code: 'ERR_INSTALL_TRIAL_PENDING',
    });
    expect(await sha256File(r.dev.slotFiles.A)).toBe(slotA);
    expect(await agent.afterBoot()).toMatchObject({ action: 'committed' });
    expect((await agent.installFromDirectory(newer.dir)).targetSlot).toBe('A');
  });

  it('mark-good commits the trial boot; mark-bad without a trial is refused', async () => {
    const { r, rel } = await installed();
    await expect((await r.open()).markBad()).rejects.toMatchObject({ code: 'ERR_INSTALL_NOTHING_PENDING' });
    await reboot(r);
    expect(await (await r.open()).markGood()).toEqual({ action: 'committed', version: '1.1.0', slot: 'B' });
    // The committed slot's root hash is what a later delta's source is checked against.
    expect((await readDeviceState(r.agent.config)).slots.B).toEqual({
      version: '1.1.0',
      securityVersion: 2,
      rootHashes: { rootfs: rel.manifest.images.rootfs.verity.rootHash },
    });
  });
});

// Power cuts around arming the trial boot. A cut is simulated faithfully: the disk (data dir and
// boot-control state) is snapshotted at the cut point and restored after the in-process error
// handling ran, since a real power cut runs no catch block.
describe('a power cut while arming the trial boot', () => {
  interface Disk {
    files: Map<string, Buffer>;
  }
  async function snapshotDisk(r: Rig): Promise<Disk> {
    const files = new Map<string, Buffer>();
    const dataDir = r.agent.config.dataDir;
    for (const name of await readdir(dataDir))
      files.set(join(dataDir, name), await readFile(join(dataDir, name)));
    files.set(r.dev.bootStatePath, await readFile(r.dev.bootStatePath));
    return { files };
  }
  async function restoreDisk(r: Rig, disk: Disk): Promise<void> {
    const dataDir = r.agent.config.dataDir;
    for (const name of await readdir(dataDir)) {
      if (!disk.files.has(join(dataDir, name))) await rm(join(dataDir, name), { force: true });
    }
    for (const [path, data] of disk.files) await writeFile(path, data);
  }

  type CutPoint = 'before-journal' | 'before-setTryOnce' | 'after-setTryOnce';

  /** Install 1.1.0 from a directory with the power cut at `cut`; the disk is left as it was then. */
  async function installWithCut(cut: CutPoint): Promise<{ r: Rig; server: FakeServer; rel: Release }> {
    const server = await startServer();
    const r = await rig(server.url);
    await r.agent.register('prov-token');
    const rel = await makeRelease({
      dir: join(r.dev.root, '..', 'rel'),
      trust,
      version: '1.1.0',
      securityVersion: 2,
    });
    let disk: Disk | undefined;
    const powerCut = async (): Promise<never> => {
      disk = await snapshotDisk(r);
      throw Object.assign(new Error('power cut'), { code: 'ERR_SIMULATED_POWER_CUT' });
    };
    const real = new FileBootControl({
      statePath: r.dev.bootStatePath,
      cmdlinePath: join(r.dev.root, 'cmdline'),
    });
    const dying: BootControl = {
      getBootedSlot: () => real.getBootedSlot(),
      getPrimarySlot: () => real.getPrimarySlot(),
      getSlotState: (slot) => real.getSlotState(slot),
      markGood: (slot) => real.markGood(slot),
      markBad: (slot) => real.markBad(slot),
      setPrimary: (slot) => real.setPrimary(slot),
      setTryOnce: async (slot) => {
        if (cut === 'after-setTryOnce') await real.setTryOnce(slot);
        return powerCut();
      },
    };
    const agent = await Agent.open({
      config: configOf(r.dev, { server: { url: server.url } }),
      bootControl: dying,
      // The installer asks for the boot id to journal boot-pending: the last step before that write.
      bootId: async () => (cut === 'before-journal' ? powerCut() : r.bootId.value),
      checkpointBytes: 1024 * 1024,
      reportIntervalMs: 0,
      backoff: { baseDelayMs: 1, maxDelayMs: 5, maxAttempts: 5 },
    });
    await expect(agent.installFromDirectory(rel.dir)).rejects.toMatchObject({
      code: 'ERR_SIMULATED_POWER_CUT',
    });
    expect(disk).toBeDefined();
    await restoreDisk(r, disk!);
    return { r, server, rel };
  }

  async function expectCommitted(r: Rig, server: FakeServer): Promise<void> {
    expect((await readDeviceState(r.agent.config)).slots.B).toEqual({
      version: '1.1.0',
      securityVersion: 2,
      rootHashes: { rootfs: expect.stringMatching(/^[0-9a-f]{64}$/) },
    });
    expect((await readDeviceState(r.agent.config)).securityVersionFloor).toBe(2);
    expect((await (await r.open()).status()).version).toBe('1.1.0');
    expect(server.reports.at(-1)).toMatchObject({ version: '1.1.0', state: 'committed' });
    expect(await reboot(r)).toBe('B'); // committed for good
  }

  it('cut before boot-pending is journalled: the old slot boots, nothing is reported as committed, the install resumes and commits', async () => {
    const { r, server, rel } = await installWithCut('before-journal');
    expect((await readJournal(r.agent.config.dataDir))?.phase).toBe('written');
    expect(await reboot(r)).toBe('A');
    const agent = await r.open();
    expect(await agent.afterBoot()).toEqual({ action: 'none' });
    expect((await agent.status()).version).toBe('1.0.0');
    expect(server.reports.map((x) => x['state'])).not.toContain('committed');
    // Resuming writes nothing again (journal `written`) and arms the trial.
    expect((await agent.installFromDirectory(rel.dir)).phase).toBe('boot-pending');
    expect(await reboot(r)).toBe('B');
    expect(await (await r.open()).afterBoot()).toMatchObject({ action: 'committed', version: '1.1.0' });
    await expectCommitted(r, server);
  });

  it('cut after boot-pending is journalled but before setTryOnce: the old slot boots, the agent arms the trial, and it commits', async () => {
    const { r, server } = await installWithCut('before-setTryOnce');
    expect((await readJournal(r.agent.config.dataDir))?.phase).toBe('boot-pending');
    expect(await reboot(r)).toBe('A'); // never armed: B is still marked bad
    expect(await (await r.open()).afterBoot()).toEqual({ action: 'reboot-pending', version: '1.1.0' });
    expect(server.reports.map((x) => x['state'])).not.toContain('rolled-back');
    expect(await reboot(r)).toBe('B');
    expect(await (await r.open()).afterBoot()).toMatchObject({
      action: 'committed',
      version: '1.1.0',
      slot: 'B',
    });
    await expectCommitted(r, server);
  });

  it('an armed trial that fell back after such a re-arm is rolled back, not armed again', async () => {
    const { r, server } = await installWithCut('before-setTryOnce');
    expect(await reboot(r)).toBe('A');
    expect(await (await r.open()).afterBoot()).toEqual({ action: 'reboot-pending', version: '1.1.0' });
    expect(await reboot(r)).toBe('B'); // the trial hangs before the agent runs...
    expect(await reboot(r)).toBe('A'); // ...and the bootloader falls back
    const agent = await r.open();
    expect(await agent.afterBoot()).toEqual({ action: 'rolled-back', version: '1.1.0', slot: 'A' });
    expect(server.reports.at(-1)).toMatchObject({
      version: '1.0.0',
      state: 'rolled-back',
      errorCode: 'ERR_ROLLED_BACK',
    });
    expect((await agent.status()).version).toBe('1.0.0');
    expect(await reboot(r)).toBe('A');
  });

  it('agent restarted in the same boot after boot-pending but before setTryOnce arms the trial again, and it commits', async () => {
    const { r, server } = await installWithCut('before-setTryOnce');
    const bc = new FileBootControl({
      statePath: r.dev.bootStatePath,
      cmdlinePath: join(r.dev.root, 'cmdline'),
    });
    expect(await bc.getPrimarySlot()).toBe('A');
    expect(await (await r.open()).afterBoot()).toEqual({ action: 'reboot-pending', version: '1.1.0' });
    expect(await bc.getPrimarySlot()).toBe('B');
    expect(await reboot(r)).toBe('B');
    expect(await (await r.open()).afterBoot()).toMatchObject({
      action: 'committed',
      version: '1.1.0',
      slot: 'B',
    });
    await expectCommitted(r, server);
  });

  it('cut after setTryOnce: the trial boots the new slot and commits it (state, floor, report)', async () => {
    const { r, server } = await installWithCut('after-setTryOnce');
    expect((await readJournal(r.agent.config.dataDir))?.phase).toBe('boot-pending');
    expect(await reboot(r)).toBe('B');
    expect(await (await r.open()).afterBoot()).toMatchObject({
      action: 'committed',
      version: '1.1.0',
      slot: 'B',
    });
    await expectCommitted(r, server);
  });

  it('a journal left at "written" by an agent that armed the trial first (old order) is committed on the trial boot', async () => {
    const { r, server } = await installWithCut('after-setTryOnce');
    const j = (await readJournal(r.agent.config.dataDir))!;
    const { bootId: _b, ...old } = j;
    await writeJournal(r.agent.config.dataDir, { ...old, phase: 'written' });
    expect(await reboot(r)).toBe('B');
    expect(await (await r.open()).afterBoot()).toMatchObject({
      action: 'committed',
      version: '1.1.0',
      slot: 'B',
    });
    await expectCommitted(r, server);
  });
});

describe('report outbox', () => {
  it('a committed report the server never got is kept on disk and sent by the next agent run', async () => {
    const server = await startServer();
    const r = await rig(server.url);
    await r.agent.register('prov-token');
    const rel = await makeRelease({ dir: join(r.dev.root, '..', 'rel'), trust, version: '1.1.0' });
    expect((await r.agent.installFromDirectory(rel.dir)).phase).toBe('boot-pending');
    expect(await reboot(r)).toBe('B');
    // The network is down for the whole run that commits (every retry fails).
    const down: typeof fetch = async (input, init) => {
      if (String(input).endsWith('/v1/device/report')) throw new TypeError('fetch failed (network down)');
      return fetch(input, init);
    };
    const offline = await Agent.open({
      config: configOf(r.dev, { server: { url: server.url } }),
      bootId: async () => r.bootId.value,
      fetch: down,
      backoff: { baseDelayMs: 1, maxDelayMs: 2, maxAttempts: 2 },
    });
    expect(await offline.afterBoot()).toMatchObject({ action: 'committed' });
    expect(server.reports.map((x) => x['state'])).not.toContain('committed');
    const outbox = await new ReportOutbox(r.agent.config.dataDir).list();
    expect(outbox.map((e) => e.report)).toEqual([
      expect.objectContaining({ version: '1.1.0', state: 'committed' }),
    ]);
    // A new process, network back: the report goes out before the poll, and leaves the outbox.
    await (await r.open()).checkOnce();
    expect(server.reports.filter((x) => x['state'] === 'committed')).toEqual([
      expect.objectContaining({ version: '1.1.0', state: 'committed' }),
    ]);
    expect(await new ReportOutbox(r.agent.config.dataDir).list()).toEqual([]);
  });

  it(`keeps at most ${MAX_OUTBOX_REPORTS} reports, dropping the oldest, and one per key`, async () => {
    const outbox = new ReportOutbox(await tmp());
    await Promise.all(
      Array.from({ length: MAX_OUTBOX_REPORTS + 8 }, (_, i) =>
        outbox.put(`k${i}`, { version: `1.0.${i}`, state: 'committed' }),
      ),
    );
    await outbox.put('k39', { version: 'replaced', state: 'failed' });
    const all = await outbox.list();
    expect(all.length).toBe(MAX_OUTBOX_REPORTS);
    expect(all[0]?.key).toBe('k8');
    expect(all.at(-1)).toEqual({ key: 'k39', report: { version: 'replaced', state: 'failed' } });
    await outbox.remove('k8');
    expect((await outbox.list())[0]?.key).toBe('k9');
  });
});
