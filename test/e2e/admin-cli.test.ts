// The admin commands of `abota` (product, release, device, token, apikey, blob) as a person runs
// them: the built CLI (services/publisher bin/abota.js) as a child process, against a real update
// server (startServer: PGlite and blobs in a temporary directory, loopback HTTP), with releases
// made by `abota keys init` + `abota release build` + `abota release push`, and a device that
// registers and reports through the agent's own client (@abota/client UpdateServerClient).
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DeviceKey, UpdateServerClient } from '@abota/client';
import { releaseBuildArgs } from '@abota/testkit';
import {
  createLogger,
  generateSecret,
  loadConfig,
  type RunningServer,
  startServer,
} from '@abota/update-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const BIN = fileURLToPath(new URL('../../services/publisher/bin/abota.js', import.meta.url));
const PRODUCT = 'admin-cli';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let work: string;
let server: RunningServer;
let adminKey: string;

/** `abota ...argv` as a child process, talking to the test server with `key`. */
function abotaAs(key: string, ...argv: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...argv],
      { env: { ...process.env, ABOTA_SERVER: server?.url ?? '', ABOTA_API_KEY: key }, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}
const abota = (...argv: string[]) => abotaAs(adminKey, ...argv);

function jsonOf<T>(r: Run): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout} ${r.stderr}`);
  }
}

async function ok<T = Record<string, unknown>>(...argv: string[]): Promise<T> {
  const r = await abota(...argv, '--json');
  expect(r.code, `abota ${argv.join(' ')}: ${r.stdout}${r.stderr}`).toBe(0);
  return jsonOf<T>(r);
}

interface ReleaseJson {
  id: string;
  version: string;
  yanked: boolean;
  yankedReason: string | null;
  blobs?: { digest: string; role: string }[];
}

async function buildAndPush(keys: string, version: string): Promise<void> {
  const image = join(work, `rootfs-${version}.img`);
  await writeFile(image, randomBytes(64 * 4096));
  const out = join(work, 'releases', version);
  await ok(...releaseBuildArgs({ image, keys, out, product: PRODUCT, compatible: 'qemu-x64', version }));

  await ok('release', 'push', out);
}

let device: { id: string; client: UpdateServerClient };

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'abota-admin-cli-'));
  adminKey = generateSecret('abk');
  server = await startServer({
    config: loadConfig({
      ABOTA_DATA_DIR: join(work, 'server'),
      ABOTA_PORT: '0',
      ABOTA_HOST: '127.0.0.1',
      ABOTA_ADMIN_KEY: adminKey,
    }),
    logger: createLogger({ level: 'silent' }),
  });
  const keys = join(work, 'keys');
  await ok('keys', 'init', keys);
  await ok('product', 'create', PRODUCT, '--root', join(keys, 'root.json'), '--description', 'lab VMs');
  await buildAndPush(keys, '1.0.0');
  await buildAndPush(keys, '1.1.0');
}, 240_000);

afterAll(async () => {
  await server?.close();
  await rm(work, { recursive: true, force: true });
});

describe('abota admin commands against a real update server', () => {
  it('product list and show: the product and its trust root version', async () => {
    const list = await ok<{ items: { id: string; trustRootVersion: number }[] }>('product', 'list');
    expect(list.items).toEqual([expect.objectContaining({ id: PRODUCT, trustRootVersion: 1 })]);
    const table = await abota('product', 'list');
    expect(table.stdout).toMatch(/^ID\s+TRUST ROOT\s+UPDATED\s+DESCRIPTION\n/);
    expect(table.stdout).toMatch(new RegExp(`${PRODUCT}\\s+v1\\s+\\S+\\s+lab VMs`));
    const show = await abota('product', 'show', PRODUCT);
    expect(show.code).toBe(0);
    expect(show.stdout).toContain(`product ${PRODUCT}\n  trust root  v1`);
    const missing = await abota('product', 'show', 'no-such-product');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(
      /^abota: ERR_NOT_FOUND: GET \/v1\/admin\/products\/no-such-product: no product/,
    );
  });

  it('release list, show and yank: a yanked release is listed as yanked with its reason', async () => {
    const list = await ok<{ items: ReleaseJson[]; nextCursor: string | null }>(
      'release',
      'list',
      '--product',
      PRODUCT,
    );
    expect(list.items.map((r) => r.version).sort()).toEqual(['1.0.0', '1.1.0']);
    const newer = list.items.find((r) => r.version === '1.1.0');
    if (newer === undefined) throw new Error('1.1.0 not listed');
    const paged = await abota('release', 'list', '--limit', '1');
    expect(paged.stdout.trim().split('\n')).toHaveLength(2);
    expect(paged.stderr).toMatch(/^more: abota release list --cursor \S+\n$/);

    const show = await ok<{ release: ReleaseJson }>('release', 'show', newer.id);
    expect(show.release.blobs?.map((b) => b.role).sort()).toEqual([
      'images.rootfs.artifact',
      'images.rootfs.verity.hashTree',
    ]);
    const human = await abota('release', 'show', newer.id);
    expect(human.stdout).toMatch(/version\s+1\.1\.0\n/);

    const yank = await abota('release', 'yank', newer.id, '--reason', 'boot loop on v2 hardware');
    expect(yank.code, yank.stderr).toBe(0);
    expect(yank.stdout).toBe(`release ${PRODUCT} 1.1.0 (${newer.id}) yanked: boot loop on v2 hardware\n`);
    const after = await ok<{ release: ReleaseJson }>('release', 'show', newer.id);
    expect(after.release).toMatchObject({ yanked: true, yankedReason: 'boot loop on v2 hardware' });
    expect((await abota('release', 'list')).stdout).toMatch(/1\.1\.0.*yes: boot loop on v2 hardware/);

    const noReason = await abota('release', 'yank', newer.id);
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toContain('--reason');
  });

  it('release deltas: none registered for a full-image release; removing an unknown delta is ERR_NOT_FOUND', async () => {
    const { items } = await ok<{ items: ReleaseJson[] }>('release', 'list');
    const release = items[0];
    if (release === undefined) throw new Error('no release');
    expect(await ok('release', 'deltas', release.id)).toEqual({ ok: true, items: [] });
    expect((await abota('release', 'deltas', release.id)).stdout).toBe('no deltas\n');
    const gone = await abota('release', 'remove-delta', release.id, '00000000-0000-4000-8000-000000000000');
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/^abota: ERR_NOT_FOUND: DELETE \/v1\/admin\/releases\//);
  });

  it('token list and revoke: a device registers with the token, then the revoked token is refused', async () => {
    const created = await ok<{ id: string; token: string }>(
      'token',
      'create',
      '--product',
      PRODUCT,
      '--max-uses',
      '5',
    );
    const key = await DeviceKey.generate(join(work, 'device.key'));
    const client = new UpdateServerClient({
      baseUrl: server.url,
      audience: 'abota',
      tokenLifetimeSeconds: 60,
      key,
    });
    const id = await client.register({ token: created.token, product: PRODUCT, hardware: 'qemu-x64' });
    device = { id, client };

    const list = await ok<{ items: { id: string; uses: number; revokedAt: string | null }[] }>(
      'token',
      'list',
    );
    expect(list.items).toEqual([expect.objectContaining({ id: created.id, uses: 1, revokedAt: null })]);
    expect((await abota('token', 'list')).stdout).toMatch(new RegExp(`${created.id}\\s+${PRODUCT}\\s+1/5`));

    const revoke = await abota('token', 'revoke', created.id);
    expect(revoke.code, revoke.stderr).toBe(0);
    expect(revoke.stdout).toMatch(
      new RegExp(`^provisioning token ${created.id} \\(${PRODUCT}\\) revoked at \\S+\\n$`),
    );
    const other = await DeviceKey.generate(join(work, 'other.key'));
    const refused = new UpdateServerClient({
      baseUrl: server.url,
      audience: 'abota',
      tokenLifetimeSeconds: 60,
      key: other,
    });
    await expect(
      refused.register({ token: created.token, product: PRODUCT, hardware: 'qemu-x64' }),
    ).rejects.toThrow(/403|revoked|PROVISIONING_TOKEN_INVALID/);
    const again = await abota('token', 'revoke', created.id);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/ERR_NOT_FOUND: .*no unrevoked provisioning token/);
  });

  it('device show (with its events), tags and decommission', async () => {
    await device.client.poll({ version: '1.0.0', bootedSlot: 'A' });
    await device.client.report({
      version: '1.0.0',
      state: 'failed',
      errorCode: 'ERR_SLOT_TOO_SMALL',
      message: 'slot B is 1 MiB',
    });

    const shown = await ok<{
      device: { id: string; currentVersion: string; events: { state: string; errorCode: string }[] };
    }>('device', 'show', device.id);
    expect(shown.device).toMatchObject({ id: device.id, currentVersion: '1.0.0' });
    expect(shown.device.events).toEqual([
      expect.objectContaining({ state: 'failed', errorCode: 'ERR_SLOT_TOO_SMALL' }),
    ]);
    const human = await abota('device', 'show', device.id);
    expect(human.stdout).toContain(
      `device ${device.id}\n  product      ${PRODUCT}\n  hardware     qemu-x64\n  version      1.0.0\n`,
    );
    expect(human.stdout).toMatch(
      /AT\s+VERSION\s+STATE\s+PROGRESS\s+ROLLOUT\s+ERROR\n\S+\s+1\.0\.0\s+failed\s+-\s+-\s+ERR_SLOT_TOO_SMALL: slot B is 1 MiB\n/,
    );

    const tagged = await abota('device', 'tags', device.id, 'ring=canary', 'site=lab');
    expect(tagged.code, tagged.stderr).toBe(0);
    expect(tagged.stdout).toBe(`device ${device.id}: tags ring=canary, site=lab\n`);
    const byTag = await ok<{ items: { id: string }[] }>('device', 'list', '--tag', 'ring=canary');
    expect(byTag.items.map((d) => d.id)).toEqual([device.id]);
    const nothing = await abota('device', 'tags', device.id);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toContain('give the new tags, or --clear');
    expect(
      (await ok<{ device: { tags: string[] } }>('device', 'tags', device.id, '--clear')).device.tags,
    ).toEqual([]);

    const gone = await abota('device', 'decommission', device.id);
    expect(gone.code, gone.stderr).toBe(0);
    expect(gone.stdout).toMatch(new RegExp(`^device ${device.id} decommissioned at \\S+\\n$`));
    await expect(device.client.poll({ version: '1.0.0', bootedSlot: 'A' })).rejects.toThrow(
      /DECOMMISSIONED|403/,
    );
    const listed = await ok<{ items: unknown[] }>('device', 'list');
    expect(listed.items).toEqual([]);
  });

  it('apikey create, list and revoke: a viewer key reads but cannot create keys, and is refused once revoked', async () => {
    const created = await abota('apikey', 'create', '--name', 'dashboard', '--role', 'viewer');
    expect(created.code, created.stderr).toBe(0);
    const viewerKey = created.stdout.trim();
    expect(viewerKey).toMatch(/^abk_/);
    expect(created.stderr).toMatch(/^API key \S+ "dashboard" with role viewer; it is not shown again:\n$/);

    expect((await abotaAs(viewerKey, 'product', 'list')).code).toBe(0);
    const forbidden = await abotaAs(viewerKey, 'apikey', 'create', '--name', 'x', '--role', 'admin');
    expect(forbidden.code).toBe(1);
    expect(forbidden.stderr).toMatch(/^abota: ERR_FORBIDDEN: POST \/v1\/admin\/api-keys: /);

    const list = await ok<{ items: { id: string; name: string; role: string }[] }>('apikey', 'list');
    const entry = list.items.find((k) => k.name === 'dashboard');
    expect(entry).toMatchObject({ role: 'viewer' });
    expect(JSON.stringify(list)).not.toContain(viewerKey);

    const revoke = await abota('apikey', 'revoke', entry?.id ?? '');
    expect(revoke.code, revoke.stderr).toBe(0);
    const refused = await abotaAs(viewerKey, 'product', 'list');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^abota: ERR_UNAUTHENTICATED: /);

    const badRole = await abota('apikey', 'create', '--name', 'x', '--role', 'root');
    expect(badRole.code).toBe(2);
    expect(badRole.stderr).toContain('--role "root": expected one of admin, publisher, operator, viewer');
  });

  it('blob show and delete: a release blob is kept (ERR_BLOB_IN_USE), an unreferenced one is deleted', async () => {
    const { items } = await ok<{ items: ReleaseJson[] }>('release', 'list');
    const { release } = await ok<{ release: ReleaseJson }>('release', 'show', items[0]?.id ?? '');
    const used = release.blobs?.[0]?.digest ?? '';
    const shown = await abota('blob', 'show', used);
    expect(shown.stdout).toMatch(new RegExp(`^${used} \\d+ bytes\\n$`));
    const inUse = await abota('blob', 'delete', used);
    expect(inUse.code).toBe(1);
    expect(inUse.stderr).toMatch(/^abota: ERR_BLOB_IN_USE: /);

    const stray = randomBytes(1000);
    const hex = createHash('sha256').update(stray).digest('hex');
    const put = await fetch(`${server.url}/v1/admin/blobs/sha256/${hex}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/octet-stream' },
      body: stray,
    });
    expect(put.status).toBe(201);
    expect(await ok('blob', 'delete', `sha256:${hex}`)).toEqual({
      ok: true,
      blob: { digest: `sha256:${hex}`, sizeBytes: 1000 },
    });
    const after = await abota('blob', 'show', hex);
    expect(after.code).toBe(1);
    expect(after.stderr).toMatch(/^abota: ERR_NOT_FOUND: /);
    const bad = await abota('blob', 'show', 'sha256:xyz');
    expect(bad.code).toBe(2);
  });

  it('blob list and gc: only blobs no release references, stored before the grace period, are deleted', async () => {
    const strays: string[] = [];
    for (let i = 0; i < 2; i++) {
      const bytes = randomBytes(2000 + i);
      const hex = createHash('sha256').update(bytes).digest('hex');
      const put = await fetch(`${server.url}/v1/admin/blobs/sha256/${hex}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/octet-stream' },
        body: bytes,
      });
      expect(put.status).toBe(201);
      strays.push(`sha256:${hex}`);
    }
    const all = await ok<{ items: { digest: string; referenced: boolean }[] }>('blob', 'list');
    expect(
      all.items
        .filter((b) => !b.referenced)
        .map((b) => b.digest)
        .sort(),
    ).toEqual([...strays].sort());
    expect(all.items.filter((b) => b.referenced)).toHaveLength(4); // two releases: artifact + hash tree
    const table = await abota('blob', 'list', '--unreferenced');
    expect(table.stdout.trim().split('\n')).toHaveLength(3);

    const fresh = await ok<{ deleted: unknown[] }>('blob', 'gc', '--older-than', '1h');
    expect(fresh.deleted).toEqual([]);
    const dry = await ok<{ dryRun: boolean; deleted: { digest: string }[] }>(
      'blob',
      'gc',
      '--older-than',
      '0',
      '--dry-run',
    );
    expect(dry.deleted.map((b) => b.digest).sort()).toEqual([...strays].sort());
    expect((await ok<{ items: unknown[] }>('blob', 'list', '--unreferenced')).items).toHaveLength(2);

    const gc = await abota('blob', 'gc', '--older-than', '0');
    expect(gc.code, gc.stderr).toBe(0);
    expect(gc.stdout).toMatch(
      /^deleted 2 blob\(s\), 4001 bytes, that no release references and were stored before \S+\n/,
    );
    expect((await ok<{ items: unknown[] }>('blob', 'list', '--unreferenced')).items).toEqual([]);
    expect((await ok<{ items: unknown[] }>('blob', 'list')).items).toHaveLength(4);
  });

  it('every new command has --help that names --json', async () => {
    for (const command of [
      ['product', 'list'],
      ['product', 'show'],
      ['release', 'list'],
      ['release', 'show'],
      ['release', 'yank'],
      ['release', 'deltas'],
      ['release', 'remove-delta'],
      ['device', 'show'],
      ['device', 'tags'],
      ['device', 'decommission'],
      ['token', 'list'],
      ['token', 'revoke'],
      ['apikey', 'create'],
      ['apikey', 'list'],
      ['apikey', 'revoke'],
      ['blob', 'show'],
      ['blob', 'delete'],
    ]) {
      const r = await abota(...command, '--help');
      expect(r.code, command.join(' ')).toBe(0);
      expect(r.stdout, command.join(' ')).toContain('--json');
    }
  });
});
