// Create a rollout, with a dry run first: the form posts to /console/rollouts/new with
// intent=preview (POST /v1/admin/rollouts/preview: per stage, how many devices it would reach
// now) or intent=create (POST /v1/admin/rollouts). The preview's rolloutId rides along in a hidden
// field and creation uses it, so the rollout reaches exactly the cohorts the preview showed (a
// device's stage is a hash of rollout id and device id). Plain server-rendered forms: it works
// without JavaScript. Shown to and accepted from the roles that may create rollouts only.
import type { Context } from 'hono';
import { and, desc, eq, gt } from 'drizzle-orm';
import type { AppDeps } from '../../context.js';
import { releases } from '../../db/schema.js';
import type { RolloutPreview } from '../../rollout/preview.js';
import { count } from '../format.js';
import { may, ROLE_GROUPS } from '../helpers.js';
import { CsrfField, renderPage } from '../layout.js';
import type { ConsoleApp, ConsoleDeps, ConsoleEnv } from '../types.js';

type Ctx = Context<ConsoleEnv>;

/** The form's fields as strings, exactly as typed (re-rendered after a preview or an error). */
export interface NewRolloutForm {
  releaseId: string;
  name: string;
  stages: string;
  bakeMinutes: string;
  maxFailurePercent: string;
  minSample: string;
  minDevices: string;
  maxConcurrent: string;
  tags: string;
  groups: string;
  hardware: string;
  currentVersion: string;
  windowStart: string;
  windowEnd: string;
  windowTz: string;
  allowDowngrade: boolean;
  draft: boolean;
  previewId: string;
}

const DEFAULTS: NewRolloutForm = {
  releaseId: '',
  name: '',
  stages: '1, 10, 100',
  bakeMinutes: '60',
  maxFailurePercent: '5',
  minSample: '5',
  minDevices: '1',
  maxConcurrent: '',
  tags: '',
  groups: '',
  hardware: '',
  currentVersion: '',
  windowStart: '',
  windowEnd: '',
  windowTz: 'utc',
  allowDowngrade: false,
  draft: false,
  previewId: '',
};

const list = (text: string) =>
  text
    .split(/[,\s]+/)
    .map((t) => t.trim())
    .filter((t) => t !== '');

class FormError extends Error {}

function num(label: string, text: string, o: { integer?: boolean } = {}): number | undefined {
  const t = text.trim();
  if (t === '') return undefined;
  const n = Number(t.replace(/%$/, ''));
  if (!Number.isFinite(n) || (o.integer === true && !Number.isInteger(n)))
    throw new FormError(`${label}: "${text}" is not ${o.integer === true ? 'a whole number' : 'a number'}`);
  return n;
}

/** The API body (RolloutCreate) the form describes; FormError names the field when it cannot. */
export function rolloutBody(f: NewRolloutForm): Record<string, unknown> {
  if (f.releaseId === '') throw new FormError('Release: choose the release to roll out');
  const bake = num('Bake time', f.bakeMinutes);
  const shared = {
    ...(bake === undefined ? {} : { minBakeSeconds: Math.round(bake * 60) }),
    ...opt('maxFailurePercent', num('Failure threshold', f.maxFailurePercent)),
    ...opt('minSample', num('Minimum sample', f.minSample, { integer: true })),
    ...opt('minDevices', num('Minimum devices per stage', f.minDevices, { integer: true })),
    ...opt('maxConcurrent', num('At most at once', f.maxConcurrent, { integer: true })),
  };
  const percents = list(f.stages).map((p) => num('Stages', p) ?? 0);
  if (percents.length === 0) throw new FormError('Stages: give at least one percentage, e.g. "1, 10, 100"');
  const selector = {
    ...(list(f.tags).length > 0 ? { tags: list(f.tags) } : {}),
    ...(list(f.groups).length > 0 ? { groups: list(f.groups) } : {}),
    ...(list(f.hardware).length > 0 ? { hardware: list(f.hardware) } : {}),
    ...(f.currentVersion.trim() === '' ? {} : { currentVersion: f.currentVersion.trim() }),
  };
  const window =
    f.windowStart === '' && f.windowEnd === ''
      ? undefined
      : {
          timezone: f.windowTz === 'device-local' ? 'device-local' : 'utc',
          start: f.windowStart,
          end: f.windowEnd,
        };
  return {
    ...(f.previewId === '' ? {} : { id: f.previewId }),
    releaseId: f.releaseId,
    ...(f.name.trim() === '' ? {} : { name: f.name.trim() }),
    selector,
    stages: percents.map((percent) => ({ percent, ...shared })),
    ...(window === undefined ? {} : { maintenanceWindow: window }),
    ...(f.allowDowngrade ? { allowDowngrade: true } : {}),
    ...(f.draft ? { start: false } : {}),
  };
}

