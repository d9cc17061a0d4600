import {
  type AdminConnection,
  type ApiSchemas,
  apiSchemas,
  connectFromEnvironment,
  readJson,
  type ServerFlags,
} from '../server-api/client.js';
import { AdminApiError } from '../server-api/error.js';
import { printJson } from '../output.js';
import type {
  Counts,
  MaintenanceWindowView,
  ReleaseView,
  RolloutPreviewDocument,
  RolloutStatusDocument,
  RolloutView,
  StageView,
} from './rollout-client.js';
import { parseDurationSeconds } from '../duration.js';
import { formatTable } from './server-flags.js';

export { parseDurationSeconds };

type CommonFlags = ServerFlags;

function client(flags: CommonFlags): AdminConnection {
  return connectFromEnvironment(flags);
}

const ReleasePage = (s: ApiSchemas) => s.pageOf(s.ReleaseSchema);
const RolloutPage = (s: ApiSchemas) => s.pageOf(s.RolloutSchema);
type ReleasePageView = ReturnType<ReturnType<typeof ReleasePage>['parse']>;
type RolloutPageView = ReturnType<ReturnType<typeof RolloutPage>['parse']>;

const rolloutStatus = async (api: AdminConnection, id: string): Promise<RolloutStatusDocument> =>
  readJson(
    await api.api().v1.admin.rollouts[':id'].status.$get({ param: { id } }),
    (s) => s.RolloutStatusSchema,
  );

const usage = (message: string) => new AdminApiError('ERR_USAGE', message);

function parseNumber(
  flag: string,
  text: string | undefined,
  opts: { integer?: boolean; min?: number; max?: number } = {},
) {
  if (text === undefined) return undefined;
  const value = Number(text.trim().replace(/%$/, ''));
  if (!Number.isFinite(value) || text.trim() === '' || (opts.integer === true && !Number.isInteger(value)))
    throw usage(`${flag} "${text}" is not ${opts.integer === true ? 'a whole number' : 'a number'}`);
  if (opts.min !== undefined && value < opts.min)
    throw usage(`${flag} must be at least ${opts.min}, found ${value}`);
  if (opts.max !== undefined && value > opts.max)
    throw usage(`${flag} must be at most ${opts.max}, found ${value}`);
  return value;
}

interface CreateFlags extends CommonFlags {
  release?: string;
  product?: string;
  version?: string;
  name?: string;
  stages: string;
  stagesJson?: string;
  bake?: string;
  healthBake?: string;
  minCommitted?: string;
  maxFailure?: string;
  minSample?: string;
  maxConcurrent?: string;
  minDevices?: string;
  tag: string[];
  group: string[];
  hardware: string[];
  device: string[];
  currentVersion?: string;
  window?: string;
  windowTz: string;
  windowDays?: string;
  allowDowngrade?: boolean;
  draft?: boolean;
  /** --auto-rollback (true) or --auto-rollback=VERSION. */
  autoRollback?: boolean | string;
  /** false with --no-late-joiners. */
  lateJoiners?: boolean;
  dryRun?: boolean;
  id?: string;
}

/** Stages from --stages "1,10,100" and the shared thresholds, or verbatim from --stages-json. */
export function buildStages(
  flags: Pick<
    CreateFlags,
    | 'stages'
    | 'stagesJson'
    | 'bake'
    | 'healthBake'
    | 'minCommitted'
    | 'maxFailure'
    | 'minSample'
    | 'maxConcurrent'
    | 'minDevices'
  >,
): StageView[] {
  if (flags.stagesJson !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(flags.stagesJson);
    } catch {
      throw usage('--stages-json is not JSON (expected [{"percent":1,"minBakeSeconds":3600}, ...])');
    }
    if (!Array.isArray(parsed)) throw usage('--stages-json must be a JSON array of stages');
    return parsed as StageView[];
  }
  const percents = flags.stages
    .split(',')
    .map((p) => parseNumber('--stages', p, { min: 0.01, max: 100 }) ?? 0);
  const bake = flags.bake === undefined ? undefined : parseDurationSeconds('--bake', flags.bake);
  const healthBake =
    flags.healthBake === undefined ? undefined : parseDurationSeconds('--health-bake', flags.healthBake);
  if (healthBake !== undefined && healthBake % 60 !== 0)
    throw usage(`--health-bake must be whole minutes (e.g. 10m, 1h), found ${flags.healthBake}`);
  const shared = {
    ...(bake === undefined ? {} : { minBakeSeconds: bake }),
    ...(healthBake === undefined || healthBake === 0 ? {} : { bakeMinutes: healthBake / 60 }),
    ...optional(
      'minCommitted',
      parseNumber('--min-committed', flags.minCommitted, { integer: true, min: 0 }),
    ),
    ...optional('maxFailurePercent', parseNumber('--max-failure', flags.maxFailure, { min: 0, max: 100 })),
    ...optional('minSample', parseNumber('--min-sample', flags.minSample, { integer: true, min: 1 })),
    ...optional(
      'maxConcurrent',
      parseNumber('--max-concurrent', flags.maxConcurrent, { integer: true, min: 1 }),
    ),
    ...optional('minDevices', parseNumber('--min-devices', flags.minDevices, { integer: true, min: 0 })),
  };
  return percents.map((percent) => ({ percent, ...shared }));
}

