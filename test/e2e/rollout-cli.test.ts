// `abota rollout ...` (services/publisher) in-process through its main(), against a real update
// server (services/update-server startServer: PGlite, loopback HTTP, its own 5 s rollout timer)
// with real signed releases and devices that poll and report with their own Ed25519 keys; the
// rollback at the end with a simulated VM whose agent daemon installs and commits for real.
import { createHash, generateKeyPairSync, type KeyObject, randomBytes, randomUUID, sign } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createTrustRoot,
  generateSigningKey,
  type ReleaseManifest,
  type SigningKey,
  signManifest,
  signTrustRoot,
  type TrustRoot,
} from '@abota/manifest';
import { main } from '@abota/publisher';
import {
  createLogger,
  generateSecret,
  loadConfig,
  type RunningServer,
  startServer,
} from '@abota/update-server';
import type { ServerRoutes } from '@abota/update-server/api';
import { hc } from 'hono/client';
import { createServer, type AddressInfo } from 'node:net';
import type { SimulatedVm } from '@abota/simulator';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  createFleetWithReleases,
  createRolloutWithCli,
  deviceListRow,
  eventually,
  type Fleet,
} from '../fixtures/fleet.js';

let dir: string;
let server: RunningServer;
let adminKey: string;
let releaseKey: SigningKey;
let root: TrustRoot;
const PRODUCT = 'cli-vm';