const opt = <K extends string>(k: K, v: number | undefined) =>
  (v === undefined ? {} : { [k]: v }) as Partial<Record<K, number>>;

function readForm(body: Record<string, unknown>): NewRolloutForm {
  const str = (k: keyof NewRolloutForm) =>
    typeof body[k] === 'string' ? (body[k] as string).slice(0, 2000) : '';
  const previewId = str('previewId');
  return {
    releaseId: str('releaseId'),
    name: str('name'),
    stages: str('stages'),
    bakeMinutes: str('bakeMinutes'),
    maxFailurePercent: str('maxFailurePercent'),
    minSample: str('minSample'),
    minDevices: str('minDevices'),
    maxConcurrent: str('maxConcurrent'),
    tags: str('tags'),
    groups: str('groups'),
    hardware: str('hardware'),
    currentVersion: str('currentVersion'),
    windowStart: str('windowStart'),
    windowEnd: str('windowEnd'),
    windowTz: str('windowTz'),
    allowDowngrade: body['allowDowngrade'] === 'on',
    draft: body['draft'] === 'on',
    previewId: /^[0-9a-f-]{36}$/.test(previewId) ? previewId : '',
  };
}

async function offerable(deps: AppDeps) {
  return deps.db
    .select({ id: releases.id, product: releases.product, version: releases.version })
    .from(releases)
    .where(and(eq(releases.yanked, false), gt(releases.expires, deps.clock.now())))
    .orderBy(desc(releases.createdAt))
    .limit(200);
}

function Field(props: {
  name: keyof NewRolloutForm;
  label: string;
  value: string;
  help?: string;
  type?: string;
  inputmode?: 'numeric' | 'decimal';
  placeholder?: string;
}) {
  const id = `n-${props.name}`;
  return (
    <div class="field">
      <label for={id}>{props.label}</label>
      <input
        id={id}
        name={props.name}
        type={props.type ?? 'text'}
        value={props.value}
        inputmode={props.inputmode}
        placeholder={props.placeholder}
        aria-describedby={props.help === undefined ? undefined : `${id}-help`}
      />
      {props.help === undefined ? null : (
        <p class="help" id={`${id}-help`}>
          {props.help}
        </p>
      )}
    </div>
  );
}

