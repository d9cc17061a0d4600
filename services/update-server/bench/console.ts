// Console render time at fleet scale (issue 17 budget: ≤ 300 ms server time per page). A scratch
// PostgreSQL database seeded with CONSOLE_BENCH_DEVICES devices (default 100,000) across versions,
// states, slots, tags and 30 days of commit reports, a rollout to a tenth of them (every one a
// member, outcomes over two days), 10,000 audit records; the app in-process
// (createApp over node-postgres), signed in through the console; each page requested
// CONSOLE_BENCH_RUNS times after a warm-up, time to the full HTML body measured (server time: no
// network, no browser). Prints one line per page: p50 / p95 / max ms, bytes.
//
//   npx tsx --conditions=@abota/source bench/console.ts
import { performance } from 'node:perf_hooks';
import { FsBlobStore } from '@abota/blobstore';
import { sql } from 'drizzle-orm';
import { createApp } from '../src/app.js';
import { bootstrapAdminKey } from '../src/auth/api-keys.js';
import { generateSecret } from '../src/auth/secrets.js';
import { openDatabase } from '../src/db/database.js';
import { createLogger } from '../src/logger.js';
import {
  versionHistory,
  versionHistoryRecount,
  versionHistorySql,
} from '../src/console/pages/fleet-history.js';
import { benchScratch, PRODUCT, seedCanaryRelease } from './common.js';

const DEVICES = Number(process.env['CONSOLE_BENCH_DEVICES'] ?? 100_000);
const RUNS = Number(process.env['CONSOLE_BENCH_RUNS'] ?? 20);