async function abota(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
    stderr += String(chunk);
    return true;
  });
  try {
    const code = await main(argv);
    return { code, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

/** The admin API through hono/client `hc`, typed by the server's routes, with the admin key. */
const api = () => hc<ServerRoutes>(server.url, { headers: { authorization: `Bearer ${adminKey}` } });

/** The answer's JSON, or an error naming the call unless its status is `status`. */
async function expectJson<T>(res: Response, status: number, what: string): Promise<T> {
  if (res.status !== status) throw new Error(`${what}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

async function pushRelease(version: string): Promise<string> {
  const artifact = new Uint8Array(randomBytes(4096));
  const tree = new Uint8Array(randomBytes(4096));
  const digest = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  for (const b of [artifact, tree]) {
    const res = await api().v1.admin.blobs.sha256[':hex'].$put(
      { param: { hex: digest(b).slice(7) } },
      // The raw bytes as the body (init replaces the client's headers: the key is sent again).
      {
        init: {
          body: b,
          headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/octet-stream' },
        },
      },
    );
    if (res.status >= 300) throw new Error(`PUT blob: ${res.status} ${await res.text()}`);
  }
  const manifest: ReleaseManifest = {
    schemaVersion: 1,
    product: PRODUCT,
    compatible: ['hyperv-x64'],
    version,
    securityVersion: 1,
    created: `${new Date().toISOString().slice(0, 19)}Z`,
    expires: `${new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 19)}Z`,
    images: {
      rootfs: {
        sizeBytes: artifact.length,
        verity: {
          hashType: 1,
          algorithm: 'sha256',
          dataBlockSize: 4096,
          hashBlockSize: 4096,
          dataBlocks: 1,
          salt: randomBytes(32).toString('hex'),
          rootHash: randomBytes(32).toString('hex'),
          superblock: true,
          uuid: randomUUID(),
          hashOffset: 0,
          hashTree: { digest: digest(tree), sizeBytes: tree.length },
        },
        artifact: {
          digest: digest(artifact),
          sizeBytes: artifact.length,
          codec: 'none',
          uncompressedSizeBytes: artifact.length,
        },
      },
    },
  };
  const jws = await signManifest(manifest, [releaseKey], root);
  const res = await api().v1.admin.releases.$post({ json: { manifestJws: JSON.stringify(jws) } });
  return (await expectJson<{ id: string }>(res, 201, 'release')).id;
}

interface Device {
  id: string;
  key: KeyObject;
}

/** A compact EdDSA JWT signed with node:crypto (CONTRACTS.md device auth). */
function deviceToken(d: Device): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64({ alg: 'EdDSA' })}.${b64({ iss: d.id, sub: d.id, aud: 'abota', iat: now, exp: now + 60, jti: randomUUID() })}`;
  return `${input}.${sign(null, Buffer.from(input), d.key).toString('base64url')}`;
}

async function device(path: string, d: Device, body: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${deviceToken(d)}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return (await res.json()) as Record<string, unknown>;
}

let devices: Device[];
// The CLI reads these (services/publisher src/commands/rollout.ts); restored after the file.
const API_KEY_ENV = 'ABOTA_API_KEY';
const SERVER_ENV = 'ABOTA_SERVER';
const env = { [API_KEY_ENV]: process.env[API_KEY_ENV], [SERVER_ENV]: process.env[SERVER_ENV] };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'abota-rollout-cli-'));
  adminKey = generateSecret('abk');
  server = await startServer({
    config: loadConfig({
      ABOTA_DATA_DIR: dir,
      ABOTA_PORT: '0',
      ABOTA_HOST: '127.0.0.1',
      ABOTA_ADMIN_KEY: adminKey,
    }),
    logger: createLogger({ level: 'silent' }),
  });
  const rootKey = await generateSigningKey();
  releaseKey = await generateSigningKey();
  root = await createTrustRoot({
    version: 1,
    expires: new Date(Date.now() + 365 * 86_400_000),
    rootKeys: [rootKey],
    rootThreshold: 1,
    releaseKeys: [releaseKey],
    releaseThreshold: 1,
  });
  const product = await api().v1.admin.products.$post({
    json: { id: PRODUCT, trustRoot: await signTrustRoot(root, [rootKey]) },
  });
  await expectJson(product, 201, 'product');
  await pushRelease('1.0.0');
  await pushRelease('1.1.0');
  const tokenRes = await api().v1.admin['provisioning-tokens'].$post({
    json: { product: PRODUCT, expiresInSeconds: 600, maxUses: 4 },
  });
  const { token } = (await tokenRes.json()) as { token: string };
  devices = [];
  for (let i = 0; i < 4; i++) {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const x = publicKey.export({ format: 'jwk' }).x;
    const res = await fetch(`${server.url}/v1/device/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        token,
        product: PRODUCT,
        hardware: 'hyperv-x64',
        publicKeyJwk: { kty: 'OKP', crv: 'Ed25519', x },
      }),
    });
    devices.push({ id: ((await res.json()) as { deviceId: string }).deviceId, key: privateKey });
  }
  process.env[API_KEY_ENV] = adminKey;
  process.env[SERVER_ENV] = server.url;
}, 120_000);

afterAll(async () => {
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

/** A loopback port with nothing listening (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((ok) => server.close(() => ok()));
  return port;
}

describe('abota rollout', () => {
  it('creates a staged rollout by product and version, lists it, and shows per-stage status as a table and as JSON', async () => {
    const created = await abota(
      'rollout',
      'create',
      '--product',
      PRODUCT,
      '--version',
      '1.1.0',
      '--stages',
      '50,100',
      '--bake',
      '1h',
      '--max-failure',
      '20%',
      '--min-sample',
      '1',
      '--tag',
      'lab',
      '--json',
    );
    expect(created.code).toBe(0);
    const rollout = JSON.parse(created.stdout) as {
      id: string;
      state: string;
      stages: unknown[];
      selector: unknown;
    };
    expect(rollout).toMatchObject({
      state: 'active',
      selector: { tags: ['lab'] },
      stages: [
        { percent: 50, minBakeSeconds: 3600, maxFailurePercent: 20, minSample: 1 },
        { percent: 100, minBakeSeconds: 3600, maxFailurePercent: 20, minSample: 1 },
      ],
    });

    const list = await abota('rollout', 'list');
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^ID\s+NAME\s+VERSION\s+KIND\s+STATE\s+STARTED/);
    expect(list.stdout).toContain(rollout.id);
    expect(list.stdout).toContain('running stage 1/2 (50%)');

    const table = await abota('rollout', 'status', rollout.id);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(
      /STAGE\s+PERCENT\s+BAKE\s+TARGETED\s+OFFERED\s+INSTALLING\s+COMMITTED\s+FAILED\s+FAIL%\s+MAX%/,
    );
    expect(table.stdout).toMatch(/> 1\s+50%\s+1h00m\s+0\s+0/);
    expect(table.stdout).toMatch(/next\s+wait: baking stage 1\/2 \(50%\)/);

    const json = await abota('rollout', 'status', rollout.id, '--json');
    const doc = JSON.parse(json.stdout) as {
      status: { stages: { targeted: number }[]; next: { action: string } };
    };
    expect(doc.status.stages).toHaveLength(2);
    expect(doc.status.next.action).toBe('wait');
    await abota('rollout', 'abort', rollout.id);
  });

  it('previews with --dry-run (a table, or JSON) and creates nothing; --id then creates exactly the previewed cohorts', async () => {
    const rollouts = async () =>
      (JSON.parse((await abota('rollout', 'list', '--json')).stdout) as { items: unknown[] }).items.length;
    const before = await rollouts();
    const flags = [
      'rollout',
      'create',
      '--product',
      PRODUCT,
      '--version',
      '1.1.0',
      '--stages',
      '25,100',
      '--draft',
    ];
    const dry = await abota(...flags, '--dry-run', '--window', '00:00-23:59');
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/^dry run {2}cli-vm 1\.1\.0: nothing was created\n/);
    expect(dry.stdout).toContain('devices  4 live in cli-vm, 4 selected, 4 to update');
    expect(dry.stdout).toMatch(
      /STAGE\s+PERCENT\s+MIN DEVICES\s+NEW DEVICES\s+REACHED\s+IN WINDOW NOW\s+MAX AT ONCE/,
    );
    expect(dry.stdout).toMatch(/\n2\s+100%\s+1\s+\d\s+4\s+\d\s+-/);
    expect(dry.stdout).toMatch(/create exactly these cohorts with the same flags and --id [0-9a-f-]{36}/);
    const preview = JSON.parse((await abota(...flags, '--dry-run', '--json')).stdout) as {
      rolloutId: string;
      devices: { eligible: number };
      stages: { targeted: number; cumulative: number }[];
    };
    expect(preview.devices.eligible).toBe(4);
    expect(preview.stages.map((s) => s.cumulative).at(-1)).toBe(4);
    expect(await rollouts()).toBe(before);

    const created = await abota(...flags, '--id', preview.rolloutId, '--json');
    expect(created.code).toBe(0);
    expect((JSON.parse(created.stdout) as { id: string }).id).toBe(preview.rolloutId);
    const status = JSON.parse((await abota('rollout', 'status', preview.rolloutId, '--json')).stdout) as {
      status: { stages: { targeted: number }[] };
    };
    expect(status.status.stages.map((s) => s.targeted)).toEqual(preview.stages.map((s) => s.targeted));
    const reused = await abota(...flags, '--id', preview.rolloutId, '--dry-run');
    expect(reused.code).toBe(1);
    expect(reused.stderr).toContain('ERR_CONFLICT');
    await abota('rollout', 'abort', preview.rolloutId);
  });

  it('pauses with a reason, resumes, aborts, and refuses an impossible transition with the server code', async () => {
    const created = await abota(
      'rollout',
      'create',
      '--release',
      await releaseIdOf('1.1.0'),
      '--stages',
      '100',
      '--json',
    );
    const id = (JSON.parse(created.stdout) as { id: string }).id;
    // Two devices take the update and commit it.
    for (const d of devices.slice(0, 2)) {
      const offer = await device('/v1/device/poll', d, { version: '1.0.0', bootedSlot: 'A' });
      expect(offer).toMatchObject({ status: 'update', rolloutId: id });
      await device('/v1/device/report', d, { rolloutId: id, version: '1.1.0', state: 'committed' });
    }
    const status = JSON.parse((await abota('rollout', 'status', id, '--json')).stdout) as {
      status: { overall: { committed: number; targeted: number } };
    };
    expect(status.status.overall).toMatchObject({ committed: 2, targeted: 4 });

    const paused = await abota('rollout', 'pause', id, '--reason', 'checking telemetry');
    expect(paused.code).toBe(0);
    expect(paused.stdout).toContain('paused at stage 1/1 (100%): checking telemetry');
    expect((await abota('rollout', 'status', id)).stdout).toMatch(/next\s+paused \(checking telemetry\)/);
    expect((await abota('rollout', 'resume', id)).stdout).toContain('running stage 1/1');
    expect((await abota('rollout', 'abort', id, '--reason', 'enough')).code).toBe(0);

    const again = await abota('rollout', 'resume', id);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(
      /^abota: ERR_ROLLOUT_STATE: POST \/v1\/admin\/rollouts\/[^:]+: cannot resume a rollout that is aborted/,
    );
    const againJson = await abota('rollout', 'resume', id, '--json');
    expect(JSON.parse(againJson.stdout)).toMatchObject({ ok: false, error: { code: 'ERR_ROLLOUT_STATE' } });
  });

  it('watches a status until the rollout ends or for --count refreshes, one JSON document per line with --json', async () => {
    const created = await abota(
      'rollout',
      'create',
      '--release',
      await releaseIdOf('1.1.0'),
      '--draft',
      '--json',
    );
    const id = (JSON.parse(created.stdout) as { id: string; state: string }).id;
    const watched = await abota(
      'rollout',
      'status',
      id,
      '--watch',
      '--interval',
      '0.1',
      '--count',
      '3',
      '--json',
    );
    expect(watched.code).toBe(0);
    const lines = watched.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines.map((l) => (JSON.parse(l) as { rollout: { state: string } }).rollout.state)).toEqual([
      'draft',
      'draft',
      'draft',
    ]);
    expect((await abota('rollout', 'start', id)).stdout).toContain('running stage 1/3 (1%)');
    await abota('rollout', 'abort', id, '--reason', 'test over');
    // An ended rollout: the watch draws once and returns.
    const ended = await abota('rollout', 'status', id, '--watch', '--interval', '0.1');
    expect(ended.code).toBe(0);
    expect(ended.stdout).toContain('state    aborted: test over');
    expect(ended.stdout.match(/^rollout /gm)).toHaveLength(1);
  });

  it('streams status events: the current status at once, the next one as soon as an operator pauses', async () => {
    const created = await abota('rollout', 'create', '--release', await releaseIdOf('1.1.0'), '--json');
    const id = (JSON.parse(created.stdout) as { id: string }).id;
    const abort = new AbortController();
    const res = await fetch(`${server.url}/v1/admin/rollouts/${id}/events`, {
      headers: { authorization: `Bearer ${adminKey}` },
      signal: abort.signal,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let buffered = '';
    const nextStatus = async (): Promise<{ rollout: { state: string; stateReason: string | null } }> => {
      for (;;) {
        const end = buffered.indexOf('\n\n');
        if (end >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const data = block.split('\n').find((l) => l.startsWith('data: '));
          if (block.includes('event: status') && data !== undefined) return JSON.parse(data.slice(6));
          continue;
        }
        const { value, done } = await reader.read();
        if (done) throw new Error('event stream ended');
        buffered += Buffer.from(value).toString('utf8');
      }
    };
    expect((await nextStatus()).rollout.state).toBe('active');
    const started = performance.now();
    await abota('rollout', 'pause', id, '--reason', 'watching events');
    const paused = await nextStatus();
    // Woken by the change, not by the periodic refresh (every 5 s).
    expect(performance.now() - started).toBeLessThan(4000);
    expect(paused.rollout).toMatchObject({ state: 'paused', stateReason: 'watching events' });
    abort.abort();
    await abota('rollout', 'abort', id);
    const missing = await fetch(`${server.url}/v1/admin/rollouts/${randomUUID()}/events`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    expect(missing.status).toBe(404);
  });

  it("evaluates on the server's own timer: a rollout that targets no device completes without any report", async () => {
    const created = await abota(
      'rollout',
      'create',
      '--release',
      await releaseIdOf('1.1.0'),
      '--tag',
      'nobody-has-this',
      '--stages',
      '100',
      '--bake',
      '0',
      '--json',
    );
    const id = (JSON.parse(created.stdout) as { id: string }).id;
    const started = performance.now();
    let state = '';
    while (performance.now() - started < 15_000) {
      state = (
        JSON.parse((await abota('rollout', 'status', id, '--json')).stdout) as { rollout: { state: string } }
      ).rollout.state;
      if (state === 'completed') break;
      await new Promise((r) => setTimeout(r, 250));
    }
    // startServer evaluates every 5 s.
    expect(state).toBe('completed');
  });

  it('documents the rollout API in the OpenAPI document the server serves', async () => {
    const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, unknown>>;
      components: { schemas: Record<string, unknown> };
    };
    for (const action of ['start', 'pause', 'resume', 'abort', 'rollback'])
      expect(doc.paths[`/v1/admin/rollouts/{id}/${action}`]?.['post']).toBeDefined();
    expect(doc.paths['/v1/admin/rollouts/{id}/status']?.['get']).toBeDefined();
    expect(doc.paths['/v1/admin/rollouts/{id}/events']?.['get']).toBeDefined();
    expect(Object.keys(doc.components.schemas)).toEqual(
      expect.arrayContaining([
        'Rollout',
        'RolloutCreate',
        'RolloutStage',
        'RolloutStatus',
        'RolloutRollback',
      ]),
    );
  });

  it('explains a missing API key, a bad flag and an unreachable server with codes and exit statuses', async () => {
    const key = process.env[API_KEY_ENV];
    delete process.env[API_KEY_ENV];
    try {
      const noKey = await abota('rollout', 'list');
      expect(noKey.code).toBe(2);
      expect(noKey.stderr).toMatch(/ERR_API_KEY_MISSING: no API key: set ABOTA_API_KEY/);
    } finally {
      process.env[API_KEY_ENV] = key;
    }
    const badStages = await abota('rollout', 'create', '--release', randomUUID(), '--stages', '1,ten');
    expect(badStages.code).toBe(2);
    expect(badStages.stderr).toMatch(/ERR_USAGE: --stages "ten" is not a number/);
    const both = await abota('rollout', 'rollback', randomUUID());
    expect(both.stderr).toMatch(/give exactly one of --to-release <id> or --to-version <version>/);
    const port = await closedPort();
    const down = await abota('rollout', 'list', '--server', `http://127.0.0.1:${port}`);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(
      /ERR_SERVER_UNREACHABLE: GET \/v1\/admin\/rollouts\?limit=1000 to http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/,
    );
    const missing = await abota('rollout', 'status', randomUUID());
    expect(missing.stderr).toMatch(/ERR_NOT_FOUND: GET \/v1\/admin\/rollouts\/[^:]+: no rollout/);
  });
});