function PreviewView(props: { p: RolloutPreview }) {
  const { p } = props;
  const d = p.devices;
  const windowed = p.maintenanceWindow !== null;
  return (
    <section aria-labelledby="preview-h" class="preview" data-preview={p.rolloutId}>
      <h2 id="preview-h">Dry run: who it would reach now</h2>
      <p class="summary" data-preview-funnel>
        {count(d.product)} live {p.product} devices; the selector picks{' '}
        <strong data-k="selected">{count(d.selected)}</strong>;{' '}
        <strong data-k="eligible">{count(d.eligible)}</strong> would be updated to {p.releaseVersion}
        {d.incompatible > 0 ? `; ${count(d.incompatible)} have hardware the release is not for` : ''}
        {d.upToDate > 0 ? `; ${count(d.upToDate)} already run ${p.releaseVersion} or newer` : ''}
        {d.beyondLastStage > 0 ? `; ${count(d.beyondLastStage)} are beyond the last stage` : ''}.
      </p>
      <div class="table-wrap">
        <table class="preview-stages">
          <caption class="visually-hidden">Devices per stage</caption>
          <thead>
            <tr>
              <th scope="col">Stage</th>
              <th scope="col" class="num">
                Percent
              </th>
              <th scope="col" class="num">
                New devices
              </th>
              <th scope="col" class="num">
                Reached by then
              </th>
              {windowed ? (
                <th scope="col" class="num">
                  In the window now
                </th>
              ) : null}
              <th scope="col" class="num">
                At most at once
              </th>
            </tr>
          </thead>
          <tbody>
            {p.stages.map((s) => (
              <tr data-preview-stage={s.stage}>
                <th scope="row">{s.stage + 1}</th>
                <td class="num">{s.percent} %</td>
                <td class="num" data-k="targeted">
                  {count(s.targeted)}
                </td>
                <td class="num" data-k="cumulative">
                  {count(s.cumulative)}
                </td>
                {windowed ? (
                  <td class="num" data-k="inWindowNow">
                    {count(s.inWindowNow)}
                  </td>
                ) : null}
                <td class="num">{s.maxConcurrent === null ? '—' : count(s.maxConcurrent)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {p.versions.length === 0 ? null : (
        <p class="help">
          Selected devices by running version:{' '}
          {p.versions
            .map(
              (v) =>
                `${v.version ?? 'not reported yet'} ${count(v.selected)} (${count(v.eligible)} to update)`,
            )
            .join(', ')}
          .
        </p>
      )}
      <p class="help">
        Counted for rollout id <code>{p.rolloutId}</code> at {p.at}; creating it below keeps this id, so the
        stages reach exactly these devices (preview again after changing the form).
      </p>
    </section>
  );
}

function newView(
  c: Ctx,
  o: {
    form: NewRolloutForm;
    choices: { id: string; product: string; version: string }[];
    preview?: RolloutPreview;
    error?: string;
    status?: number;
  },
) {
  const f = o.form;
  return renderPage(
    c,
    {
      title: 'New rollout',
      section: '/console/rollouts',
      styles: ['rollouts.css'],
      ...(o.status === undefined ? {} : { status: o.status }),
    },
    <>
      {o.error === undefined ? null : (
        <p role="alert" class="error" id="form-error">
          {o.error}
        </p>
      )}
      <form method="post" action="/console/rollouts/new" class="new-rollout" aria-label="New rollout">
        <CsrfField c={c} />
        <input type="hidden" name="previewId" value={o.preview?.rolloutId ?? f.previewId} />
        <fieldset>
          <legend>Release</legend>
          <div class="field">
            <label for="n-releaseId">Release</label>
            <select id="n-releaseId" name="releaseId" required>
              <option value="">choose a release</option>
              {o.choices.map((r) => (
                <option value={r.id} selected={r.id === f.releaseId}>
                  {r.product} {r.version}
                </option>
              ))}
            </select>
          </div>
          <Field name="name" label="Name" value={f.name} help="For people; default: product and version" />
        </fieldset>
        <fieldset>
          <legend>Which devices</legend>
          <Field
            name="groups"
            label="Groups (any)"
            value={f.groups}
            placeholder="lab, eu"
            help="Devices tagged group:<name>"
          />
          <Field name="tags" label="Tags (all)" value={f.tags} />
          <Field name="hardware" label="Hardware (any)" value={f.hardware} />
          <Field
            name="currentVersion"
            label="Running version"
            value={f.currentVersion}
            placeholder=">=1.0.0 <1.2.0"
          />
        </fieldset>
        <fieldset>
          <legend>Stages and health</legend>
          <Field
            name="stages"
            label="Stages (% of the devices)"
            value={f.stages}
            help="Each stage reaches more of the selected devices"
          />
          <Field
            name="bakeMinutes"
            label="Bake time per stage (minutes)"
            value={f.bakeMinutes}
            inputmode="decimal"
          />
          <Field
            name="maxFailurePercent"
            label="Failure threshold (%)"
            value={f.maxFailurePercent}
            inputmode="decimal"
            help="Pause automatically above this share of failed or rolled-back outcomes"
          />
          <Field
            name="minSample"
            label="Minimum sample"
            value={f.minSample}
            inputmode="numeric"
            help="Outcomes needed before the failure rate is judged"
          />
          <Field
            name="minDevices"
            label="Minimum devices per stage"
            value={f.minDevices}
            inputmode="numeric"
          />
          <Field
            name="maxConcurrent"
            label="At most at once"
            value={f.maxConcurrent}
            inputmode="numeric"
            help="Devices updating at the same time; empty: no limit"
          />
        </fieldset>
        <fieldset>
          <legend>Maintenance window (optional)</legend>
          <Field name="windowStart" label="Opens (HH:MM)" value={f.windowStart} placeholder="01:00" />
          <Field name="windowEnd" label="Closes (HH:MM)" value={f.windowEnd} placeholder="05:00" />
          <div class="field">
            <label for="n-windowTz">Time zone</label>
            <select id="n-windowTz" name="windowTz">
              <option value="utc" selected={f.windowTz !== 'device-local'}>
                UTC
              </option>
              <option value="device-local" selected={f.windowTz === 'device-local'}>
                each device's own (its timezone attribute)
              </option>
            </select>
          </div>
        </fieldset>
        <fieldset>
          <legend>Start</legend>
          <div class="check">
            <input id="n-allowDowngrade" name="allowDowngrade" type="checkbox" checked={f.allowDowngrade} />
            <label for="n-allowDowngrade">Allow a downgrade (devices running a newer version)</label>
          </div>
          <div class="check">
            <input id="n-draft" name="draft" type="checkbox" checked={f.draft} />
            <label for="n-draft">Create as a draft (start it later)</label>
          </div>
        </fieldset>
        <div class="actions">
          <button type="submit" name="intent" value="preview" class="secondary" data-action="preview">
            Dry run
          </button>
          <button type="submit" name="intent" value="create" data-action="create">
            {f.draft ? 'Create draft' : 'Create and start'}
          </button>
        </div>
      </form>
      {o.preview === undefined ? null : <PreviewView p={o.preview} />}
    </>,
  );
}

function forbidden(c: Ctx) {
  return renderPage(
    c,
    { title: 'Not allowed', status: 403, section: '/console/rollouts' },
    <p role="alert" class="error">
      <strong>ERR_FORBIDDEN</strong>: your key's role ({c.get('session').key.role}) may not create rollouts
      (operator or admin may). <a href="/console/rollouts">Back to the rollouts</a>.
    </p>,
  );
}

export function registerNewRollout(app: ConsoleApp, deps: ConsoleDeps): void {
  app.get('/console/rollouts/new', async (c) => {
    if (!may(c, ROLE_GROUPS.operate)) return forbidden(c);
    const releaseId = c.req.query('release') ?? '';
    return newView(c, { form: { ...DEFAULTS, releaseId }, choices: await offerable(deps) });
  });
  app.post('/console/rollouts/new', async (c) => {
    // The API refuses a viewer too; this only spares the round trip and says it plainly.
    if (!may(c, ROLE_GROUPS.operate)) return forbidden(c);
    const body = await c.req.parseBody();
    const form = readForm(body);
    const intent = body['intent'] === 'create' ? 'create' : 'preview';
    const choices = await offerable(deps);
    let json: Record<string, unknown>;
    try {
      json = rolloutBody(form);
    } catch (error) {
      if (!(error instanceof FormError)) throw error;
      return newView(c, { form, choices, error: error.message, status: 400 });
    }
    const session = c.get('session');
    if (intent === 'preview') {
      const result = await deps.api<RolloutPreview>(session, 'POST', '/v1/admin/rollouts/preview', json);
      if (!result.ok)
        return newView(c, {
          form,
          choices,
          error: `${result.error?.code ?? result.status}: ${result.error?.message ?? ''}`,
          status: result.status,
        });
      return newView(c, {
        form: { ...form, previewId: result.body.rolloutId },
        choices,
        preview: result.body,
      });
    }
    const result = await deps.api<{ id: string }>(session, 'POST', '/v1/admin/rollouts', json);
    if (!result.ok)
      return newView(c, {
        form,
        choices,
        error: `${result.error?.code ?? result.status}: ${result.error?.message ?? ''}`,
        status: result.status,
      });
    return c.redirect(`/console/rollouts/${result.body.id}`, 303);
  });
}