const optional = <K extends string>(key: K, value: number | undefined) =>
  (value === undefined ? {} : { [key]: value }) as Partial<Record<K, number>>;

/** "02:00-04:00" → start and end. */
export function parseWindow(text: string, tz: string, days: string | undefined): MaintenanceWindowView {
  const m = /^(\d{2}:\d{2})-(\d{2}:\d{2})$/.exec(text.trim());
  if (m === null || m[1] === undefined || m[2] === undefined)
    throw usage(`--window "${text}" is not HH:MM-HH:MM (e.g. 02:00-04:00)`);
  const timezone = tz === 'utc' || tz === 'device-local' ? tz : undefined;
  if (timezone === undefined) throw usage(`--window-tz must be utc or device-local, found "${tz}"`);
  return {
    timezone,
    start: m[1],
    end: m[2],
    ...(days === undefined
      ? {}
      : {
          days: days
            .split(',')
            .map((d) => parseNumber('--window-days', d, { integer: true, min: 0, max: 6 }) ?? 0),
        }),
  };
}

async function findRelease(api: AdminConnection, product: string, version: string): Promise<ReleaseView> {
  let cursor: string | null = null;
  for (let page = 0; page < 100; page++) {
    const query = { product, limit: '1000', ...(cursor === null ? {} : { cursor }) };
    const res: ReleasePageView = await readJson(
      await api.api().v1.admin.releases.$get({ query }),
      ReleasePage,
    );
    const found = res.items.find((r) => r.version === version);
    if (found !== undefined) return found;
    cursor = res.nextCursor;
    if (cursor === null) break;
  }
  throw new AdminApiError(
    'ERR_RELEASE_NOT_FOUND',
    `no release ${version} of product ${product} on ${api.serverUrl.origin}; push it first`,
  );
}

// ---- rendering ----

/** formatTable's columns without its final newline (these tables are embedded in a report). */
const table = (head: string[], rows: string[][]): string => formatTable(head, rows).slice(0, -1);

const pct = (n: number) => `${Number.isInteger(n) ? n : Number(n.toFixed(2))}%`;

