// Rollouts: the list (newest first, members counted by state, keyset pages), and a rollout's page —
// per-stage progress bars, the failure rate against the stage's threshold over time (uPlot, from
// /console/rollouts/:id/failure.json), the timeline of operator actions and automatic decisions
// with the numbers they were taken on (the audit log), live updates (server-sent events from
// /console/rollouts/:id/events: the API's status stream, reached with the session cookie), and
// the actions start, pause, resume, abort and roll back, each with a confirmation that says what
// it will do. Actions are shown only to roles the API lets do them (operator, admin), and go
// through the admin API in-process as the session's key (the API checks the role again). The
// create form with its dry run is rollouts-new.tsx.
import type { Context } from 'hono';
import { and, desc, eq, gt, ne } from 'drizzle-orm';
import type { AppDeps } from '../../context.js';
import { releases } from '../../db/schema.js';
import { ServerError } from '../../errors.js';
import type { RolloutStatusView, StageStatus } from '../../rollout/status.js';
import { loadRollout } from '../../rollout/store.js';
import { rolloutEventStream, statusOf } from '../../routes/admin/rollouts.js';
import { count, query, when } from '../format.js';
import { actionFailed, may, ROLE_GROUPS } from '../helpers.js';
import { CsrfField, renderPage } from '../layout.js';
import type { ConsoleDeps, ConsoleEnv, ConsolePage } from '../types.js';
import { failureSeries, rolloutList, rolloutTimeline, type TimelineEntry } from './rollouts-data.js';
import { registerNewRollout } from './rollouts-new.js';

type Ctx = Context<ConsoleEnv>;
type StatusDoc = Awaited<ReturnType<typeof statusOf>>;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const STATES = ['draft', 'active', 'paused', 'completed', 'aborted'] as const;
const INSTALLING = ['downloading', 'installing', 'installed', 'rebooting'] as const;

/** 95 → "1 min 35 s", 7300 → "2 h 1 min". */
export function duration(seconds: number): string {
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
  return `${Math.floor(seconds / 86_400)} d ${Math.floor((seconds % 86_400) / 3600)} h`;
}

const pct = (n: number) => `${Number.isInteger(n) ? n : Number(n.toFixed(2))} %`;
const installing = (c: StageStatus['counts']) => INSTALLING.reduce((sum, s) => sum + (c[s] ?? 0), 0);

function stateLabel(r: { state: string; currentStage: number; stages: readonly { percent: number }[] }) {
  const stage = r.stages[r.currentStage];
  const at = `stage ${r.currentStage + 1}/${r.stages.length}${stage === undefined ? '' : ` (${pct(stage.percent)})`}`;
  if (r.state === 'active') return `running ${at}`;
  if (r.state === 'paused') return `paused at ${at}`;
  return r.state;
}

function StateBadge(props: { state: string }) {
  return (
    <span class={`state rollout-${props.state}`} data-rollout-state={props.state}>
      {props.state}
    </span>
  );
}

// ---- list ----