const scratch = await benchScratch();
// Seeding (each commit also updates the version history by trigger) runs past the 30 s query deadline.
const database = await openDatabase({
  kind: 'postgres',
  url: scratch.dbUrl,
  poolSize: 4,
  queryTimeoutMs: 600_000,
});
try {
  const seedStarted = performance.now();
  const { db } = database;
  await seedCanaryRelease(db);
  await db.execute(sql`
    insert into devices (product, hardware, public_key_jwk, tags, current_version, booted_slot,
                         install_state, last_seen_at, created_at)
    select ${PRODUCT}, case when i % 3 = 0 then 'rpi4' else 'hyperv-x64' end,
      '{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}'::jsonb,
      case when i % 10 = 0 then array['canary', 'site:' || (i % 50)] else array['site:' || (i % 50)] end,
      case when i % 4 = 0 then '2.0.0' when i % 4 = 1 then '1.1.0' else '1.0.0' end,
      case when i % 4 < 2 then 'B' else 'A' end,
      case when i % 97 = 0 then 'failed' when i % 4 < 2 then 'committed' else 'idle' end,
      now() - (i % 7200) * interval '1 second',
      now() - interval '45 days' + (i % 20) * interval '1 day'
    from generate_series(1, ${DEVICES}::int) as i`);
  // Commit history: 1.1.0 for every device now on 1.1.0 or 2.0.0, 2.0.0 later for those on it.
  await db.execute(sql`
    insert into device_events (device_id, version, state, progress, created_at)
    select id, '1.1.0', s.state, s.progress, created_at + interval '15 days' + (abs(hashtext(id::text)) % 10) * interval '1 day' + s.k * interval '1 minute'
    from devices, (values (0, 'downloading', 100), (1, 'installing', null), (2, 'committed', null)) as s(k, state, progress)
    where current_version in ('1.1.0', '2.0.0')`);
  await db.execute(sql`
    insert into device_events (device_id, version, state, created_at)
    select id, '2.0.0', 'committed', now() - (abs(hashtext(id::text)) % 5) * interval '1 day'
    from devices where current_version = '2.0.0'`);
  await db.execute(sql`
    insert into audit_log (actor, action, target, details, created_at)
    select 'apikey:' || gen_random_uuid(), 'rollout.pause', 'rollout:' || gen_random_uuid(), '{}'::jsonb,
      now() - i * interval '1 minute'
    from generate_series(1, 10000) as i`);
  // The canary rollout of seedCanaryRelease (tag canary: a tenth of the fleet) with every canary
  // device a member, outcomes spread over the last two days (its page draws the failure rate).
  await db.execute(sql`
    insert into rollout_devices (rollout_id, device_id, state, updated_at, blobs_fetched_at, committed_at)
    select r.id, d.id, s.state, now() - (abs(hashtext(d.id::text)) % 2880) * interval '1 minute', now() - interval '2 days',
      case when s.state = 'committed' then now() - (abs(hashtext(d.id::text)) % 2880) * interval '1 minute' end
    from rollouts r, devices d,
      lateral (select (array['committed','committed','committed','installing','failed','offered'])[1 + abs(hashtext(d.id::text)) % 6] as state) s
    where 'canary' = any(d.tags)`);
  await db.execute(sql`analyze`);
  const [{ n: events } = { n: 0 }] = (
    (await db.execute(sql`select count(*)::int as n from device_events`)) as unknown as {
      rows: { n: number }[];
    }
  ).rows;
  console.log(
    `seeded ${DEVICES.toLocaleString('en-US')} devices, ${events.toLocaleString('en-US')} events, 10,000 audit records in ${Math.round(performance.now() - seedStarted)} ms`,
  );

  if (process.env['CONSOLE_BENCH_EXPLAIN'] === '1') {
    const today = Math.floor(Date.now() / 86_400_000);
    const plan = (await db.transaction(async (tx) => {
      await tx.execute(sql`set local jit = off`);
      await tx.execute(sql`set local work_mem = '64MB'`);
      return tx.execute(sql`explain (analyze, buffers) ${versionHistorySql(null, today - 29, today + 1)}`);
    })) as unknown as { rows: { 'QUERY PLAN': string }[] };
    console.log(plan.rows.map((r) => `plan: ${r['QUERY PLAN']}`).join('\n'));
  }
  const blobs = new FsBlobStore(scratch.blobDir);
  const app = createApp({ db, blobs, logger: createLogger({ level: 'warn' }) });
  const key = generateSecret('abk');
  await bootstrapAdminKey({ db }, key);
  const signIn = await app.request('/console/sign-in', {
    method: 'POST',
    body: new URLSearchParams({ key }),
  });
  const cookie = (signIn.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  const get = async (path: string) => {
    // Admin API paths (for comparison with the page that uses them) with the key, pages with the session.
    const headers = path.startsWith('/v1/') ? { authorization: `Bearer ${key}` } : { cookie };
    const res = await app.request(path, { headers });
    const body = await res.text();
    if (res.status !== 200) throw new Error(`${path}: HTTP ${res.status} ${body.slice(0, 200)}`);
    return body;
  };
  const firstPage = await get('/console/fleet');
  const after = /href="\/console\/fleet\?after=([0-9a-f-]+)"/.exec(firstPage)?.[1];
  const someDevice = /href="\/console\/devices\/([0-9a-f-]+)"/.exec(firstPage)?.[1];
  const [{ id: rolloutId } = { id: '' }] = (
    (await db.execute(sql`select id from rollouts limit 1`)) as unknown as { rows: { id: string }[] }
  ).rows;
  const pages = [
    '/console/fleet',
    `/console/fleet?after=${after}`,
    '/console/fleet?version=1.1.0&slot=B',
    '/console/fleet?state=failed',
    '/console/fleet?q=site:7',
    `/console/fleet?q=${someDevice?.slice(0, 6)}`,
    '/console/fleet/versions.json',
    `/console/devices/${someDevice}`,
    '/console/releases',
    '/console/audit',
    '/console/rollouts',
    `/console/rollouts/${rolloutId}`,
    `/console/rollouts/${rolloutId}/failure.json`,
    `/v1/admin/rollouts/${rolloutId}/status`,
    '/console/rollouts/new',
    '/console/tokens',
    '/console/keys',
  ];
  console.log(`page (${RUNS} runs after 3 warm-up)`.padEnd(48), 'p50 ms  p95 ms  max ms  bytes');
  for (const path of pages) {
    for (let i = 0; i < 3; i++) await get(path);
    const times: number[] = [];
    let bytes = 0;
    for (let i = 0; i < RUNS; i++) {
      const t = performance.now();
      bytes = (await get(path)).length;
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))]!.toFixed(1);
    console.log(
      path.slice(0, 47).padEnd(48),
      at(0.5).padStart(6),
      at(0.95).padStart(7),
      times.at(-1)!.toFixed(1).padStart(7),
      String(bytes).padStart(6),
    );
  }
  // The chart's query itself (the route caches it for a minute): computed afresh each time, from
  // fleet_version_days and by the recount from every device and commit it replaced.
  const clock = { now: () => new Date() };
  const kept = await versionHistory({ db, clock }, { days: 30 });
  if (JSON.stringify(kept) !== JSON.stringify(await versionHistoryRecount({ db, clock }, { days: 30 })))
    throw new Error('fleet_version_days differs from the recount');
  for (const [name, fn] of [
    ['version chart query, uncached (5 runs)', versionHistory],
    ['  the recount it replaced (5 runs)', versionHistoryRecount],
  ] as const) {
    const chart: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      await fn({ db, clock }, { days: 30 });
      chart.push(performance.now() - t);
    }
    chart.sort((a, b) => a - b);
    console.log(
      name.padEnd(48),
      chart[2]!.toFixed(1).padStart(6),
      chart[4]!.toFixed(1).padStart(7),
      chart[4]!.toFixed(1).padStart(7),
    );
  }
} finally {
  await database.close();
  await scratch.drop();
}
