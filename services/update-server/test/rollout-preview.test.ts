// The rollout dry run (POST /v1/admin/rollouts/preview) on PGlite and the real PostgreSQL: the
// SQL bucket equals the JS one for every device; each stage's previewed cohort equals what the
// rollout then targets (its status), created with the previewed id; the window count matches
// windowOpen per device; and neither a preview nor a refused one changes any row.
import { randomUUID } from 'node:crypto';
import { count } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../src/index.js';
import { rolloutBucket, rolloutBucketSql } from '../src/rollout/bucket.js';
import { stageOfBucket } from '../src/rollout/progress.js';
import { releaseApplies } from '../src/rollout/offer.js';
import type { RolloutPreview } from '../src/rollout/preview.js';
import { selectorPicks } from '../src/rollout/selector.js';
import { windowOpen } from '../src/rollout/window.js';
import type { RolloutStatusView } from '../src/rollout/status.js';
import {
  createHarness,
  createProduct,
  DB_BACKENDS,
  type Harness,
  makeProduct,
  makeRelease,
  openTestBlobStore,
  openTestDatabase,
  pushRelease,
  type TestBlobStore,
  type TestDatabase,
} from './harness.js';

type ErrorBody = { error: { code: string; message: string } };

const FLEET = 1200;
const VERSIONS = [null, '1.0.0', '1.1.0', '1.2.0', '2.0.0', 'build-7'] as const;
const ZONES = [undefined, 'Asia/Tokyo', 'America/New_York', 'Europe/Berlin', 'Not/AZone'] as const;