async function listView(c: Ctx, deps: AppDeps) {
  const state = STATES.find((s) => s === c.req.query('state'));
  const product = c.req.query('product')?.trim() || undefined;
  const afterParam = c.req.query('after');
  const after = afterParam !== undefined && UUID.test(afterParam) ? afterParam : undefined;
  const data = await rolloutList(deps, { state, product, after });
  const filters = { state, product };
  return renderPage(
    c,
    { title: 'Rollouts', section: '/console/rollouts', styles: ['rollouts.css'] },
    <>
      <div class="toolbar">
        <form class="filters" method="get" action="/console/rollouts" aria-label="Filter rollouts">
          <div class="field">
            <label for="f-state">State</label>
            <select id="f-state" name="state">
              <option value="">any state</option>
              {STATES.map((s) => (
                <option value={s} selected={s === state}>
                  {s}
                </option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for="f-product">Product</label>
            <input id="f-product" name="product" value={product ?? ''} placeholder="any product" />
          </div>
          <button type="submit">Filter</button>
        </form>
        {may(c, ROLE_GROUPS.operate) ? (
          <a class="button" href="/console/rollouts/new" data-action="new-rollout">
            New rollout
          </a>
        ) : null}
      </div>
      {data.rows.length === 0 ? (
        <p class="summary">No rollouts{state === undefined && product === undefined ? ' yet' : ' match'}.</p>
      ) : (
        <div class="table-wrap">
          <table class="rollouts">
            <caption class="visually-hidden">Rollouts, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Rollout</th>
                <th scope="col">Product</th>
                <th scope="col">Release</th>
                <th scope="col">State</th>
                <th scope="col" class="num">
                  Offered
                </th>
                <th scope="col" class="num">
                  Committed
                </th>
                <th scope="col" class="num">
                  Failed
                </th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {data.rows.map(({ rollout: r, version, counts }) => {
                const offered = Object.values(counts).reduce((a, b) => a + b, 0);
                const failed = (counts['failed'] ?? 0) + (counts['rolled-back'] ?? 0);
                return (
                  <tr data-rollout={r.id}>
                    <td>
                      <a href={`/console/rollouts/${r.id}`}>{r.name}</a>
                      {r.kind === 'rollback' ? <span class="tag">rollback</span> : null}
                    </td>
                    <td>{r.product}</td>
                    <td>{version}</td>
                    <td>
                      <StateBadge state={r.state} />{' '}
                      <span class="muted">
                        {stateLabel({ ...r, stages: r.stages as { percent: number }[] }).replace(
                          /^(running|paused at) /,
                          '',
                        )}
                      </span>
                    </td>
                    <td class="num">{count(offered)}</td>
                    <td class="num">{count(counts['committed'] ?? 0)}</td>
                    <td class={`num${failed > 0 ? ' bad' : ''}`}>{count(failed)}</td>
                    <td>
                      <time datetime={r.createdAt.toISOString()}>{when(r.createdAt)}</time>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      <nav class="pager" aria-label="Pages">
        {after === undefined ? null : <a href={`/console/rollouts${query(filters)}`}>First page</a>}
        {data.next === undefined ? null : (
          <a rel="next" href={`/console/rollouts${query({ ...filters, after: data.next })}`}>
            Next page
          </a>
        )}
      </nav>
    </>,
  );
}

// ---- one rollout ----

/** A stage's devices as a stacked bar: committed, failed, installing, offered, not offered yet. */
export function StageBar(props: { s: StageStatus }) {
  const { s } = props;
  const total = Math.max(1, s.targeted);
  const parts: [string, number][] = [
    ['committed', s.committed],
    ['failed', s.failures],
    ['installing', installing(s.counts)],
    ['offered', s.counts.offered ?? 0],
  ];
  let x = 0;
  return (
    <svg
      class="stage-bar"
      viewBox="0 0 100 10"
      preserveAspectRatio="none"
      role="img"
      aria-label={`${s.committed} of ${s.targeted} committed, ${s.failures} failed, ${installing(s.counts)} installing`}
    >
      <rect class="bar-bg" x="0" y="0" width="100" height="10" />
      {parts.map(([k, n]) => {
        const w = (n / total) * 100;
        const rect = (
          <rect class={`bar-${k}`} data-bar={k} x={x.toFixed(3)} y="0" width={w.toFixed(3)} height="10" />
        );
        x += w;
        return rect;
      })}
    </svg>
  );
}

/** "1 device", "1,204 devices". */
const many = (n: number, what: string) => `${count(n)} ${what}${n === 1 ? '' : 's'}`;

/** What an action will do, in numbers, for its confirmation and the text under its button. */
export function actionEffects(doc: StatusDoc) {
  const { rollout: r, status: s } = doc;
  const k = s.currentStage;
  const stage = s.stages[k];
  const where = `stage ${k + 1} (${pct(stage?.percent ?? 100)})`;
  const through = s.stages.filter((st) => st.stage <= k);
  const waiting = through.reduce((n, st) => n + st.notOffered + (st.counts.offered ?? 0), 0);
  const underWay = s.stages.reduce((n, st) => n + installing(st.counts), 0);
  const neverGet = s.stages.reduce((n, st) => n + st.notOffered + (st.counts.offered ?? 0), 0);
  const reached = Object.values(s.overall.counts).reduce((a, b) => a + (b ?? 0), 0);
  return {
    start: `Start ${r.name}: stage 1 (${pct(s.stages[0]?.percent ?? 100)}) offers ${r.releaseVersion} to ${many(s.stages[0]?.targeted ?? 0, 'device')} now.`,
    pause: `Pause ${where}: ${many(waiting, 'device')} will get no new offers; ${many(underWay, 'install')} under way finish.`,
    resume: `Resume ${where}: ${many(waiting, 'device')} may be offered ${r.releaseVersion} again; the stage's bake time starts again.`,
    abort: `Abort ${r.name} for good: ${many(neverGet, 'device')} that ${neverGet === 1 ? 'has' : 'have'} not started will never be offered ${r.releaseVersion}; ${many(underWay, 'install')} under way finish.`,
    rollback: `Roll back: abort ${r.name} and offer the release chosen below to the ${many(reached, 'device')} this rollout reached (downgrade allowed).`,
  };
}

function Actions(props: { c: Ctx; doc: StatusDoc; targets: { id: string; version: string }[] }) {
  const { c, doc, targets } = props;
  const r = doc.rollout;
  const effects = actionEffects(doc);
  const available = (
    [
      ['start', r.state === 'draft', 'Start'],
      ['pause', r.state === 'active', 'Pause'],
      ['resume', r.state === 'paused', 'Resume'],
      ['abort', r.state === 'draft' || r.state === 'active' || r.state === 'paused', 'Abort'],
    ] as const
  ).filter(([, on]) => on);
  const canRollback = r.kind === 'normal' && r.state !== 'draft' && targets.length > 0;
  if (available.length === 0 && !canRollback) return null;
  return (
    <section aria-labelledby="actions-h" class="rollout-actions">
      <h2 id="actions-h">Actions</h2>
      <div class="actions">
        {available.map(([action, , label]) => (
          <form
            method="post"
            action={`/console/rollouts/${r.id}/${action}`}
            data-confirm={effects[action]}
            data-action-form={action}
          >
            <CsrfField c={c} />
            <button
              type="submit"
              class={action === 'abort' ? 'danger' : action === 'pause' ? 'secondary' : undefined}
              aria-describedby={`effect-${action}`}
              data-action={action}
            >
              {label}
            </button>
            <p class="help" id={`effect-${action}`}>
              {effects[action]}
            </p>
          </form>
        ))}
        {canRollback ? (
          <form
            method="post"
            action={`/console/rollouts/${r.id}/rollback`}
            data-confirm={effects.rollback}
            data-action-form="rollback"
          >
            <CsrfField c={c} />
            <label for="rollback-to">Roll back to</label>
            <select id="rollback-to" name="version">
              {targets.map((t) => (
                <option value={t.version}>{t.version}</option>
              ))}
            </select>
            <button type="submit" class="danger" aria-describedby="effect-rollback" data-action="rollback">
              Roll back
            </button>
            <p class="help" id="effect-rollback">
              {effects.rollback}
            </p>
          </form>
        ) : null}
      </div>
    </section>
  );
}

const ENGINE = 'system:rollout-engine';
const NUMBER_LABELS: Record<string, string> = {
  failures: 'failed',
  outcomes: 'outcomes',
  failurePercent: 'failure %',
  maxFailurePercent: 'threshold %',
  minSample: 'min sample',
  stageTargeted: 'stage devices',
  stageCommitted: 'stage committed',
  requiredCommitted: 'committed needed',
  stageInFlight: 'in progress',
  bakedSeconds: 'baked s',
  minBakeSeconds: 'bake s',
};

function Timeline(props: { entries: TimelineEntry[] }) {
  return (
    <section aria-labelledby="timeline-h">
      <h2 id="timeline-h">Timeline</h2>
      {props.entries.length === 0 ? (
        <p class="summary">Nothing recorded yet.</p>
      ) : (
        <ol class="timeline" data-timeline>
          {props.entries.map((e) => {
            const automatic = e.actor.startsWith('system:');
            const reason = typeof e.details['reason'] === 'string' ? e.details['reason'] : undefined;
            const numbers = (e.details['numbers'] ?? {}) as Record<string, unknown>;
            const shown = Object.entries(NUMBER_LABELS).filter(([k]) => typeof numbers[k] === 'number');
            const rest = Object.entries(e.details).filter(
              ([k, v]) => k !== 'reason' && k !== 'numbers' && (typeof v !== 'object' || v === null),
            );
            return (
              <li class={automatic ? 'auto' : 'manual'} data-action={e.action}>
                <time datetime={e.at}>{when(e.at)}</time>{' '}
                <strong>{e.action.replace(/^rollout\./, '')}</strong>{' '}
                <span class="muted">
                  {automatic
                    ? e.actor === ENGINE
                      ? 'automatic (rollout engine)'
                      : `automatic (${e.actor})`
                    : `by ${e.actor}`}
                </span>
                {reason === undefined ? null : <p class="reason">{reason}</p>}
                {shown.length === 0 && rest.length === 0 ? null : (
                  <dl class="numbers">
                    {shown.map(([k, label]) => (
                      <>
                        <dt>{label}</dt>
                        <dd>{String(numbers[k])}</dd>
                      </>
                    ))}
                    {rest.map(([k, v]) => (
                      <>
                        <dt>{k}</dt>
                        <dd>{String(v)}</dd>
                      </>
                    ))}
                  </dl>
                )}
              </li>
            );
          })}
        </ol>
      )}
    </section>
  );
}

function StageTable(props: { status: RolloutStatusView }) {
  const { status } = props;
  return (
    <div class="table-wrap">
      <table class="stages">
        <caption class="visually-hidden">Stages and their devices</caption>
        <thead>
          <tr>
            <th scope="col">Stage</th>
            <th scope="col">Progress</th>
            <th scope="col" class="num">
              Devices
            </th>
            <th scope="col" class="num">
              Committed
            </th>
            <th scope="col" class="num">
              Failed
            </th>
            <th scope="col" class="num">
              Installing
            </th>
            <th scope="col" class="num">
              Not offered
            </th>
            <th scope="col" class="num">
              Failure rate / threshold
            </th>
          </tr>
        </thead>
        <tbody>
          {status.stages.map((s) => (
            <tr data-stage={s.stage} data-phase={s.phase} class={`phase-${s.phase}`}>
              <th scope="row">
                {s.phase === 'current' ? (
                  <span class="visually-hidden">current stage: </span>
                ) : s.phase === 'done' ? (
                  '✓ '
                ) : (
                  ''
                )}
                {s.stage + 1}: {pct(s.percent)}
              </th>
              <td>
                <StageBar s={s} />
              </td>
              <td class="num" data-k="targeted">
                {count(s.targeted)}
              </td>
              <td class="num" data-k="committed">
                {count(s.committed)}
              </td>
              <td class="num" data-k="failures">
                {count(s.failures)}
              </td>
              <td class="num" data-k="installing">
                {count(installing(s.counts))}
              </td>
              <td class="num" data-k="notOffered">
                {count(s.notOffered)}
              </td>
              <td class={`num${s.failurePercent > s.maxFailurePercent ? ' bad' : ''}`} data-k="failureRate">
                {pct(s.failurePercent)} / {pct(s.maxFailurePercent)}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

async function rolloutView(c: Ctx, deps: AppDeps, id: string) {
  const doc = await statusOf(deps, id);
  const r = doc.rollout;
  const s = doc.status;
  const timeline = await rolloutTimeline(deps, id);
  const operate = may(c, ROLE_GROUPS.operate);
  const targets = operate
    ? await deps.db
        .select({ id: releases.id, version: releases.version })
        .from(releases)
        .where(
          and(
            eq(releases.product, r.product),
            ne(releases.id, r.releaseId),
            eq(releases.yanked, false),
            gt(releases.expires, deps.clock.now()),
          ),
        )
        .orderBy(desc(releases.createdAt))
        .limit(50)
    : [];
  const live = r.state !== 'completed' && r.state !== 'aborted';
  const rollbackOf = timeline.find((e) => e.action === 'rollout.rollback')?.details['rollbackRolloutId'];
  const selector = Object.entries(r.selector)
    .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : String(v)}`)
    .join('; ');
  const w = r.maintenanceWindow;
  return renderPage(
    c,
    {
      title: r.name,
      section: '/console/rollouts',
      scripts: ['uplot.js', 'rollouts.js'],
      styles: ['uplot.css', 'rollouts.css'],
    },
    <div
      data-rollout-page={r.id}
      data-state={r.state}
      data-stage={String(s.currentStage)}
      data-events={live ? `/console/rollouts/${r.id}/events` : undefined}
    >
      <dl class="facts">
        <dt>State</dt>
        <dd>
          <StateBadge state={r.state} /> <span data-live="state-label">{stateLabel(r)}</span>
          {s.stateReason === null ? null : <span class="reason">: {s.stateReason}</span>}
        </dd>
        <dt>Release</dt>
        <dd>
          {r.product} {r.releaseVersion}
          {r.kind === 'rollback'
            ? ' (rollback rollout, downgrade allowed)'
            : r.allowDowngrade
              ? ' (downgrade allowed)'
              : ''}
        </dd>
        <dt>Devices</dt>
        <dd>{selector === '' ? `every ${r.product} device the release applies to` : selector}</dd>
        {w === null ? null : (
          <>
            <dt>Window</dt>
            <dd>
              {w.start}–{w.end} {w.timezone === 'utc' ? 'UTC' : "device's local time"}
              {w.days === undefined ? '' : ` (days ${w.days.join(', ')}; 0 = Sunday)`}
            </dd>
          </>
        )}
        <dt>Started</dt>
        <dd>
          {r.startedAt === null ? 'not yet' : when(r.startedAt)}
          {s.timeInStageSeconds === null ? null : (
            <span class="muted" data-live="in-stage">
              {' '}
              ({duration(s.timeInStageSeconds)} in this stage)
            </span>
          )}
        </dd>
        <dt>Next</dt>
        <dd data-live="next">
          {s.next.action === 'none' ? '' : `${s.next.action}: `}
          {s.next.reason}
        </dd>
        {typeof rollbackOf === 'string' ? (
          <>
            <dt>Rolled back by</dt>
            <dd>
              <a href={`/console/rollouts/${rollbackOf}`}>{rollbackOf}</a>
            </dd>
          </>
        ) : null}
      </dl>
      <p class="live-status" aria-live="polite" data-live="status">
        {live ? 'Live updates connecting…' : `This rollout is ${r.state}; no more updates.`}
      </p>
      {operate ? <Actions c={c} doc={doc} targets={targets} /> : null}
      <section aria-labelledby="stages-h">
        <h2 id="stages-h">Stages</h2>
        <p class="summary" data-live="overall">
          {count(s.overall.targeted)} devices targeted: {count(s.overall.committed)} committed,{' '}
          {count(s.overall.failures)} failed or rolled back ({pct(s.overall.failurePercent)}),{' '}
          {count(s.overall.inFlight)} in progress, {count(s.overall.notOffered)} not offered yet.
        </p>
        <StageTable status={s} />
        <p class="legend" aria-hidden="true">
          <span class="key bar-committed" /> committed <span class="key bar-failed" /> failed or rolled back{' '}
          <span class="key bar-installing" /> installing <span class="key bar-offered" /> offered{' '}
          <span class="key bar-bg" /> not offered yet
        </p>
      </section>
      <section aria-labelledby="failure-h">
        <h2 id="failure-h">Failure rate</h2>
        <figure class="chart" id="failure-chart" data-src={`/console/rollouts/${r.id}/failure.json`}>
          <figcaption>
            Failed or rolled-back devices over all outcomes of the rollout (what the automatic pause judges),
            against the failure threshold of the stage in effect; each device counted at the time it reached
            its present outcome.
          </figcaption>
          <noscript>The chart needs JavaScript; the stage table above does not.</noscript>
        </figure>
      </section>
      <Timeline entries={timeline} />
    </div>,
  );
}

async function act(c: Ctx, deps: ConsoleDeps, id: string, action: string) {
  const session = c.get('session');
  const back = `/console/rollouts/${id}`;
  const form = await c.req.parseBody();
  const result =
    action === 'rollback'
      ? await deps.api(session, 'POST', `/v1/admin/rollouts/${id}/rollback`, {
          version: typeof form['version'] === 'string' ? form['version'] : '',
        })
      : await deps.api(session, 'POST', `/v1/admin/rollouts/${id}/${action}`, {});
  if (!result.ok) return actionFailed(c, result, back);
  const created = action === 'rollback' ? (result.body as { id?: string }).id : undefined;
  return c.redirect(created === undefined ? back : `/console/rollouts/${created}`, 303);
}

const ACTIONS = new Set(['start', 'pause', 'resume', 'abort', 'rollback']);

export const rolloutPages: ConsolePage = {
  nav: {
    href: '/console/rollouts',
    label: 'Rollouts',
    order: 20,
    visible: () => true,
  },
  register(app, deps) {
    app.get('/console/rollouts', (c) => listView(c, deps));
    registerNewRollout(app, deps);
    app.get('/console/rollouts/:id', async (c) => {
      const id = c.req.param('id');
      if (!UUID.test(id)) return notFound(c, id);
      try {
        return await rolloutView(c, deps, id);
      } catch (error) {
        if (error instanceof ServerError && error.code === 'ERR_NOT_FOUND') return notFound(c, id);
        throw error;
      }
    });
    app.get('/console/rollouts/:id/events', (c) => {
      const id = c.req.param('id');
      if (!UUID.test(id)) throw new ServerError('ERR_VALIDATION', 'id: expected a rollout id (UUID)');
      // The API's status document plus what each action would do now, so the confirmations
      // the page shows stay true while the numbers move (rollouts.js copies them in).
      return rolloutEventStream(deps, c, id, (doc) => ({ ...doc, effects: actionEffects(doc) }));
    });
    app.get('/console/rollouts/:id/failure.json', async (c) => {
      const id = c.req.param('id');
      if (!UUID.test(id)) throw new ServerError('ERR_VALIDATION', 'id: expected a rollout id (UUID)');
      const loaded = await loadRollout(deps.db, id);
      if (loaded === undefined) throw new ServerError('ERR_NOT_FOUND', `no rollout ${id}`);
      const timeline = await rolloutTimeline(deps, id);
      return c.json(await failureSeries(deps, { ...loaded.row, stages: loaded.candidate.stages }, timeline));
    });
    app.post('/console/rollouts/:id/:action', (c) => {
      const { id, action } = c.req.param();
      if (!UUID.test(id) || !ACTIONS.has(action)) return notFound(c, id);
      return act(c, deps, id, action);
    });
  },
};

function notFound(c: Ctx, id: string) {
  return renderPage(
    c,
    { title: 'Rollout not found', status: 404, section: '/console/rollouts' },
    <p>
      No rollout <code>{id}</code>. <a href="/console/rollouts">All rollouts</a>.
    </p>,
  );
}
