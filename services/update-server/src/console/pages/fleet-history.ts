// The fleet's version distribution over time: a device runs the version of its latest `committed`
// report from that report on (until the next one, or until it is decommissioned); a device that
// never committed an update runs its current version since registration. The version a device ran
// before its first recorded commit is not kept anywhere, so those days count as "before first
// update". Each stretch adds +1 on its first day and -1 on its last; a running sum per version
// gives devices per version at the end of each day. The +1/-1 are kept per (product, day,
// version) in fleet_version_days by triggers as devices register, commit and leave
// (drizzle/0009_rollout_counters.sql), so the chart reads O(days × versions) rows; the recount
// below derives the same from every device and commit (the test and the bench compare them).
// They differ only for reports stamped after today, which the recount ignores and the kept
// history does not (reports carry the server's clock, so none are).
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
  const { firstDay, lastDay } = dayRange(deps, o.days);
  const product = o.product ?? null;
  const result = await deps.db.execute(sql`
    select greatest(day, ${firstDay}::int) as day, version, sum(delta)::int as delta
    from fleet_version_days
    where (${product}::text is null or product = ${product}::text) and day <= ${lastDay}::int
    group by 1, 2`);
  return historyOf(result, firstDay, o.days);
}

/** The same history recounted from every device and commit (one pass; what the chart ran before). */
export async function versionHistoryRecount(
  deps: Pick<AppDeps, 'db' | 'clock'>,
  o: { product?: string | undefined; days: number },
): Promise<VersionHistory> {
  const { firstDay, lastDay } = dayRange(deps, o.days);
  // No JIT (its compile time dwarfs the query, whose row estimates through the CTEs are far too
  // high) and enough memory to sort and hash in memory.
  const result = await deps.db.transaction(async (tx) => {
    await tx.execute(sql`set local jit = off`);
    await tx.execute(sql`set local work_mem = '64MB'`);
    return tx.execute(versionHistorySql(o.product ?? null, firstDay, lastDay + 1));
  });
  return historyOf(result, firstDay, o.days);
}

function dayRange(deps: Pick<AppDeps, 'clock'>, days: number) {
  const lastDay = Math.floor(deps.clock.now().getTime() / DAY_MS);
  return { firstDay: lastDay - (days - 1), lastDay };
}

function historyOf(result: unknown, firstDay: number, dayCount: number): VersionHistory {
  const rows = (result as { rows: { day: number; version: string; delta: number }[] }).rows;
  const days = Array.from({ length: dayCount }, (_, i) =>
    new Date((firstDay + i) * DAY_MS).toISOString().slice(0, 10),
  );
  const byVersion = new Map<string, number[]>();
  for (const r of rows) {
    let deltas = byVersion.get(r.version);
    if (deltas === undefined) {
      deltas = new Array<number>(days.length).fill(0);
      byVersion.set(r.version, deltas);
    }
    const i = Number(r.day) - firstDay;
    if (i >= 0 && i < days.length) deltas[i]! += Number(r.delta);
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

/**
 * The recount's query (exported for the bench's EXPLAIN): per (day number since the epoch, version) the
 * change in devices. Times are compared as epoch seconds and days as integers (cheap per row).
 */
export function versionHistorySql(product: string | null, firstDay: number, endDay: number) {
  const end = endDay * 86_400;
  return sql`
    with d as (
      select id, current_version, created_at, decommissioned_at from devices
      where (${product}::text is null or product = ${product}::text)
    ),
    c as (
      select e.device_id, e.version, extract(epoch from e.created_at) as at,
        extract(epoch from d.decommissioned_at) as gone,
        lead(extract(epoch from e.created_at)) over w as next_at,
        row_number() over w as n
      from device_events e join d on d.id = e.device_id
      where e.state = 'committed' and e.created_at < to_timestamp(${end})
      window w as (partition by e.device_id order by e.created_at, e.id)
    ),
    segs as (
      select version, at as since, coalesce(next_at, gone) as until from c
      union all
      select
        case when c.at is null then coalesce(d.current_version, 'unknown') else ${BEFORE_FIRST_UPDATE}::text end,
        extract(epoch from d.created_at),
        coalesce(c.at, extract(epoch from d.decommissioned_at))
      from d left join c on c.device_id = d.id and c.n = 1
    )
    select day, version, sum(delta)::int as delta from (
      select greatest(floor(since / 86400)::int, ${firstDay}::int) as day, version, 1 as delta
        from segs where since < ${end}
      union all
      select greatest(floor(until / 86400)::int, ${firstDay}::int), version, -1
        from segs where until < ${end}
    ) as x
    group by day, version
  `;
}
