// Load shedding under overload (issue 16): find the poll capacity of one server process on
// PostgreSQL (closed loop, autocannon, as bench/run.ts), then offer 3x that rate OPEN loop (requests
// sent on a fixed schedule whether or not earlier ones were answered) for BENCH_SECONDS and report
// the admitted polls (count, p50/p99 latency), the refused ones (503 + Retry-After) and whether
// the admitted p99 stays within 20 ms. If not at ABOTA_MAX_IN_FLIGHT (default 256), lower limits
// are tried to find one that keeps it. The machine's load average is printed with the figures:
// the load generator shares the cores with the server and PostgreSQL (and with any other job).
//   npx tsx --conditions=@abota/source bench/shedding.ts   (in services/update-server)
//   env: BENCH_DEVICES (10000), BENCH_SECONDS (20), BENCH_FACTOR (3), BENCH_LIMITS (256,64,16,8),
//   BENCH_CAPACITY_CONNECTIONS (128), BENCH_SERVER_CPUS (the server process on these cores only, taskset),
//   BENCH_SERVER_NICE (its priority against PostgreSQL on shared cores),
//   ABOTA_TEST_DATABASE_URL
import type { ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { loadavg } from 'node:os';
import autocannon from 'autocannon';
import { openDatabase } from '../src/index.js';
import {
  ADMIN_URL,
  deviceJwt,
  insertDevices,
  seedCanaryRelease,
  startBenchServer,
  benchScratch,
  stopBenchServer,
} from './common.js';

const DEVICES = Number(process.env['BENCH_DEVICES'] ?? 10_000);
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 20);
const FACTOR = Number(process.env['BENCH_FACTOR'] ?? 3);
const CAPACITY_CONNECTIONS = Number(process.env['BENCH_CAPACITY_CONNECTIONS'] ?? 128);
const LIMITS = (process.env['BENCH_LIMITS'] ?? '256,64,16,8').split(',').map(Number);
const BODY = JSON.stringify({ version: '1.0.0', bootedSlot: 'A' });
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

type Keys = Awaited<ReturnType<typeof insertDevices>>;
function tokens(keys: Keys, n: number): string[] {
  const now = Math.floor(Date.now() / 1000);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const d = keys[i % keys.length]!;
    out.push(deviceJwt(d.id, d.key, now));
  }
  return out;
}

const quantile = (sorted: number[], q: number) =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

/**
 * Closed loop over CAPACITY_CONNECTIONS connections: the polls/s one server process sustains (with
 * 16, as bench/run.ts, the run is latency-bound and reads ~2.5x low against what open loop gets in).
 */
async function capacity(base: string, keys: Keys, amount: number): Promise<number> {
  const pool = tokens(keys, amount + 64);
  let next = 0;
  const started = performance.now();
  let last = started;
  const r = await new Promise<autocannon.Result>((ok, fail) => {
    const i = autocannon(
      {
        url: `${base}/v1/device/poll`,
        connections: CAPACITY_CONNECTIONS,
        amount,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: BODY,
        requests: [
          {
            method: 'POST',
            path: '/v1/device/poll',
            setupRequest: (req) => ({
              ...req,
              headers: { ...req.headers, authorization: `Bearer ${pool[next++ % pool.length]}` },
            }),
          },
        ],
      },
      (e: unknown, res) => (e ? fail(e) : ok(res)),
    );
    i.on('response', () => {
      last = performance.now();
    });
  });
  // Only the polls answered 200 count: with a low ABOTA_MAX_IN_FLIGHT the 503s are fast and many.
  const rps = r['2xx'] / ((last - started) / 1000);
  console.log(
    `capacity (closed loop, ${CAPACITY_CONNECTIONS} connections): ${rps.toFixed(0)} polls/s, p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, ${r.non2xx + r.errors} not 2xx — load average ${load()}`,
  );
  return rps;
}

interface Offered {
  sent: number;
  ok: number[];
  /** Admitted polls' latency from the moment the request was handed to the socket (no generator lag). */
  okFromSend: number[];
  /** How late the generator sent (ms behind the schedule), p99. */
  lagMs: number[];
  refused: number;
  refusedWithRetryAfter: number;
  refusedMs: number[];
  other: Map<string, number>;
}

