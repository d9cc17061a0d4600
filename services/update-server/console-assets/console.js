// abota console: the little client code there is. Confirms destructive actions (data-confirm on a
// form: the text says what will happen) and draws the fleet's version chart with uPlot (when the
// page links it). Everything works without it except the chart.

document.addEventListener('submit', (event) => {
  const form = event.target;
  const text = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (text && !window.confirm(text)) event.preventDefault();
});

const PALETTE = ['#0b5cad', '#1a7f37', '#b42318', '#9a6700', '#6639ba', '#0f766e', '#c2410c', '#57606a'];

async function drawVersionChart(figure) {
  const res = await fetch(figure.dataset.src, { credentials: 'same-origin' });
  if (!res.ok) throw new Error(`version history: HTTP ${res.status}`);
  const data = await res.json();
  const xs = data.days.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
  const width = Math.max(320, figure.clientWidth - 24);
  const opts = {
    width,
    height: 240,
    scales: { x: { time: true } },
    axes: [{}, { label: 'devices' }],
    series: [{}].concat(
      data.series.map((s, i) => ({
        label: s.version,
        stroke: PALETTE[i % PALETTE.length],
        width: 2,
        points: { show: false },
      })),
    ),
  };
  const plot = new window.uPlot(opts, [xs].concat(data.series.map((s) => s.devices)), figure);
  figure.dataset.ready = String(data.series.length);
  window.addEventListener('resize', () =>
    plot.setSize({ width: Math.max(320, figure.clientWidth - 24), height: 240 }),
  );
}

window.addEventListener('DOMContentLoaded', () => {
  const figure = document.getElementById('version-chart');
  if (figure && window.uPlot) {
    drawVersionChart(figure).catch((error) => {
      figure.dataset.ready = 'error';
      const p = document.createElement('p');
      p.className = 'error';
      p.textContent = `The chart could not be drawn: ${error.message}`;
      figure.append(p);
    });
  }
});
