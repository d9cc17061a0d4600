// abota console, a rollout's page: the failure-rate chart (uPlot, from failure.json) and live
// updates from the rollout's server-sent events (/console/rollouts/:id/events, the API's status
// stream): stage numbers and bars, the overall line and the next action change in place, a point
// is added to the chart; when the state or the stage changes the page reloads, so the actions
// and the timeline are drawn again by the server. The page works without it except the chart
// and the live part.

const fmt = (n) => n.toLocaleString('en-US');
const pct = (n) => `${Number.isInteger(n) ? n : Number(n.toFixed(2))} %`;
const INSTALLING = ['downloading', 'installing', 'installed', 'rebooting'];
const installing = (c) => INSTALLING.reduce((sum, s) => sum + (c[s] || 0), 0);

let chart;
let series;

const TIME_INCREMENTS = [
  1,
  5,
  10,
  15,
  30,
  60,
  300,
  600,
  900,
  1800,
  3600,
  4 * 3600,
  12 * 3600,
  86400,
  7 * 86400,
];

async function drawFailureChart(figure) {
  const res = await fetch(figure.dataset.src, { credentials: 'same-origin' });
  if (!res.ok) throw new Error(`failure rate: HTTP ${res.status}`);
  series = await res.json();
  const width = Math.max(320, figure.clientWidth - 24);
  chart = new window.uPlot(
    {
      width,
      height: 220,
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(10, Math.ceil(max * 1.2))] } },
      // Whole seconds at the finest: a rollout minutes old would otherwise get ":18.500" ticks.
      axes: [
        { incrs: TIME_INCREMENTS },
        { label: '% of outcomes', values: (_u, ticks) => ticks.map((v) => `${v} %`) },
      ],
      series: [
        {},
        { label: 'failure rate', stroke: '#b42318', width: 2, value: (_u, v) => (v == null ? '—' : pct(v)) },
        {
          label: 'stage threshold',
          stroke: '#9a6700',
          width: 1,
          dash: [6, 4],
          paths: window.uPlot.paths.stepped({ align: 1 }),
          value: (_u, v) => (v == null ? '—' : pct(v)),
        },
      ],
    },
    [series.t, series.failurePercent, series.threshold],
    figure,
  );
  figure.dataset.ready = String(series.t.length);
  window.addEventListener('resize', () =>
    chart.setSize({ width: Math.max(320, figure.clientWidth - 24), height: 220 }),
  );
}

function setText(root, selector, text) {
  const el = root.querySelector(selector);
  if (el && el.textContent !== text) el.textContent = text;
}

function updateBar(row, s) {
  const total = Math.max(1, s.targeted);
  let x = 0;
  for (const [k, n] of [
    ['committed', s.committed],
    ['failed', s.failures],
    ['installing', installing(s.counts)],
    ['offered', s.counts.offered || 0],
  ]) {
    const rect = row.querySelector(`[data-bar="${k}"]`);
    const w = (n / total) * 100;
    if (rect) {
      rect.setAttribute('x', x.toFixed(3));
      rect.setAttribute('width', w.toFixed(3));
    }
    x += w;
  }
  const svg = row.querySelector('svg.stage-bar');
  if (svg)
    svg.setAttribute(
      'aria-label',
      `${s.committed} of ${s.targeted} committed, ${s.failures} failed, ${installing(s.counts)} installing`,
    );
}

function applyStatus(page, doc) {
  const st = doc.status;
  if (doc.rollout.state !== page.dataset.state || String(st.currentStage) !== page.dataset.stage) {
    // The actions and the timeline depend on the state: let the server draw them again.
    window.location.reload();
    return;
  }
  for (const s of st.stages) {
    const row = page.querySelector(`tr[data-stage="${s.stage}"]`);
    if (!row) continue;
    setText(row, '[data-k="targeted"]', fmt(s.targeted));
    setText(row, '[data-k="committed"]', fmt(s.committed));
    setText(row, '[data-k="failures"]', fmt(s.failures));
    setText(row, '[data-k="installing"]', fmt(installing(s.counts)));
    setText(row, '[data-k="notOffered"]', fmt(s.notOffered));
    setText(row, '[data-k="failureRate"]', `${pct(s.failurePercent)} / ${pct(s.maxFailurePercent)}`);
    updateBar(row, s);
  }
  const o = st.overall;
  setText(
    page,
    '[data-live="overall"]',
    `${fmt(o.targeted)} devices targeted: ${fmt(o.committed)} committed, ${fmt(o.failures)} failed or rolled back (${pct(o.failurePercent)}), ${fmt(o.inFlight)} in progress, ${fmt(o.notOffered)} not offered yet.`,
  );
  // What each action would do now: its confirmation and the text under its button.
  for (const [action, text] of Object.entries(doc.effects || {})) {
    const form = page.querySelector(`form[data-action-form="${action}"]`);
    if (form) form.dataset.confirm = text;
    setText(page, `#effect-${action}`, text);
  }
  setText(
    page,
    '[data-live="next"]',
    `${st.next.action === 'none' ? '' : `${st.next.action}: `}${st.next.reason}`,
  );
  if (chart && series) {
    const t = Math.floor(Date.parse(doc.at) / 1000);
    const current = st.stages[st.currentStage];
    if (t > series.t[series.t.length - 1]) {
      series.t.push(t);
      series.failurePercent.push(o.failurePercent);
      series.threshold.push(current ? current.maxFailurePercent : 100);
      chart.setData([series.t, series.failurePercent, series.threshold]);
    }
  }
}

function connect(page) {
  const status = page.querySelector('[data-live="status"]');
  let events = 0;
  const source = new EventSource(page.dataset.events);
  source.addEventListener('status', (e) => {
    events++;
    page.dataset.liveEvents = String(events);
    const doc = JSON.parse(e.data);
    const time = new Date(doc.at).toISOString().slice(11, 19);
    if (status) status.textContent = `Live: updated ${time} UTC.`;
    applyStatus(page, doc);
    if (doc.rollout.state === 'completed' || doc.rollout.state === 'aborted') source.close();
  });
  source.addEventListener('error', () => {
    if (status && source.readyState !== EventSource.CLOSED)
      status.textContent = 'Live updates interrupted; reconnecting…';
  });
  window.addEventListener('pagehide', () => source.close());
}

window.addEventListener('DOMContentLoaded', () => {
  const figure = document.getElementById('failure-chart');
  const page = document.querySelector('[data-rollout-page]');
  const ready = figure && window.uPlot ? drawFailureChart(figure) : Promise.resolve();
  ready
    .catch((error) => {
      figure.dataset.ready = 'error';
      const p = document.createElement('p');
      p.className = 'error';
      p.textContent = `The chart could not be drawn: ${error.message}`;
      figure.append(p);
    })
    .finally(() => {
      if (page?.dataset.events) connect(page);
    });
});