// `abota rollout rollback` with a device that really installs: signed releases built by the CLI,
// a simulated VM whose agent runs as its own process (`abota-agent run`, the daemon), reboots
// played by the simulator's GRUB. A separate server (the fleet's), so the devices above stay out.
describe('abota rollout rollback with a real device', () => {
  let fleet: Fleet;
  beforeAll(async () => {
    fleet = await createFleetWithReleases(['1.0.0', '1.1.0']);
  }, 180_000);
  afterAll(async () => {
    await fleet?.close();
  });

  /** The daemon of the VM's current boot runs until `until` holds, then is stopped (SIGTERM). */
  async function daemonUntil(vm: SimulatedVm, what: string, until: () => Promise<boolean>): Promise<void> {
    const agent = vm.spawnAgent(['run', '--json']);
    try {
      const reached = await eventually(until, (x) => x || !agent.running, 60_000);
      if (!reached) throw new Error(`agent daemon never reached "${what}": ${agent.stderr}${agent.stdout}`);
    } finally {
      await agent.killAndWait('SIGTERM');
    }
  }

  /** Install under the daemon, reboot the VM, and let the daemon of the new boot commit `version`. */
  async function updateWithDaemon(vm: SimulatedVm, deviceId: string, version: string) {
    await daemonUntil(vm, 'reboot requested', () => vm.rebootRequested());
    const boot = await vm.boot();
    await daemonUntil(vm, `committed ${version}`, async () => {
      const row = await deviceListRow(fleet, deviceId);
      return row.version === version && row.state === 'committed';
    });
    return boot;
  }

  it('returns a device that committed 1.1.0 to 1.0.0: the agent installs it and commits it on the old slot', async () => {
    const { vm, deviceId } = await fleet.newVm('cli-rollback');
    const createdId = await createRolloutWithCli(fleet, '1.1.0', ['--min-sample', '1']);
    expect((await updateWithDaemon(vm, deviceId, '1.1.0')).slot).toBe('B');
    expect(await deviceListRow(fleet, deviceId)).toEqual({ version: '1.1.0', slot: 'B', state: 'committed' });

    const rollback = JSON.parse(
      await fleet.operator(['rollout', 'rollback', createdId, '--to-version', '1.0.0', '--json']),
    ) as { id: string; kind: string; releaseVersion: string };
    expect(rollback).toMatchObject({ kind: 'rollback', releaseVersion: '1.0.0' });
    expect((await updateWithDaemon(vm, deviceId, '1.0.0')).slot).toBe('A');
    expect(await deviceListRow(fleet, deviceId)).toEqual({ version: '1.0.0', slot: 'A', state: 'committed' });
    expect(await (await vm.openAgent()).status()).toMatchObject({ bootedSlot: 'A', version: '1.0.0' });

    const state = async (id: string) =>
      (
        JSON.parse(await fleet.operator(['rollout', 'status', id, '--json'])) as {
          rollout: { state: string };
        }
      ).rollout.state;
    expect(await state(createdId)).toBe('aborted');
    expect(
      await eventually(
        () => state(rollback.id),
        (x) => x !== 'active',
      ),
    ).toBe('completed');
  }, 180_000);
});

async function releaseIdOf(version: string): Promise<string> {
  const res = await api().v1.admin.releases.$get({ query: { product: PRODUCT } });
  const { items } = await expectJson<{ items: { id: string; version: string }[] }>(res, 200, 'releases');
  const found = items.find((r) => r.version === version);
  if (found === undefined) throw new Error(`no release ${version}`);
  return found.id;
}