export function formatSeconds(s: number): string {
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d${String(Math.floor((s % 86_400) / 3600)).padStart(2, '0')}h`;
}

function stateLabel(r: Pick<RolloutView, 'state' | 'currentStage' | 'stages'>): string {
  const stage = r.stages[r.currentStage];
  const at = `stage ${r.currentStage + 1}/${r.stages.length}${stage === undefined ? '' : ` (${pct(stage.percent)})`}`;
  if (r.state === 'active') return `running ${at}`;
  if (r.state === 'paused') return `paused at ${at}`;
  return r.state;
}

export function renderList(items: RolloutView[]): string {
  if (items.length === 0) return 'no rollouts';
  return table(
    ['ID', 'NAME', 'VERSION', 'KIND', 'STATE', 'STARTED'],
    items.map((r) => [r.id, r.name, r.releaseVersion, r.kind, stateLabel(r), r.startedAt ?? '-']),
  );
}

const installing = (c: Counts) =>
  (c['downloading'] ?? 0) + (c['installing'] ?? 0) + (c['installed'] ?? 0) + (c['rebooting'] ?? 0);

export function renderStatus(doc: RolloutStatusDocument): string {
  const { rollout: r, status: s } = doc;
  const lines = [
    `rollout  ${r.id}  ${r.name}`,
    `release  ${r.releaseVersion} (${r.product})${r.kind === 'rollback' ? '  [rollback]' : ''}${r.allowDowngrade ? '  downgrade allowed' : ''}`,
    `policy   ${renderPolicies(r)}`,
    `state    ${stateLabel(r)}${s.stateReason === null ? '' : `: ${s.stateReason}`}${s.timeInStageSeconds === null ? '' : `  (${formatSeconds(s.timeInStageSeconds)} in stage)`}`,
    '',
    table(
      [
        'STAGE',
        'PERCENT',
        'BAKE',
        'TARGETED',
        'OFFERED',
        'INSTALLING',
        'COMMITTED',
        'FAILED',
        'FAIL%',
        'MAX%',
      ],
      s.stages.map((st) => [
        `${st.phase === 'current' ? '>' : st.phase === 'done' ? '✓' : ' '} ${st.stage + 1}`,
        pct(st.percent),
        formatSeconds(st.minBakeSeconds),
        String(st.targeted),
        String(st.counts['offered'] ?? 0),
        String(installing(st.counts)),
        String(st.committed),
        String(st.failures),
        pct(st.failurePercent),
        pct(st.maxFailurePercent),
      ]),
    ),
    '',
    `overall  ${s.overall.targeted} targeted, ${s.overall.committed} committed, ${s.overall.failures} failed or rolled back (${pct(s.overall.failurePercent)}), ${s.overall.inFlight} in progress, ${s.overall.notOffered} not offered yet`,
    `next     ${s.next.action === 'none' ? '' : `${s.next.action}: `}${s.next.reason}${s.next.notBefore === null ? '' : ` (not before ${s.next.notBefore})`}`,
  ];
  const deviceErrors = s.overall.counts['device-error'] ?? 0;
  if (deviceErrors > 0)
    lines.push(
      `devices  ${deviceErrors} stopped on an error of their own (device-error: not a release failure; offered again once fixed, see abota device list)`,
    );
  return lines.join('\n');
}

const n = (value: number) => value.toLocaleString('en-US');

/** `create --dry-run`: the funnel, then one row per stage. */
export function renderPreview(p: RolloutPreviewDocument): string {
  const d = p.devices;
  const left = [
    d.incompatible > 0 ? `${n(d.incompatible)} with hardware the release is not for` : '',
    d.upToDate > 0 ? `${n(d.upToDate)} already on ${p.releaseVersion} or newer` : '',
  ].filter((s) => s !== '');
  const w = p.maintenanceWindow;
  const lines = [
    `dry run  ${p.product} ${p.releaseVersion}: nothing was created`,
    `devices  ${n(d.product)} live in ${p.product}, ${n(d.selected)} selected, ${n(d.eligible)} to update${left.length > 0 ? ` (left out: ${left.join(', ')})` : ''}`,
    '',
    table(
      [
        'STAGE',
        'PERCENT',
        'MIN DEVICES',
        'NEW DEVICES',
        'REACHED',
        ...(w === null ? [] : ['IN WINDOW NOW']),
        'MAX AT ONCE',
      ],
      p.stages.map((s) => [
        String(s.stage + 1),
        pct(s.percent),
        n(s.minDevices),
        n(s.targeted),
        n(s.cumulative),
        ...(w === null ? [] : [n(s.inWindowNow)]),
        s.maxConcurrent === null ? '-' : n(s.maxConcurrent),
      ]),
    ),
  ];
  if (d.beyondLastStage > 0)
    lines.push('', `${n(d.beyondLastStage)} device(s) to update are beyond the last stage (below 100 %)`);
  if (w !== null)
    lines.push(
      '',
      `window   ${w.start}-${w.end} ${w.timezone}${w.days === undefined ? '' : ` days ${w.days.join(',')}`}: IN WINDOW NOW is who may start at ${p.at}`,
    );
  const versions = p.versions.filter((v) => v.selected > 0);
  if (versions.length > 0)
    lines.push(
      '',
      table(
        ['RUNNING', 'SELECTED', 'TO UPDATE'],
        versions.map((v) => [v.version ?? '(not reported)', n(v.selected), n(v.eligible)]),
      ),
    );
  lines.push('', `create exactly these cohorts with the same flags and --id ${p.rolloutId}`);
  return lines.join('\n');
}

function renderOne(r: RolloutView): string {
  return `${r.id}  ${r.name}  ${r.releaseVersion}  ${stateLabel(r)}${r.stateReason === null ? '' : `: ${r.stateReason}`}`;
}

/** The safety policies of a rollout in one line: automatic rollback, late joiners, approval. */
export function renderPolicies(r: Pick<RolloutView, 'autoRollback' | 'lateJoiners' | 'approval'>): string {
  const approval = !r.approval.required
    ? 'not required'
    : r.approval.approvedBy === null
      ? 'AWAITING (another operator or admin key: abota rollout approve)'
      : `by ${r.approval.approvedBy} at ${r.approval.approvedAt}`;
  return [
    `auto-rollback ${r.autoRollback === null ? 'off' : `to ${r.autoRollback.toVersion}`}`,
    `late joiners ${r.lateJoiners ? 'join' : 'frozen at start'}`,
    `approval ${approval}`,
  ].join('; ');
}

const TERMINAL = new Set(['completed', 'aborted']);

async function watchStatus(
  api: AdminConnection,
  id: string,
  opts: { json: boolean; intervalSeconds: number; count: number | undefined },
): Promise<void> {
  const tty = process.stdout.isTTY === true && !opts.json;
  for (let n = 1; ; n++) {
    const doc = await rolloutStatus(api, id);
    if (opts.json) process.stdout.write(`${JSON.stringify(doc)}\n`);
    else {
      // On a terminal: clear and redraw in place; in a pipe or log: one block per update.
      process.stdout.write(
        `${tty ? '\x1b[H\x1b[2J' : n > 1 ? '\n' : ''}${renderStatus(doc)}\n${tty ? `\nrefreshing every ${opts.intervalSeconds}s at ${doc.at} — Ctrl-C to stop\n` : ''}`,
      );
    }
    if (TERMINAL.has(doc.rollout.state) || (opts.count !== undefined && n >= opts.count)) return;
    await new Promise((r) => setTimeout(r, opts.intervalSeconds * 1000));
  }
}

/** `create` */
export async function create(flags: CreateFlags): Promise<void> {
  let releaseId = flags.release;
  if ((releaseId === undefined) === (flags.product === undefined || flags.version === undefined))
    throw usage('give --release <id>, or --product <id> with --version <version>');
  const api = client(flags);
  if (releaseId === undefined)
    releaseId = (await findRelease(api, flags.product ?? '', flags.version ?? '')).id;
  const selector = {
    ...(flags.tag.length > 0 ? { tags: flags.tag } : {}),
    ...(flags.group.length > 0 ? { groups: flags.group } : {}),
    ...(flags.hardware.length > 0 ? { hardware: flags.hardware } : {}),
    ...(flags.device.length > 0 ? { deviceIds: flags.device } : {}),
    ...(flags.currentVersion === undefined ? {} : { currentVersion: flags.currentVersion }),
  };
  const json = {
    ...(flags.id === undefined ? {} : { id: flags.id }),
    releaseId,
    ...(flags.name === undefined ? {} : { name: flags.name }),
    selector,
    stages: buildStages(flags),
    ...(flags.window === undefined
      ? {}
      : { maintenanceWindow: parseWindow(flags.window, flags.windowTz, flags.windowDays) }),
    ...(flags.allowDowngrade === true ? { allowDowngrade: true } : {}),
    ...(flags.draft === true ? { start: false } : {}),
    ...(flags.autoRollback === undefined || flags.autoRollback === false
      ? {}
      : { autoRollback: typeof flags.autoRollback === 'string' ? { toVersion: flags.autoRollback } : {} }),
    ...(flags.lateJoiners === false ? { lateJoiners: false } : {}),
  };
  if (flags.dryRun === true) {
    const preview = await readJson(
      await api.api().v1.admin.rollouts.preview.$post({ json }),
      (s) => s.RolloutPreviewSchema,
    );
    if (flags.json === true) printJson(preview);
    else process.stdout.write(`${renderPreview(preview)}\n`);
    return;
  }
  const created = await readJson(await api.api().v1.admin.rollouts.$post({ json }), (s) => s.RolloutSchema);
  if (flags.json === true) printJson(created);
  else process.stdout.write(`created ${renderOne(created)}\n`);
}

/** `list` */
export async function list(flags: CommonFlags & { product?: string; state?: string }): Promise<void> {
  const { ROLLOUT_LIFECYCLE } = await apiSchemas();
  const state = flags.state === undefined ? undefined : ROLLOUT_LIFECYCLE.find((st) => st === flags.state);
  if (flags.state !== undefined && state === undefined)
    throw usage(`--state "${flags.state}": expected one of ${ROLLOUT_LIFECYCLE.join(', ')}`);
  const api = client(flags);
  const items: RolloutView[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 100; page++) {
    const query = {
      limit: '1000',
      ...(flags.product === undefined ? {} : { product: flags.product }),
      ...(state === undefined ? {} : { state }),
      ...(cursor === null ? {} : { cursor }),
    };
    const res: RolloutPageView = await readJson(
      await api.api().v1.admin.rollouts.$get({ query }),
      RolloutPage,
    );
    items.push(...res.items);
    cursor = res.nextCursor;
    if (cursor === null) break;
  }
  if (flags.json === true) printJson({ items });
  else process.stdout.write(`${renderList(items)}\n`);
}

/** `status` */
export async function status(
  id: string,
  flags: CommonFlags & { watch?: boolean; interval: string; count?: string },
): Promise<void> {
  const api = client(flags);
  if (flags.watch === true) {
    await watchStatus(api, id, {
      json: flags.json === true,
      intervalSeconds: parseNumber('--interval', flags.interval, { min: 0.1, max: 3600 }) ?? 2,
      count: parseNumber('--count', flags.count, { integer: true, min: 1 }),
    });
    return;
  }
  const doc = await rolloutStatus(api, id);
  if (flags.json === true) printJson(doc);
  else process.stdout.write(`${renderStatus(doc)}\n`);
}

/** `start`, `pause`, `resume`, `abort`: one state change of a rollout. */
export async function transition(
  action: 'start' | 'pause' | 'resume' | 'abort',
  id: string,
  flags: CommonFlags & { reason?: string },
): Promise<void> {
  const api = client(flags);
  const res = await api.api().v1.admin.rollouts[':id'][action].$post({
    param: { id },
    json: flags.reason === undefined ? {} : { reason: flags.reason },
  });
  const updated = await readJson(res, (s) => s.RolloutSchema);
  if (flags.json === true) printJson(updated);
  else process.stdout.write(`${renderOne(updated)}\n`);
}

/** `advance` */
export async function advance(id: string, flags: CommonFlags & { reason?: string }): Promise<void> {
  const api = client(flags);
  const res = await api.api().v1.admin.rollouts[':id'].advance.$post({
    param: { id },
    json: flags.reason === undefined ? {} : { reason: flags.reason },
  });
  const updated = await readJson(res, (s) => s.RolloutSchema);
  if (flags.json === true) printJson(updated);
  else process.stdout.write(`${renderOne(updated)}\n`);
}

/** `approve`: four-eyes approval by a key other than the creator's. */
export async function approve(id: string, flags: CommonFlags & { comment?: string }): Promise<void> {
  const api = client(flags);
  const res = await api.api().v1.admin.rollouts[':id'].approve.$post({
    param: { id },
    json: flags.comment === undefined ? {} : { comment: flags.comment },
  });
  const updated = await readJson(res, (s) => s.RolloutSchema);
  if (flags.json === true) printJson(updated);
  else process.stdout.write(`approved ${renderOne(updated)}\n`);
}

/** `rollback` */
export async function rollback(
  id: string,
  flags: CommonFlags & { toRelease?: string; toVersion?: string; stages: string; bake?: string },
): Promise<void> {
  if ((flags.toRelease === undefined) === (flags.toVersion === undefined))
    throw usage('give exactly one of --to-release <id> or --to-version <version>');
  const api = client(flags);
  const json = {
    ...(flags.toRelease === undefined ? {} : { releaseId: flags.toRelease }),
    ...(flags.toVersion === undefined ? {} : { version: flags.toVersion }),
    stages: buildStages({
      stages: flags.stages,
      ...(flags.bake === undefined ? {} : { bake: flags.bake }),
    }),
  };
  const res = await api.api().v1.admin.rollouts[':id'].rollback.$post({ param: { id }, json });
  const created = await readJson(res, (s) => s.RolloutSchema);
  if (flags.json === true) printJson(created);
  else process.stdout.write(`rolling back with ${renderOne(created)}\n`);
}
