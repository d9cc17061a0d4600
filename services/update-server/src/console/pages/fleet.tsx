// Fleet: devices by product, version, install state and slot, last seen; search and filters;
// keyset pagination on the device id (one index range scan per page, whatever the fleet size);
// the version distribution over time as a uPlot chart fed by /console/fleet/versions.json.
import { and, arrayContains, asc, count, eq, gt, gte, isNull, lte, or, type SQL } from 'drizzle-orm';
import type { Context } from 'hono';
import type { AppDeps } from '../../context.js';
import { devices, products, releases } from '../../db/schema.js';
import { ago, count as fmtCount, query } from '../format.js';
import { readable } from '../helpers.js';
import { renderPage } from '../layout.js';
import type { ConsoleEnv, ConsolePage } from '../types.js';
import { type VersionHistory, versionHistory } from './fleet-history.js';

export const FLEET_PAGE_SIZE = 50;
/** How long a computed version chart is served before it is computed again. */
export const CHART_CACHE_MS = 60_000;
const INSTALL_STATES = [
  'idle',
  'downloading',
  'installing',
  'installed',
  'rebooting',
  'committed',
  'failed',
  'rolled-back',
];

/** The uuid range a hex prefix of a device id ("3fa8", "3fa85f64-57") covers, or undefined. */
export function idPrefixRange(q: string): [string, string] | undefined {
  if (!/^[0-9a-f-]{4,36}$/.test(q)) return undefined;
  const hex = q.replaceAll('-', '');
  if (hex.length < 4 || hex.length > 32) return undefined;
  const uuid = (h: string) =>
    `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  return [uuid(hex.padEnd(32, '0')), uuid(hex.padEnd(32, 'f'))];
}

export interface FleetFilters {
  product?: string | undefined;
  version?: string | undefined;
  state?: string | undefined;
  slot?: string | undefined;
  q?: string | undefined;
  after?: string | undefined;
}

const clean = (v: string | undefined): string | undefined => {
  const t = v?.trim();
  return t === undefined || t === '' || t.length > 200 ? undefined : t;
};

export function fleetFilters(c: Context): FleetFilters {
  const after = clean(c.req.query('after'));
  return {
    product: clean(c.req.query('product')),
    version: clean(c.req.query('version')),
    state: clean(c.req.query('state')),
    slot: clean(c.req.query('slot')),
    q: clean(c.req.query('q'))?.toLowerCase(),
    after: after !== undefined && /^[0-9a-f-]{36}$/.test(after) ? after : undefined,
  };
}

function fleetWhere(f: FleetFilters): SQL[] {
  const where: SQL[] = [isNull(devices.decommissionedAt)];
  if (f.product !== undefined) where.push(eq(devices.product, f.product));
  if (f.version !== undefined) where.push(eq(devices.currentVersion, f.version));
  if (f.state !== undefined) where.push(eq(devices.installState, f.state));
  if (f.slot !== undefined) where.push(eq(devices.bootedSlot, f.slot));
  if (f.q !== undefined) {
    const range = idPrefixRange(f.q);
    // A device id prefix: an index range on the primary key. Anything else: hardware or a tag.
    where.push(
      range === undefined
        ? or(eq(devices.hardware, f.q), arrayContains(devices.tags, [f.q]))!
        : and(gte(devices.id, range[0]), lte(devices.id, range[1]))!,
    );
  }
  return where;
}

/** One page of the fleet table (+ the matching total), as the page renders it. */
export async function fleetPage(deps: Pick<AppDeps, 'db'>, f: FleetFilters) {
  const where = fleetWhere(f);
  const [rows, [total], productRows, versionRows] = await Promise.all([
    deps.db
      .select({
        id: devices.id,
        product: devices.product,
        hardware: devices.hardware,
        tags: devices.tags,
        currentVersion: devices.currentVersion,
        bootedSlot: devices.bootedSlot,
        installState: devices.installState,
        lastSeenAt: devices.lastSeenAt,
      })
      .from(devices)
      .where(and(...where, ...(f.after === undefined ? [] : [gt(devices.id, f.after)])))
      .orderBy(asc(devices.id))
      .limit(FLEET_PAGE_SIZE + 1),
    deps.db
      .select({ n: count() })
      .from(devices)
      .where(and(...where)),
    deps.db.select({ id: products.id }).from(products).orderBy(asc(products.id)),
    deps.db
      .selectDistinct({ version: releases.version })
      .from(releases)
      .where(f.product === undefined ? undefined : eq(releases.product, f.product))
      .orderBy(asc(releases.version)),
  ]);
  return {
    rows: rows.slice(0, FLEET_PAGE_SIZE),
    next: rows.length > FLEET_PAGE_SIZE ? rows[FLEET_PAGE_SIZE - 1]!.id : undefined,
    total: total?.n ?? 0,
    products: productRows.map((p) => p.id),
    versions: versionRows.map((v) => v.version),
  };
}

function Select(props: {
  name: string;
  label: string;
  value: string | undefined;
  options: readonly string[];
  any: string;
}) {
  return (
    <div class="field">
      <label for={`f-${props.name}`}>{props.label}</label>
      <select id={`f-${props.name}`} name={props.name}>
        <option value="">{props.any}</option>
        {props.options.map((o) => (
          <option value={o} selected={o === props.value}>
            {o}
          </option>
        ))}
      </select>
    </div>
  );
}

async function fleetView(c: Context<ConsoleEnv>, deps: AppDeps) {
  const f = fleetFilters(c);
  const data = await fleetPage(deps, f);
  const now = deps.clock.now();
  const filters = { product: f.product, version: f.version, state: f.state, slot: f.slot, q: f.q };
  const filtered = Object.values(filters).some((v) => v !== undefined);
  return renderPage(
    c,
    { title: 'Fleet', section: '/console/fleet', scripts: ['uplot.js'], styles: ['uplot.css'] },
    <>
      <section aria-labelledby="versions-h">
        <h2 id="versions-h">Versions over time</h2>
        <figure
          class="chart"
          id="version-chart"
          data-src={`/console/fleet/versions.json${query({ product: f.product })}`}
        >
          <figcaption>
            Devices per running version at the end of each day (last 30 days
            {f.product === undefined ? ', all products' : `, ${f.product}`}), from the devices' commit
            reports.
          </figcaption>
          <noscript>The chart needs JavaScript; the table below does not.</noscript>
        </figure>
      </section>
      <section aria-labelledby="devices-h">
        <h2 id="devices-h">Devices</h2>
        <form class="filters" method="get" action="/console/fleet" aria-label="Filter devices">
          <div class="field">
            <label for="f-q">Search</label>
            <input
              id="f-q"
              name="q"
              type="search"
              value={f.q ?? ''}
              placeholder="device id, hardware or tag"
            />
          </div>
          <Select
            name="product"
            label="Product"
            value={f.product}
            options={data.products}
            any="all products"
          />
          <Select
            name="version"
            label="Version"
            value={f.version}
            options={data.versions}
            any="any version"
          />
          <Select name="state" label="State" value={f.state} options={INSTALL_STATES} any="any state" />
          <Select name="slot" label="Slot" value={f.slot} options={['A', 'B']} any="any slot" />
          <button type="submit">Filter</button>
          {filtered ? (
            <a class="button secondary" href="/console/fleet">
              Clear
            </a>
          ) : null}
        </form>
        <p class="summary" aria-live="polite">
          <strong data-total>{fmtCount(data.total)}</strong> {data.total === 1 ? 'device' : 'devices'}
          {filtered ? ' match' : ''}
          {f.after === undefined ? '' : ' (a later page)'}
        </p>
        <div class="table-wrap">
          <table class="devices">
            <caption class="visually-hidden">Devices, ordered by id</caption>
            <thead>
              <tr>
                <th scope="col">Device</th>
                <th scope="col">Product</th>
                <th scope="col">Hardware</th>
                <th scope="col">Version</th>
                <th scope="col">State</th>
                <th scope="col">Slot</th>
                <th scope="col">Last seen</th>
                <th scope="col">Tags</th>
              </tr>
            </thead>
            <tbody>
              {data.rows.map((d) => (
                <tr>
                  <td>
                    <a class="mono" href={`/console/devices/${d.id}`}>
                      {d.id}
                    </a>
                  </td>
                  <td>{d.product}</td>
                  <td>{d.hardware}</td>
                  <td>{d.currentVersion ?? '—'}</td>
                  <td>
                    <span class={`state state-${d.installState ?? 'none'}`}>{d.installState ?? '—'}</span>
                  </td>
                  <td>{d.bootedSlot ?? '—'}</td>
                  <td>
                    <time datetime={d.lastSeenAt?.toISOString()}>{ago(d.lastSeenAt, now)}</time>
                  </td>
                  <td>{d.tags.join(', ')}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <nav class="pager" aria-label="Pages">
          {f.after === undefined ? null : <a href={`/console/fleet${query(filters)}`}>First page</a>}
          {data.next === undefined ? null : (
            <a rel="next" href={`/console/fleet${query({ ...filters, after: data.next })}`}>
              Next page
            </a>
          )}
        </nav>
      </section>
    </>,
  );
}

export const fleetPages: ConsolePage = {
  nav: {
    href: '/console/fleet',
    label: 'Fleet',
    order: 10,
    visible: readable,
  },
  register(app, deps) {
    app.get('/console/fleet', (c) => fleetView(c, deps));
    // O(days × versions) rows of fleet_version_days (fleet-history.ts), still answered from a
    // per-server cache for CHART_CACHE_MS, concurrent requests sharing one query.
    const charts = new Map<string, { at: number; value: Promise<VersionHistory> }>();
    app.get('/console/fleet/versions.json', async (c) => {
      const product = fleetFilters(c).product;
      const now = deps.clock.now().getTime();
      const key = product ?? '';
      let hit = charts.get(key);
      if (hit === undefined || now - hit.at >= CHART_CACHE_MS || now < hit.at) {
        hit = { at: now, value: versionHistory(deps, { product, days: 30 }) };
        hit.value.catch(() => charts.delete(key));
        if (charts.size >= 100) charts.clear();
        charts.set(key, hit);
      }
      return c.json(await hit.value);
    });
  },
};
