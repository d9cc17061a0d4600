// A device: what it runs, its history (every report: downloads, installs, commits, failures,
// rollbacks — the device_events the admin devices route reads), the rollouts it is in, and the
// operator's actions on it (tags, decommission), which go through the admin API.
import { desc, eq } from 'drizzle-orm';
import type { Context } from 'hono';
import type { AppDeps } from '../../context.js';
import { deviceEvents, devices, releases, rolloutDevices, rollouts } from '../../db/schema.js';
import { ago, when } from '../format.js';
import { actionFailed, may, ROLE_GROUPS } from '../helpers.js';
import { CsrfField, renderPage } from '../layout.js';
import type { ConsoleDeps, ConsoleEnv, ConsolePage } from '../types.js';

const HISTORY = 100;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

async function deviceView(c: Context<ConsoleEnv>, deps: AppDeps) {
  const id = c.req.param('id') ?? '';
  const [device] = UUID.test(id)
    ? await deps.db.select().from(devices).where(eq(devices.id, id)).limit(1)
    : [];
  if (device === undefined) {
    return renderPage(
      c,
      { title: 'Device not found', section: '/console/fleet', status: 404 },
      <p>
        No device <code>{id}</code>. <a href="/console/fleet">Back to the fleet</a>.
      </p>,
    );
  }
  const [events, memberships] = await Promise.all([
    deps.db
      .select()
      .from(deviceEvents)
      .where(eq(deviceEvents.deviceId, id))
      .orderBy(desc(deviceEvents.id))
      .limit(HISTORY),
    deps.db
      .select({
        rolloutId: rollouts.id,
        name: rollouts.name,
        kind: rollouts.kind,
        rolloutState: rollouts.state,
        version: releases.version,
        state: rolloutDevices.state,
        updatedAt: rolloutDevices.updatedAt,
      })
      .from(rolloutDevices)
      .innerJoin(rollouts, eq(rollouts.id, rolloutDevices.rolloutId))
      .innerJoin(releases, eq(releases.id, rollouts.releaseId))
      .where(eq(rolloutDevices.deviceId, id))
      .orderBy(desc(rolloutDevices.updatedAt)),
  ]);
  const now = deps.clock.now();
  const operate = may(c, ROLE_GROUPS.operate) && device.decommissionedAt === null;
  return renderPage(
    c,
    { title: `Device ${id.slice(0, 8)}`, section: '/console/fleet' },
    <>
      <dl class="facts">
        <dt>Id</dt>
        <dd class="mono">{device.id}</dd>
        <dt>Product</dt>
        <dd>{device.product}</dd>
        <dt>Hardware</dt>
        <dd>{device.hardware}</dd>
        <dt>Version</dt>
        <dd>{device.currentVersion ?? '—'}</dd>
        <dt>Booted slot</dt>
        <dd>{device.bootedSlot ?? '—'}</dd>
        <dt>Install state</dt>
        <dd>{device.installState ?? '—'}</dd>
        <dt>Last seen</dt>
        <dd>
          {ago(device.lastSeenAt, now)} ({when(device.lastSeenAt)})
        </dd>
        <dt>Registered</dt>
        <dd>{when(device.registeredAt)}</dd>
        <dt>Tags</dt>
        <dd>{device.tags.length === 0 ? '—' : device.tags.join(', ')}</dd>
        {device.decommissionedAt === null ? null : (
          <>
            <dt>Decommissioned</dt>
            <dd class="bad">{when(device.decommissionedAt)}</dd>
          </>
        )}
      </dl>
      {operate ? (
        <section aria-labelledby="actions-h">
          <h2 id="actions-h">Actions</h2>
          <div class="actions">
            <form method="post" action={`/console/devices/${id}/tags`}>
              <CsrfField c={c} />
              <div class="field">
                <label for="tags">Tags (comma-separated)</label>
                <input id="tags" name="tags" value={device.tags.join(', ')} size={40} />
              </div>
              <button type="submit">Save tags</button>
            </form>
            <form
              method="post"
              action={`/console/devices/${id}/decommission`}
              data-confirm={`Decommission device ${id}: its tokens are refused from now on, and it gets no more updates until it registers again.`}
            >
              <CsrfField c={c} />
              <button type="submit" class="danger">
                Decommission
              </button>
            </form>
          </div>
        </section>
      ) : null}
      <section aria-labelledby="rollouts-h">
        <h2 id="rollouts-h">Rollouts</h2>
        {memberships.length === 0 ? (
          <p>This device has not been offered any rollout.</p>
        ) : (
          <table>
            <thead>
              <tr>
                <th scope="col">Rollout</th>
                <th scope="col">Release</th>
                <th scope="col">Kind</th>
                <th scope="col">Rollout state</th>
                <th scope="col">Device state</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {memberships.map((m) => (
                <tr>
                  <td>
                    <a href={`/console/rollouts/${m.rolloutId}`}>
                      {m.name === '' ? m.rolloutId.slice(0, 8) : m.name}
                    </a>
                  </td>
                  <td>{m.version}</td>
                  <td>{m.kind}</td>
                  <td>{m.rolloutState}</td>
                  <td>
                    <span class={`state state-${m.state}`}>{m.state}</span>
                  </td>
                  <td>{when(m.updatedAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <section aria-labelledby="history-h">
        <h2 id="history-h">History</h2>
        <p class="help">The device's reports, newest first (the latest {HISTORY}).</p>
        {events.length === 0 ? (
          <p>No reports yet.</p>
        ) : (
          <table class="history">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Version</th>
                <th scope="col">State</th>
                <th scope="col">Progress</th>
                <th scope="col">Error</th>
                <th scope="col">Rollout</th>
              </tr>
            </thead>
            <tbody>
              {events.map((e) => (
                <tr>
                  <td>{when(e.at)}</td>
                  <td>{e.version}</td>
                  <td>
                    <span class={`state state-${e.state}`}>{e.state}</span>
                  </td>
                  <td class="num">{e.progress === null ? '' : `${e.progress} %`}</td>
                  <td>
                    {e.errorCode === null
                      ? ''
                      : `${e.errorCode}${e.message === null ? '' : `: ${e.message}`}`}
                  </td>
                  <td>
                    {e.rolloutId === null ? (
                      ''
                    ) : (
                      <a href={`/console/rollouts/${e.rolloutId}`}>{e.rolloutId.slice(0, 8)}</a>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </>,
  );
}

export const devicePages: ConsolePage = {
  register(app, deps: ConsoleDeps) {
    app.get('/console/devices/:id', (c) => deviceView(c, deps));
    app.post('/console/devices/:id/tags', async (c) => {
      const id = c.req.param('id');
      const form = await c.req.parseBody();
      const tags = String(form['tags'] ?? '')
        .split(',')
        .map((t) => t.trim())
        .filter((t) => t !== '');
      const back = `/console/devices/${encodeURIComponent(id)}`;
      const result = await deps.api(
        c.get('session'),
        'PUT',
        `/v1/admin/devices/${encodeURIComponent(id)}/tags`,
        {
          tags,
        },
      );
      return result.ok ? c.redirect(back, 303) : actionFailed(c, result, back);
    });
    app.post('/console/devices/:id/decommission', async (c) => {
      const id = c.req.param('id');
      const back = `/console/devices/${encodeURIComponent(id)}`;
      const result = await deps.api(
        c.get('session'),
        'POST',
        `/v1/admin/devices/${encodeURIComponent(id)}/decommission`,
      );
      return result.ok ? c.redirect(back, 303) : actionFailed(c, result, back);
    });
  },
};
