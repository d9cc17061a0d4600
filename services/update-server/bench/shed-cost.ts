// What a refusal costs the server under overload (issue 16): with its in-flight limit held full,
// every API request is answered 503 + Retry-After. This measures the server process's CPU time
// per refused request (from /proc, so the load generator and the rest of the machine do not
// count) and the refusals per second, shedding in node's request listener before parsing (what
// abota-server does) against shedding in the app's middleware (after the fetch Request is built
// and Hono has routed it). CPU per refusal is what decides how much of a saturated event loop is
// left for the admitted requests.
//   npx tsx --conditions=@abota/source bench/shed-cost.ts   (in services/update-server)
//   env: BENCH_REQUESTS (40000), BENCH_CONNECTIONS (32)
import { fork } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { loadavg } from 'node:os';
import { makeTempDir } from '@abota/testkit';
import autocannon from 'autocannon';
import { createLogger, loadConfig, startServer } from '../src/index.js';

const REQUESTS = Number(process.env['BENCH_REQUESTS'] ?? 40_000);
const CONNECTIONS = Number(process.env['BENCH_CONNECTIONS'] ?? 32);

if (process.argv[2] === 'serve') {
  // The child: a server with limit 1, held full by one upload whose body never ends.
  const dir = await makeTempDir('abota-shed-cost-');
  const running = await startServer({
    config: loadConfig({ ABOTA_DATA_DIR: dir, ABOTA_PORT: '0', ABOTA_MAX_IN_FLIGHT: '1' }),
    logger: createLogger({ level: 'silent' }),
    preParseShedding: process.argv[3] === 'pre-parse',
  });
  const url = new URL(running.url);
  const hold = request({
    host: url.hostname,
    port: url.port,
    method: 'PUT',
    path: `/v1/admin/blobs/sha256/${'a'.repeat(64)}`,
    headers: {
      authorization: `Bearer ${running.generatedAdminKey}`,
      'content-type': 'application/octet-stream',
    },
  });
  hold.on('error', () => {});
  hold.write('held');
  process.send?.({ url: running.url });
  process.on('message', async () => {
    hold.destroy();
    await running.close();
    await rm(dir, { recursive: true, force: true });
    process.exit(0);
  });
} else {
  const cpuMs = async (pid: number) => {
    const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime, USER_HZ 100
  };
  const rows: string[] = [];
  for (const mode of ['in-app', 'pre-parse', 'in-app', 'pre-parse']) {
    const child = fork(new URL(import.meta.url).pathname, ['serve', mode], {
      execArgv: process.execArgv,
      stdio: 'inherit',
    });
    const { url } = await new Promise<{ url: string }>((r) => child.once('message', r as never));
    await new Promise((r) => setTimeout(r, 500)); // the upload is in
    const statuses = new Map<number, number>();
    const before = await cpuMs(child.pid!);
    const started = performance.now();
    const result = await new Promise<autocannon.Result>((resolve, reject) => {
      const instance = autocannon(
        {
          url: `${url}/v1/device/poll`,
          connections: CONNECTIONS,
          amount: REQUESTS,
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: 'Bearer x.y.z' },
          body: JSON.stringify({ version: '1.0.0', bootedSlot: 'A' }),
        },
        (e: unknown, r) => (e ? reject(e) : resolve(r)),
      );
      instance.on('response', (_c, status: number) => statuses.set(status, (statuses.get(status) ?? 0) + 1));
    });
    const seconds = (performance.now() - started) / 1000;
    const cpu = (await cpuMs(child.pid!)) - before;
    child.send('stop');
    await new Promise((r) => child.once('exit', r));
    const shed = statuses.get(503) ?? 0;
    rows.push(
      `${mode.padEnd(9)} ${shed} of ${result.requests.total} answered 503; server CPU ${((cpu * 1000) / Math.max(1, shed)).toFixed(1)} µs per refusal; ${(shed / seconds).toFixed(0)} refusals/s; p99 ${result.latency.p99} ms; other statuses ${JSON.stringify(Object.fromEntries([...statuses].filter(([s]) => s !== 503)))}; load ${loadavg()[0]!.toFixed(1)}`,
    );
    console.log(rows.at(-1));
  }
}
