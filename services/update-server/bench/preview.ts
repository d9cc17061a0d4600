// The rollout dry run at fleet scale: previewRollout (src/rollout/preview.ts) on the real
// PostgreSQL for 10,000 and 100,000 devices of one product (mixed hardware, versions, tags,
// time zones, written with generate_series), a 4-stage rollout with a group selector, a version
// constraint and a device-local window. Prints the median wall time of 5 runs per size.
//   npx tsx --conditions=@abota/source bench/preview.ts [sizes, default 10000,100000]
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { openDatabase, schema } from '../src/index.js';
import { previewRollout } from '../src/rollout/preview.js';
import { benchScratch } from './common.js';

const sizes = (process.argv[2] ?? '10000,100000').split(',').map(Number);
const scratch = await benchScratch();
const database = await openDatabase({ kind: 'postgres', url: scratch.dbUrl, poolSize: 2 });
try {
  const db = database.db;
  await db.insert(schema.products).values({ id: 'bench', trustRoot: {}, trustRootVersion: 1 });
  let have = 0;
  for (const size of sizes) {
    await db.execute(sql`
      insert into devices (product, hardware, public_key_jwk, attributes, tags, current_version)
      select 'bench', (array['hyperv-x64','kvm-x64','arm64'])[1 + i % 3], '{}'::jsonb,
             jsonb_build_object('timezone', (array['UTC','Europe/Berlin','Asia/Tokyo','America/New_York'])[1 + i % 4]),
             array['group:' || (array['eu','us','apac'])[1 + i % 3]] || case when i % 2 = 0 then array['ring:early'] else array[]::text[] end,
             (array['1.0.0','1.1.0','1.2.0', null])[1 + i % 4]
      from generate_series(${have}::int, ${size - 1}::int) as i`);
    have = size;
    await db.execute(sql`analyze devices`);
    const plan = {
      id: randomUUID(),
      release: {
        id: randomUUID(),
        product: 'bench',
        version: '1.3.0',
        compatible: ['hyperv-x64', 'kvm-x64'],
      } as Parameters<typeof previewRollout>[1]['release'],
      selector: { groups: ['eu', 'us'], currentVersion: '>=1.0.0' },
      stages: [{ percent: 1, minDevices: 20 }, { percent: 10 }, { percent: 50 }, { percent: 100 }],
      allowDowngrade: false,
      maintenanceWindow: { timezone: 'device-local' as const, start: '01:00', end: '05:00' },
      autoRollback: null,
    };
    const times: number[] = [];
    let last: Awaited<ReturnType<typeof previewRollout>> | undefined;
    for (let run = 0; run < 5; run++) {
      const t0 = performance.now();
      last = await previewRollout(db, { ...plan, id: randomUUID() }, new Date());
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    console.log(
      `${size} devices: preview median ${times[2]?.toFixed(1)} ms (min ${times[0]?.toFixed(1)}, max ${times[4]?.toFixed(1)}); eligible ${last?.devices.eligible}, stages ${last?.stages.map((s) => s.targeted).join('/')}`,
    );
  }
} finally {
  await database.close();
  await scratch.drop();
}
