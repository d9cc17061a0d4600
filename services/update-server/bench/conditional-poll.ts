// Conditional polls (If-None-Match → 304) against full answers, on PostgreSQL: server CPU per
// poll for a 304 and a 200 no-update (devices outside the rollout), and a 304 and a 200 update
// (canary devices, offered the release), each case over the same devices, rounds alternated so
// load from other jobs hits every case alike; medians reported.
//   npx tsx --conditions=@abota/source bench/conditional-poll.ts
//   env: BENCH_DEVICES (4000: half canary), BENCH_REQUESTS (10000 per run), BENCH_CONNECTIONS (16),
//   BENCH_ROUNDS (3), ABOTA_TEST_DATABASE_URL
import type { ChildProcess } from 'node:child_process';
import autocannon from 'autocannon';
import { openDatabase } from '../src/index.js';
import {
  cpuMs,
  deviceJwt,
  insertDevices,
  seedCanaryRelease,
  startBenchServer,
  benchScratch,
  stopBenchServer,
} from './common.js';

const DEVICES = Number(process.env['BENCH_DEVICES'] ?? 4000);
const REQUESTS = Number(process.env['BENCH_REQUESTS'] ?? 10_000);
const CONNECTIONS = Number(process.env['BENCH_CONNECTIONS'] ?? 16);
const ROUNDS = Math.max(1, Number(process.env['BENCH_ROUNDS'] ?? 3));
const BODY = JSON.stringify({ version: '1.0.0', bootedSlot: 'A', trustRootVersion: 1 });

type Device = Awaited<ReturnType<typeof insertDevices>>[number];
interface Run {
  rps: number;
  serverUs: number;
  eventLoopUs: number;
  statuses: Map<number, number>;
}

async function main(): Promise<void> {
  const { dbUrl, blobDir, drop } = await benchScratch();
  let child: ChildProcess | undefined;
  try {
    const database = await openDatabase({ kind: 'postgres', url: dbUrl, poolSize: 4 });
    await seedCanaryRelease(database.db);
    const devices = await insertDevices(database.db, DEVICES, (j) => j % 2 === 0);
    await database.db.execute('ANALYZE');
    await database.close();
    const launched = await startBenchServer(dbUrl, blobDir);
    child = launched.child;
    const { base } = launched;
    const pid = child.pid ?? 0;
    const canary = devices.filter((_, j) => j % 2 === 0);
    const others = devices.filter((_, j) => j % 2 === 1);

    const pool = (group: Device[]) => {
      const now = Math.floor(Date.now() / 1000);
      return Array.from({ length: REQUESTS + CONNECTIONS * 2 }, (_, i) => {
        const d = group[i % group.length] as Device;
        return deviceJwt(d.id, d.key, now);
      });
    };
    const firstAnswer = async (d: Device) => {
      const res = await fetch(`${base}/v1/device/poll`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${deviceJwt(d.id, d.key, Math.floor(Date.now() / 1000))}`,
        },
        body: BODY,
      });
      const { status } = (await res.json()) as { status: string };
      return { status, etag: res.headers.get('etag') ?? '' };
    };
    const noUpdate = await firstAnswer(others[0] as Device);
    const update = await firstAnswer(canary[0] as Device);
    if (noUpdate.status !== 'no-update' || update.status !== 'update' || !noUpdate.etag || !update.etag)
      throw new Error(`unexpected first answers ${JSON.stringify({ noUpdate, update })}`);
    console.log(`ETags: no-update ${noUpdate.etag}, update ${update.etag}`);

    const run = async (tokens: string[], ifNoneMatch: string | undefined): Promise<Run> => {
      let next = 0;
      const statuses = new Map<number, number>();
      const [server0, main0] = [await cpuMs([pid]), await cpuMs([pid], (p) => `/proc/${p}/task/${p}/stat`)];
      const started = performance.now();
      let last = started;
      const result = await new Promise<autocannon.Result>((resolve, reject) => {
        const instance = autocannon(
          {
            url: `${base}/v1/device/poll`,
            connections: CONNECTIONS,
            amount: REQUESTS,
            requests: [
              {
                method: 'POST',
                path: '/v1/device/poll',
                body: BODY,
                setupRequest: (req) => ({
                  ...req,
                  headers: {
                    ...req.headers,
                    'content-type': 'application/json',
                    authorization: `Bearer ${tokens[next++ % tokens.length]}`,
                    ...(ifNoneMatch !== undefined ? { 'if-none-match': ifNoneMatch } : {}),
                  },
                }),
              },
            ],
          },
          (error: unknown, r) => (error ? reject(error) : resolve(r)),
        );
        instance.on('response', (_client, status: number) => {
          last = performance.now();
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
        });
      });
      const [server1, main1] = [await cpuMs([pid]), await cpuMs([pid], (p) => `/proc/${p}/task/${p}/stat`)];
      const n = result.requests.total;
      return {
        rps: n / ((last - started) / 1000),
        serverUs: ((server1 - server0) * 1000) / n,
        eventLoopUs: ((main1 - main0) * 1000) / n,
        statuses,
      };
    };

    // Warm-up (JIT, key cache, connection pools).
    await run(pool(others), undefined);
    await run(pool(canary), undefined);
    const cases = [
      { name: '304 (no-update)', group: others, inm: noUpdate.etag, expect: 304 },
      { name: '200 no-update', group: others, inm: undefined, expect: 200 },
      { name: '304 (update)', group: canary, inm: update.etag, expect: 304 },
      { name: '200 update', group: canary, inm: undefined, expect: 200 },
    ];
    const results = new Map<string, Run[]>(cases.map((c) => [c.name, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      for (const c of cases) {
        const r = await run(pool(c.group), c.inm);
        if (r.statuses.get(c.expect) !== REQUESTS)
          throw new Error(`${c.name}: statuses ${JSON.stringify([...r.statuses])}, expected all ${c.expect}`);
        results.get(c.name)?.push(r);
        console.log(
          `#${round} ${c.name.padEnd(16)} ${r.rps.toFixed(0).padStart(5)} polls/s  server CPU ${r.serverUs.toFixed(0)} µs/poll (event loop ${r.eventLoopUs.toFixed(0)})`,
        );
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
    console.log(`\nmedians of ${ROUNDS} rounds, ${REQUESTS} polls each, ${CONNECTIONS} connections:`);
    for (const c of cases) {
      const rs = results.get(c.name) ?? [];
      console.log(
        `  ${c.name.padEnd(16)} ${median(rs.map((r) => r.rps))
          .toFixed(0)
          .padStart(
            5,
          )} polls/s  server CPU ${median(rs.map((r) => r.serverUs)).toFixed(0)} µs/poll (event loop ${median(rs.map((r) => r.eventLoopUs)).toFixed(0)})`,
      );
    }
  } finally {
    await stopBenchServer(child);
    await drop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
