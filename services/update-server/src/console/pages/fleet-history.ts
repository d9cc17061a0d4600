// The fleet's version distribution over time, computed in SQL from what the server already keeps:
// a device runs the version of its latest `committed` report from that report on (until the next
// one, or until it is decommissioned); a device that never committed an update runs its
// current version since registration. The version a device ran before its first recorded commit
// is not kept anywhere, so those days count as "before first update". Each stretch adds +1 on its
// first day and -1 on its last; a running sum per version gives devices per version at the end of
// each day. One pass over devices and committed events, whatever the number of days.
import { sql } from 'drizzle-orm';
import type { AppDeps } from '../../context.js';

export const BEFORE_FIRST_UPDATE = 'before first update';

export interface VersionHistory {
  /** Days (UTC, YYYY-MM-DD), oldest first. */
  days: string[];
  /** Devices per version per day (same order as days), versions sorted by their latest count. */
  series: { version: string; devices: number[] }[];
}

const DAY_MS = 86_400_000;

export async function versionHistory(
  deps: Pick<AppDeps, 'db' | 'clock'>,
  o: { product?: string | undefined; days: number },
): Promise<VersionHistory> {
  const now = deps.clock.now();
  const lastDay = Math.floor(now.getTime() / DAY_MS) * DAY_MS;
  const first = new Date(lastDay - (o.days - 1) * DAY_MS);
  const end = new Date(lastDay + DAY_MS);
  const product = o.product ?? null;
  const result = await deps.db.execute(sql`
    with d as (
      select id, current_version, created_at as registered_at, decommissioned_at from devices
      where (${product}::text is null or product = ${product}::text)
    ),
    c as (
      select e.device_id, e.version, e.created_at as at,
        lead(e.created_at) over (partition by e.device_id order by e.created_at, e.id) as next_at,
        row_number() over (partition by e.device_id order by e.created_at, e.id) as n
      from device_events e join d on d.id = e.device_id
      where e.state = 'committed' and e.created_at < ${end.toISOString()}::timestamptz
    ),
    segs as (
      select c.version, c.at as since, coalesce(c.next_at, d.decommissioned_at) as until
        from c join d on d.id = c.device_id
      union all
      select ${BEFORE_FIRST_UPDATE}::text, d.registered_at, c.at
        from c join d on d.id = c.device_id where c.n = 1
      union all
      select coalesce(d.current_version, 'unknown'), d.registered_at, d.decommissioned_at
        from d where not exists (select 1 from c where c.device_id = d.id)
    ),
    deltas as (
      select greatest(date_trunc('day', since, 'UTC'), ${first.toISOString()}::timestamptz) as day, version, 1 as delta
        from segs where since < ${end.toISOString()}::timestamptz
      union all
      select greatest(date_trunc('day', until, 'UTC'), ${first.toISOString()}::timestamptz), version, -1
        from segs where until is not null and until < ${end.toISOString()}::timestamptz
    )
    select to_char(day at time zone 'UTC', 'YYYY-MM-DD') as day, version, sum(delta)::int as delta
    from deltas group by 1, 2 order by 1
  `);
  const rows = (result as unknown as { rows: { day: string; version: string; delta: number }[] }).rows;
  const days = Array.from({ length: o.days }, (_, i) =>
    new Date(first.getTime() + i * DAY_MS).toISOString().slice(0, 10),
  );
  const index = new Map(days.map((d, i) => [d, i]));
  const byVersion = new Map<string, number[]>();
  for (const r of rows) {
    let deltas = byVersion.get(r.version);
    if (deltas === undefined) {
      deltas = new Array<number>(days.length).fill(0);
      byVersion.set(r.version, deltas);
    }
    const i = index.get(r.day);
    if (i !== undefined) deltas[i]! += Number(r.delta);
  }
  const series = [...byVersion.entries()]
    .map(([version, deltas]) => {
      let running = 0;
      return { version, devices: deltas.map((x) => (running += x)) };
    })
    .filter((s) => s.devices.some((n) => n > 0))
    .sort((a, b) => (b.devices.at(-1) ?? 0) - (a.devices.at(-1) ?? 0) || a.version.localeCompare(b.version));
  return { days, series };
}
