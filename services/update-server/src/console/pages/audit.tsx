// Audit log: who did what, when, from which key — newest first, keyset-paginated on the log id,
// filtered by action prefix or actor. The actor "apikey:<id>" is shown with the key's name and
// role (console actions are recorded as the key the session was made from).
import { and, desc, eq, like, lt, type SQL, sql } from 'drizzle-orm';
import type { Context } from 'hono';
import type { AppDeps } from '../../context.js';
import { apiKeys, auditLog } from '../../db/schema.js';
import { query, when } from '../format.js';
import { readable } from '../helpers.js';
import { renderPage } from '../layout.js';
import type { ConsoleEnv, ConsolePage } from '../types.js';

export const AUDIT_PAGE_SIZE = 50;

async function auditView(c: Context<ConsoleEnv>, deps: AppDeps) {
  const action = c.req.query('action')?.trim() || undefined;
  const actor = c.req.query('actor')?.trim() || undefined;
  const beforeText = c.req.query('before');
  const before = beforeText !== undefined && /^\d{1,18}$/.test(beforeText) ? Number(beforeText) : undefined;
  const where: SQL[] = [];
  if (action !== undefined) where.push(like(auditLog.action, `${action.replace(/[%_\\]/g, '')}%`));
  if (actor !== undefined) where.push(eq(auditLog.actor, actor));
  if (before !== undefined) where.push(lt(auditLog.id, before));
  const rows = await deps.db
    .select({
      id: auditLog.id,
      at: auditLog.at,
      actor: auditLog.actor,
      action: auditLog.action,
      target: auditLog.target,
      details: auditLog.details,
      keyName: apiKeys.name,
      keyRole: apiKeys.role,
    })
    .from(auditLog)
    .leftJoin(apiKeys, sql`${auditLog.actor} = 'apikey:' || ${apiKeys.id}::text`)
    .where(and(...where))
    .orderBy(desc(auditLog.id))
    .limit(AUDIT_PAGE_SIZE + 1);
  const shown = rows.slice(0, AUDIT_PAGE_SIZE);
  const next = rows.length > AUDIT_PAGE_SIZE ? shown.at(-1)?.id : undefined;
  const filters = { action, actor };
  return renderPage(
    c,
    { title: 'Audit log', section: '/console/audit' },
    <>
      <form class="filters" method="get" action="/console/audit" aria-label="Filter the audit log">
        <div class="field">
          <label for="a-action">Action starts with</label>
          <input id="a-action" name="action" value={action ?? ''} placeholder="rollout., console.sign-in" />
        </div>
        <div class="field">
          <label for="a-actor">Actor</label>
          <input id="a-actor" name="actor" value={actor ?? ''} placeholder="apikey:<id>" />
        </div>
        <button type="submit">Filter</button>
      </form>
      <div class="table-wrap">
        <table class="audit">
          <caption class="visually-hidden">Audit records, newest first</caption>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Who</th>
              <th scope="col">Action</th>
              <th scope="col">Target</th>
              <th scope="col">Details</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((r) => (
              <tr>
                <td>{when(r.at)}</td>
                <td>
                  {r.keyName === null ? (
                    <code>{r.actor}</code>
                  ) : (
                    <>
                      {r.keyName} ({r.keyRole}){' '}
                      <a
                        class="mono"
                        href={`/console/audit${query({ actor: r.actor })}`}
                        title="Only this key"
                      >
                        {r.actor.slice(0, 15)}
                      </a>
                    </>
                  )}
                </td>
                <td>
                  <code>{r.action}</code>
                </td>
                <td class="mono">{r.target}</td>
                <td class="mono">{JSON.stringify(r.details).slice(0, 300)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {shown.length === 0 ? <p>No audit records match.</p> : null}
      <nav class="pager" aria-label="Pages">
        {before === undefined ? null : <a href={`/console/audit${query(filters)}`}>Newest</a>}
        {next === undefined ? null : (
          <a rel="next" href={`/console/audit${query({ ...filters, before: String(next) })}`}>
            Older
          </a>
        )}
      </nav>
    </>,
  );
}

export const auditPages: ConsolePage = {
  nav: { href: '/console/audit', label: 'Audit log', order: 40, visible: readable },
  register(app, deps) {
    app.get('/console/audit', (c) => auditView(c, deps));
  },
};