describe.each(DB_BACKENDS)('rollout preview on %s', (backend) => {
  let tdb: TestDatabase;
  let tblobs: TestBlobStore;
  let h: Harness;
  let releaseId: string;
  let yankedId: string;
  type Row = typeof schema.devices.$inferInsert;
  const fleet: Row[] = [];

  const rowCounts = async () => {
    const db = tdb.database.db;
    const out: Record<string, number> = {};
    for (const [name, table] of Object.entries({
      rollouts: schema.rollouts,
      rolloutDevices: schema.rolloutDevices,
      auditLog: schema.auditLog,
      devices: schema.devices,
    })) {
      const [row] = await db.select({ n: count() }).from(table);
      out[name] = Number(row?.n ?? -1);
    }
    return out;
  };

  const preview = (json: unknown, key = h.adminKey) =>
    h.request('/v1/admin/rollouts/preview', { method: 'POST', key, json });
  const create = (json: unknown) =>
    h.request('/v1/admin/rollouts', { method: 'POST', key: h.adminKey, json });

  beforeAll(async () => {
    tdb = await openTestDatabase(backend);
    tblobs = await openTestBlobStore('fs');
    h = await createHarness(tdb.database, tblobs.blobs);
    const keys = await makeProduct('eflow-vm');
    await createProduct(h, keys);
    releaseId = await pushRelease(
      h,
      await makeRelease(keys, '1.2.0', { compatible: ['hyperv-x64', 'kvm-x64'] }),
    );
    yankedId = await pushRelease(h, await makeRelease(keys, '1.3.0'));
    await h.request(`/v1/admin/releases/${yankedId}/yank`, {
      method: 'POST',
      key: h.adminKey,
      json: { reason: 'bad build' },
    });
    // A varied fleet written straight to the table (registration over HTTP is tested elsewhere):
    // hardware, tags, groups, running versions (some not semver, some unreported), time zones,
    // and a few decommissioned devices.
    for (let i = 0; i < FLEET; i++) {
      const zone = ZONES[i % ZONES.length];
      fleet.push({
        id: randomUUID(),
        product: 'eflow-vm',
        hardware: ['hyperv-x64', 'kvm-x64', 'arm64-board'][Math.floor(i / 4) % 3] ?? 'hyperv-x64',
        publicKeyJwk: { kty: 'OKP', crv: 'Ed25519', x: `k${i}` },
        attributes: zone === undefined ? {} : { timezone: zone },
        tags: [
          ...(i % 2 === 0 ? ['ring:early'] : []),
          ...(i % 5 === 0 ? ['lab'] : []),
          `group:${['eu', 'us', 'apac'][i % 7 === 0 ? 2 : i % 2] ?? 'eu'}`,
        ],
        currentVersion: VERSIONS[i % VERSIONS.length] ?? null,
        decommissionedAt: i % 97 === 0 ? new Date() : null,
      });
    }
    await tdb.database.db.insert(schema.devices).values(fleet);
  });
  afterAll(async () => {
    await tdb?.dispose();
    await tblobs?.dispose();
  });

  it('computes the same bucket in SQL as rolloutBucket for every device', async () => {
    const rolloutId = randomUUID();
    const rows = await tdb.database.db
      .select({ id: schema.devices.id, b: rolloutBucketSql(rolloutId, schema.devices.id) })
      .from(schema.devices);
    expect(rows).toHaveLength(FLEET);
    for (const r of rows) expect(r.b).toBe(rolloutBucket(rolloutId, r.id));
  });

  const cases: [string, Record<string, unknown>][] = [
    [
      'a staged rollout with a minimum canary, a selector and a device-local window',
      {
        selector: { tags: ['ring:early'], groups: ['eu', 'apac'], currentVersion: '>=1.0.0 <2.0.0' },
        stages: [{ percent: 0.5, minDevices: 7 }, { percent: 10, minDevices: 3 }, { percent: 60 }],
        maintenanceWindow: { timezone: 'device-local', start: '00:00', end: '12:00' },
      },
    ],
    ['the whole fleet in one stage', {}],
    [
      'explicit devices and hardware, downgrade allowed',
      {
        selector: {
          deviceIds: ['00000000-0000-4000-8000-000000000000'], // replaced below
          hardware: ['kvm-x64'],
        },
        allowDowngrade: true,
        stages: [{ percent: 50 }, { percent: 100 }],
      },
    ],
  ];

  it.each(cases)('previews %s: the cohorts equal what the created rollout targets', async (_name, spec) => {
    const body = structuredClone({ releaseId, ...spec }) as Record<string, unknown> & {
      selector?: { deviceIds?: string[]; hardware?: string[] };
    };
    if (body.selector?.deviceIds !== undefined)
      body.selector.deviceIds = fleet.filter((_, i) => i % 4 === 1).map((d) => d.id ?? '');
    const before = await rowCounts();
    const res = await preview(body);
    expect(res.status).toBe(200);
    const p = (await res.json()) as RolloutPreview;
    expect(await rowCounts()).toEqual(before);

    // An independent count in JS over every device, the way the poll and status decide.
    const selector = (body.selector ?? {}) as Parameters<typeof selectorPicks>[0];
    const liveDevices = fleet.filter((d) => d.decommissionedAt === null);
    const candidate = {
      releaseVersion: '1.2.0',
      releaseCompatible: ['hyperv-x64', 'kvm-x64'],
      allowDowngrade: body['allowDowngrade'] === true,
    };
    const selected = liveDevices.filter((d) =>
      selectorPicks(selector, 'eflow-vm', {
        id: d.id ?? '',
        product: d.product,
        hardware: d.hardware,
        tags: d.tags ?? [],
        currentVersion: d.currentVersion ?? null,
      }),
    );
    const eligible = selected.filter((d) =>
      releaseApplies(candidate, { hardware: d.hardware, currentVersion: d.currentVersion ?? null }),
    );
    expect(p.devices.product).toBe(liveDevices.length);
    expect(p.devices.selected).toBe(selected.length);
    expect(p.devices.eligible).toBe(eligible.length);
    expect(p.devices.selected).toBe(p.devices.eligible + p.devices.incompatible + p.devices.upToDate);
    expect(p.devices.eligible).toBeGreaterThan(0);
    const limits = p.stages.map((s) => s.bucketLimit);
    const window = (body['maintenanceWindow'] ?? null) as Parameters<typeof windowOpen>[0];
    const now = new Date(p.at);
    for (const [i, s] of p.stages.entries()) {
      const cohort = eligible.filter((d) => {
        const b = rolloutBucket(p.rolloutId, d.id ?? '');
        return b < (limits.at(-1) ?? 0) && stageOfBucket(limits, b) === i;
      });
      expect(s.targeted).toBe(cohort.length);
      expect(s.inWindowNow).toBe(
        cohort.filter((d) => windowOpen(window, now, (d.attributes as { timezone?: string }).timezone))
          .length,
      );
      expect(s.cumulative).toBeGreaterThanOrEqual(Math.min(s.minDevices, eligible.length));
    }

    // Create it with the previewed id (as a draft: nothing offered yet) and read its status.
    const created = await create({ ...body, id: p.rolloutId.toUpperCase(), start: false });
    expect(created.status).toBe(201);
    expect(((await created.json()) as { id: string }).id).toBe(p.rolloutId);
    const statusRes = await h.request(`/v1/admin/rollouts/${p.rolloutId}/status`, { key: h.adminKey });
    const { status } = (await statusRes.json()) as { status: RolloutStatusView };
    expect(status.stages.map((s) => s.targeted)).toEqual(p.stages.map((s) => s.targeted));
    expect(status.overall.targeted).toBe(p.stages.at(-1)?.cumulative);
    expect(status.overall.targeted + p.devices.beyondLastStage).toBe(p.devices.eligible);
    // Started, the same: starting does not move a device between stages.
    const started = await h.request(`/v1/admin/rollouts/${p.rolloutId}/start`, {
      method: 'POST',
      key: h.adminKey,
      json: {},
    });
    expect(started.status).toBe(200);
    const again = (await (
      await h.request(`/v1/admin/rollouts/${p.rolloutId}/status`, { key: h.adminKey })
    ).json()) as { status: RolloutStatusView };
    expect(again.status.stages.map((s) => s.targeted)).toEqual(p.stages.map((s) => s.targeted));
    await h.request(`/v1/admin/rollouts/${p.rolloutId}/abort`, { method: 'POST', key: h.adminKey, json: {} });
  });

  it('answers a fresh id each time, and counts a second preview the same way', async () => {
    const a = (await (await preview({ releaseId })).json()) as RolloutPreview;
    const b = (await (await preview({ releaseId })).json()) as RolloutPreview;
    expect(a.rolloutId).not.toBe(b.rolloutId);
    expect(a.devices).toEqual(b.devices);
    const fixed = randomUUID();
    const c = (await (
      await preview({ releaseId, id: fixed, stages: [{ percent: 5 }, { percent: 100 }] })
    ).json()) as RolloutPreview;
    const d = (await (
      await preview({ releaseId, id: fixed, stages: [{ percent: 5 }, { percent: 100 }] })
    ).json()) as RolloutPreview;
    expect(c.rolloutId).toBe(fixed);
    expect(c.stages).toEqual(d.stages);
  });

  it('refuses what creation refuses, with the same error, and changes nothing', async () => {
    const existing = (await (await create({ releaseId, start: false })).json()) as { id: string };
    const before = await rowCounts();
    const bad: [unknown, number, string][] = [
      [{ releaseId, stages: [{ percent: 50 }, { percent: 10 }] }, 400, 'ERR_VALIDATION'],
      [{ releaseId, selector: { currentVersion: '~1.0' } }, 400, 'ERR_VALIDATION'],
      [
        { releaseId, maintenanceWindow: { timezone: 'utc', start: '02:00', end: '02:00' } },
        400,
        'ERR_VALIDATION',
      ],
      [{ releaseId: randomUUID() }, 404, 'ERR_NOT_FOUND'],
      [{ releaseId: yankedId }, 409, 'ERR_CONFLICT'],
      [{ releaseId, id: existing.id }, 409, 'ERR_CONFLICT'],
      [{ releaseId, selector: { product: 'x' } }, 400, 'ERR_VALIDATION'],
    ];
    for (const [body, status, code] of bad) {
      for (const send of [preview, create]) {
        const res = await send(body);
        expect(res.status, JSON.stringify(body)).toBe(status);
        expect(((await res.json()) as ErrorBody).error.code).toBe(code);
      }
    }
    expect(await rowCounts()).toEqual(before);
  });

  it('is for operators: a viewer is refused', async () => {
    const res = await h.request('/v1/admin/api-keys', {
      method: 'POST',
      key: h.adminKey,
      json: { name: 'viewer', role: 'viewer' },
    });
    const { key } = (await res.json()) as { key: string };
    const before = await rowCounts();
    const refused = await preview({ releaseId }, key);
    expect(refused.status).toBe(403);
    expect(await rowCounts()).toEqual(before);
  });

  it('is in the OpenAPI document', async () => {
    const doc = (await (await h.request('/openapi.json')).json()) as {
      paths: Record<string, { post?: { responses: Record<string, unknown> } }>;
    };
    expect(doc.paths['/v1/admin/rollouts/preview']?.post?.responses['200']).toBeDefined();
  });

  it('stays exact when a stage lists a device that no longer exists (decommissioned)', async () => {
    const gone = fleet.find((d) => d.decommissionedAt !== null);
    const p = (await (
      await preview({ releaseId, selector: { deviceIds: [gone?.id ?? ''] } })
    ).json()) as RolloutPreview;
    expect(p.devices.selected).toBe(0);
    expect(p.stages[0]?.targeted).toBe(0);
  });
});