/** Open loop: `rate` requests/s on a fixed schedule for `seconds`; latency from the scheduled time. */
async function offer(base: string, pool: string[], rate: number, seconds: number): Promise<Offered> {
  const url = new URL(`${base}/v1/device/poll`);
  const agent = new Agent({ keepAlive: true, maxSockets: 2048 });
  const o: Offered = {
    sent: 0,
    ok: [],
    okFromSend: [],
    lagMs: [],
    refused: 0,
    refusedWithRetryAfter: 0,
    refusedMs: [],
    other: new Map(),
  };
  const total = Math.round(rate * seconds);
  const pending = new Set<Promise<void>>();
  const started = performance.now();
  const send = (scheduled: number, token: string) => {
    const sentAt = performance.now();
    o.lagMs.push(sentAt - scheduled);
    const p = new Promise<void>((done) => {
      const req = request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            const ms = performance.now() - scheduled;
            if (res.statusCode === 200) {
              o.ok.push(ms);
              o.okFromSend.push(performance.now() - sentAt);
            } else if (res.statusCode === 503) {
              o.refused++;
              o.refusedMs.push(ms);
              if (res.headers['retry-after'] !== undefined) o.refusedWithRetryAfter++;
            } else o.other.set(String(res.statusCode), (o.other.get(String(res.statusCode)) ?? 0) + 1);
            done();
          });
        },
      );
      req.on('error', (e) => {
        o.other.set(e.message, (o.other.get(e.message) ?? 0) + 1);
        done();
      });
      req.end(BODY);
    });
    pending.add(p);
    void p.then(() => pending.delete(p));
  };
  while (o.sent < total) {
    const now = performance.now();
    const due = Math.min(total, Math.floor(((now - started) / 1000) * rate));
    while (o.sent < due) {
      send(started + (o.sent / rate) * 1000, pool[o.sent]!);
      o.sent++;
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  await Promise.all(pending);
  agent.destroy();
  return o;
}

async function main(): Promise<void> {
  const { dbUrl, blobDir, drop } = await benchScratch();
  let child: ChildProcess | undefined;
  try {
    const database = await openDatabase({ kind: 'postgres', url: dbUrl, poolSize: 4 });
    await seedCanaryRelease(database.db);
    const keys = await insertDevices(database.db, DEVICES, (j) => j % 100 === 0);
    await database.db.execute('ANALYZE');
    await database.close();
    console.log(
      `${DEVICES} devices on PostgreSQL (${ADMIN_URL.replace(/\/\/[^@]*@/, '//')}), one server process`,
    );

    let cap = 0;
    for (const limit of LIMITS) {
      process.env['ABOTA_MAX_IN_FLIGHT'] = String(limit);
      const launched = await startBenchServer(dbUrl, blobDir);
      child = launched.child;
      await capacity(launched.base, keys, 2000); // warm-up (JIT, pools, key cache)
      if (cap === 0) cap = await capacity(launched.base, keys, 10_000);
      const rate = FACTOR * cap;
      const pool = tokens(keys, Math.round(rate * SECONDS));
      const before = load();
      const o = await offer(launched.base, pool, rate, SECONDS);
      const ok = o.ok.sort((a, b) => a - b);
      const p99 = quantile(ok, 0.99);
      const fromSend = o.okFromSend.sort((a, b) => a - b);
      const lag = o.lagMs.sort((a, b) => a - b);
      console.log(
        `ABOTA_MAX_IN_FLIGHT=${limit}: offered ${rate.toFixed(0)}/s (${FACTOR}x) open loop for ${SECONDS} s = ${o.sent}; admitted ${ok.length} (${(ok.length / SECONDS).toFixed(0)}/s) p50 ${quantile(ok, 0.5).toFixed(1)} ms p99 ${p99.toFixed(1)} ms; from the send: p50 ${quantile(fromSend, 0.5).toFixed(1)} ms p99 ${quantile(fromSend, 0.99).toFixed(1)} ms; generator behind schedule p50 ${quantile(lag, 0.5).toFixed(1)} ms p99 ${quantile(lag, 0.99).toFixed(1)} ms; refused 503 ${o.refused} (${o.refusedWithRetryAfter} with Retry-After, p99 ${quantile(
          o.refusedMs.sort((a, b) => a - b),
          0.99,
        ).toFixed(
          1,
        )} ms); other ${[...o.other].map(([k, v]) => `${k}: ${v}`).join(', ') || 0}; p99 <= 20 ms: ${p99 <= 20 ? 'yes' : 'NO'} — load average ${before} before, ${load()} after`,
      );
      await stopBenchServer(child);
      if (p99 <= 20) break;
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
