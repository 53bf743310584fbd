'use strict';
// The dashboard page: the runs (polled every 5 s), one server-sent event stream per ticked run
// (every record of its metrics.jsonl, then each new one), and a uPlot chart of one metric against
// the step (or examples, or iteration) with TensorBoard's debiased smoothing and log axes.

const token = new URLSearchParams(location.search).get('token');
const COLORS = ['#1f77b4', '#d62728'];
const state = {
  runs: [], selected: [], records: {}, streams: {}, metric: null,
  chart: null, chartKey: '', dirty: true, pictures: '',
  userChose: false,  // until the user ticks a run, the page follows the newest running one
};

// Writes text into an element only when it changes: an unchanged page is not laid out or painted again.
function setText(id, text) {
  const el = document.getElementById(id);
  if (el.textContent !== text) el.textContent = text;
}

function api(path, params) {
  const q = new URLSearchParams(params || {});
  if (token) q.set('token', token);
  return path + '?' + q.toString();
}

function xKey(records) {
  for (const k of ['step', 'examples', 'iteration']) {
    if (records.some(r => typeof r[k] === 'number')) return k;
  }
  return null;  // the record's position
}

function numericKeys() {
  const keys = new Set();
  for (const name of state.selected) {
    for (const r of state.records[name] || []) {
      for (const [k, v] of Object.entries(r)) if (typeof v === 'number') keys.add(k);
    }
  }
  return [...keys].sort();
}

// TensorBoard's smoothing: an exponential moving average, debiased for its first points.
function smooth(ys, w) {
  if (w <= 0) return ys;
  let last = 0, n = 0;
  return ys.map(y => {
    if (y === null || !isFinite(y)) return null;
    last = last * w + (1 - w) * y;
    n += 1;
    return last / (1 - Math.pow(w, n));
  });
}

// One run's points of the metric: [xs, ys] sorted by x, one point per x (the last).
function series(name, metric, logx, logy) {
  const recs = state.records[name] || [];
  const key = xKey(recs);
  const byX = new Map();
  recs.forEach((r, i) => {
    const v = r[metric];
    if (typeof v !== 'number') return;
    const x = key === null ? i + 1 : r[key];
    if (typeof x !== 'number' || (logx && x <= 0)) return;
    byX.set(x, logy && v <= 0 ? null : v);
  });
  const xs = [...byX.keys()].sort((a, b) => a - b);
  return { key: key || 'record', xs, ys: xs.map(x => byX.get(x)) };
}

function updateMetricChoices() {
  const select = document.getElementById('metric');
  const keys = numericKeys().filter(k => !['step', 'examples', 'iteration', 'seconds'].includes(k));
  const have = [...select.options].map(o => o.value);
  if (keys.join() !== have.join()) {
    select.innerHTML = '';
    for (const k of keys) select.add(new Option(k, k));
  }
  if (!keys.includes(state.metric)) {
    state.metric = ['train_loss', 'loss', 'test_loss'].find(k => keys.includes(k)) || keys[0] || null;
  }
  if (state.metric !== null) select.value = state.metric;
}

function redraw() {
  state.dirty = false;
  updateMetricChoices();
  const metric = state.metric;
  const w = parseFloat(document.getElementById('smooth').value);
  const logx = document.getElementById('logx').checked;
  const logy = document.getElementById('logy').checked;
  const runs = state.selected.slice(0, 2);
  const all = runs.map(n => series(n, metric, logx, logy));
  // Live numbers: the first ticked run, raw (not smoothed) values.
  const first = all[0];
  setText('live-run', runs[0] || '');
  setText('metric-name', metric || '');
  setText('x-name', first ? first.key : 'step');
  setText('points', first ? String(first.ys.filter(y => y !== null).length) : '0');
  setText('last-x', first && first.xs.length ? String(first.xs[first.xs.length - 1]) : '');
  setText('last-value', first && first.ys.length && first.ys[first.ys.length - 1] !== null
      ? String(first.ys[first.ys.length - 1]) : '');
  const chartDiv = document.getElementById('chart');
  if (!metric || runs.length === 0) {
    if (state.chart) { state.chart.destroy(); state.chart = null; state.chartKey = ''; }
    return;
  }
  const data = all.length === 1
      ? [first.xs, smooth(first.ys, w)]
      : uPlot.join(all.map(s => [s.xs, smooth(s.ys, w)]));
  const key = JSON.stringify([runs, metric, logx, logy, first.key]);
  if (state.chart && state.chartKey === key) {
    state.chart.setData(data);
    return;
  }
  if (state.chart) state.chart.destroy();
  state.chartKey = key;
  state.chart = new uPlot({
    width: Math.max(480, Math.min(1100, window.innerWidth - 80)),
    height: 360,
    scales: { x: { time: false, distr: logx ? 3 : 1 }, y: { distr: logy ? 3 : 1 } },
    axes: [{ label: first.key }, { label: metric }],
    series: [{ label: first.key }].concat(runs.map((n, i) => ({
      label: n, stroke: COLORS[i], width: 2, spanGaps: true,
    }))),
  }, data, chartDiv);
}

function openStream(name) {
  const es = new EventSource(api('api/stream', { run: name }));
  // A reconnected stream starts again from the first record.
  es.onopen = () => { state.records[name] = []; state.dirty = true; };
  es.onmessage = e => {
    try {
      (state.records[name] = state.records[name] || []).push(JSON.parse(e.data));
      state.dirty = true;
    } catch (err) { /* a line that is not JSON is not a record */ }
  };
  state.streams[name] = es;
}

function select(names) {
  for (const [n, es] of Object.entries(state.streams)) {
    if (!names.includes(n)) { es.close(); delete state.streams[n]; delete state.records[n]; }
  }
  for (const n of names) if (!state.streams[n]) openStream(n);
  const firstChanged = state.selected[0] !== names[0];
  state.selected = names;
  state.dirty = true;
  showRunDetails();
  if (firstChanged) pollCluster();
}

function showRunDetails() {
  const run = state.runs.find(r => r.name === state.selected[0]);
  setText('config', run && run.config ? run.config : '(no checkpoint yet)');
  setText('report', run && run.report ? run.report : '');
  document.getElementById('report-section').hidden = !(run && run.report);
  const pics = run ? run.pictures : [];
  const key = (run ? run.name : '') + '|' + pics.join();
  if (key === state.pictures) return;
  state.pictures = key;
  const div = document.getElementById('pictures');
  div.innerHTML = '';
  for (const p of pics) {
    const fig = document.createElement('figure');
    const img = document.createElement('img');
    img.src = api('api/file', { run: run.name, name: p });
    img.alt = p;
    const cap = document.createElement('figcaption');
    cap.textContent = p;
    fig.append(img, cap);
    div.append(fig);
  }
}

function renderRuns() {
  const body = document.querySelector('#runs tbody');
  const key = JSON.stringify([state.selected, state.runs.map(r => [r.name, r.status, r.records, r.last.step, r.last.examples, r.last.train_loss])]);
  if (body.dataset.key === key) return;
  body.dataset.key = key;
  body.innerHTML = '';
  for (const r of state.runs) {
    const tr = document.createElement('tr');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = state.selected.includes(r.name);
    box.dataset.run = r.name;
    box.addEventListener('change', () => {
      state.userChose = true;
      let names = state.selected.filter(n => n !== r.name);
      if (box.checked) names = names.concat([r.name]).slice(-2);
      select(names);
      renderRuns();
    });
    const cells = [r.name, r.status, String(r.records),
                   r.last.step !== undefined ? String(r.last.step) : (r.last.examples !== undefined ? String(r.last.examples) : ''),
                   r.last.train_loss !== undefined ? Number(r.last.train_loss).toPrecision(5) : ''];
    const td0 = document.createElement('td');
    td0.append(box);
    tr.append(td0);
    cells.forEach((c, i) => {
      const td = document.createElement('td');
      td.textContent = c;
      if (i === 1 && c === 'running') td.className = 'running';
      tr.append(td);
    });
    body.append(tr);
  }
}

function fillTable(id, rows) {
  const body = document.querySelector('#' + id + ' tbody');
  const key = JSON.stringify(rows);
  if (body.dataset.key === key) return;
  body.dataset.key = key;
  body.innerHTML = '';
  for (const cells of rows) {
    const tr = document.createElement('tr');
    for (const c of cells) {
      const td = document.createElement('td');
      td.textContent = c;
      if (c === 'down' || c === 'failed') td.className = c;
      tr.append(td);
    }
    body.append(tr);
  }
}

// Replicas and shards of the first ticked run, from its cluster.jsonl (Downpour runs only).
async function pollCluster() {
  const run = state.selected[0];
  const section = document.getElementById('cluster');
  if (!run) { section.hidden = true; return; }
  let recs = [];
  try {
    const res = await fetch(api('api/cluster', { run }), { cache: 'no-store' });
    if (res.ok) recs = await res.json();
  } catch (err) { recs = []; }
  if (!Array.isArray(recs) || recs.length === 0) { section.hidden = true; return; }
  section.hidden = false;
  const last = recs[recs.length - 1];
  const prev = recs.length > 1 ? recs[recs.length - 2] : null;
  const dt = prev ? last.seconds - prev.seconds : 0;
  const rate = (now, before) => (dt > 0 && before !== undefined ? ((now - before) / dt).toFixed(1) : '');
  // Downpour's replicas count steps; Sandblaster's workers count the portions they finished.
  setText('replica-unit', last.unit || 'steps');
  setText('replica-rate', (last.unit || 'steps') + '/s');
  fillTable('replicas', last.replicas.map((r, i) => [
    String(r.replica), r.state, String(r.steps), rate(r.steps, prev && prev.replicas[i] ? prev.replicas[i].steps : undefined),
    String(r.restarts)]));
  fillTable('shards', last.shards.map((sh, i) => {
    // Restarts: changes of the shard's incarnation; checkpoint age: since its durable version last moved.
    let restarts = 0, movedAt = recs[0].seconds;
    for (let k = 1; k < recs.length; k++) {
      const a = recs[k - 1].shards[i], b = recs[k].shards[i];
      if (!a || !b) continue;
      if (a.incarnation !== undefined && b.incarnation !== undefined && a.incarnation !== b.incarnation) restarts++;
      if (a.durable !== b.durable) movedAt = recs[k].seconds;
    }
    const p = prev ? prev.shards[i] : undefined;
    const known = sh.updates !== undefined;
    return [String(sh.group), String(sh.shard), sh.up ? 'up' : 'down', known ? String(sh.updates) : '',
            known && p ? rate(sh.updates, p.updates) : '', known ? String(sh.updates - sh.durable) : '',
            (last.seconds - movedAt).toFixed(0), String(restarts)];
  }));
  const div = document.getElementById('staleness');
  const key = JSON.stringify(last.staleness || null);
  if (div.dataset.key === key) return;
  div.dataset.key = key;
  div.innerHTML = '';
  if (!Array.isArray(last.staleness)) return;  // a launch's record: replicas are other processes
  const total = last.staleness.reduce((a, b) => a + b, 0) || 1;
  last.staleness.forEach((count, i) => {
    const row = document.createElement('div');
    row.className = 'bar';
    const label = document.createElement('span');
    label.textContent = last.staleness_buckets[i];
    const fill = document.createElement('span');
    fill.className = 'fill';
    fill.style.width = Math.round(400 * count / total) + 'px';
    const n = document.createElement('span');
    n.textContent = String(count);
    n.dataset.bucket = last.staleness_buckets[i];
    row.append(label, fill, n);
    div.append(row);
  });
}

async function pollRuns() {
  try {
    const res = await fetch(api('api/runs'), { cache: 'no-store' });
    if (!res.ok) throw new Error('runs: HTTP ' + res.status);
    const body = await res.json();
    state.runs = body.runs;
    setText('runs-dir', body.runs_dir);
    setText('status-line', state.runs.some(r => r.status === 'running') ? 'live' : 'no run is running');
    if (!state.userChose && state.runs.length > 0) {
      const running = state.runs.filter(r => r.status === 'running');
      running.sort((a, b) => a.seconds_since_update - b.seconds_since_update);
      const follow = running.length > 0 ? running[0] : (state.selected.length === 0 ? state.runs[0] : null);
      if (follow && (state.selected.length !== 1 || state.selected[0] !== follow.name)) select([follow.name]);
    }
    renderRuns();
    showRunDetails();
  } catch (err) {
    setText('status-line', 'server unreachable');
  }
}

document.getElementById('metric').addEventListener('change', e => { state.metric = e.target.value; state.dirty = true; });
document.getElementById('smooth').addEventListener('input', e => {
  document.getElementById('smooth-value').textContent = e.target.value;
  state.dirty = true;
});
for (const id of ['logx', 'logy']) document.getElementById(id).addEventListener('change', () => { state.dirty = true; });
// A page left open beside training should cost it little (bench/dashboard_overhead.py measures
// it): the chart redraws at most every 2 s and only when a record arrived or a control changed
// (the curve and the numbers under it come from the event stream); replicas and shards are
// fetched every 5 s (the engine writes them once a second); the run list every 30 s while a
// followed run is running (as TensorBoard reloads), every 3 s otherwise, so a new run is found
// soon; a hidden tab does nothing until it is shown again (the event stream keeps collecting).
// API answers are never cached: the browser's disk cache was a measurable share of its cost.
function visible() { return !document.hidden; }
function schedulePollRuns() {
  const live = state.selected.length > 0 && state.runs.some(r => r.status === 'running');
  setTimeout(async () => {
    if (visible()) await pollRuns();
    schedulePollRuns();
  }, live ? 30000 : 3000);
}
setInterval(() => { if (visible() && state.dirty) redraw(); }, 2000);
setInterval(() => { if (visible()) pollCluster(); }, 5000);
document.addEventListener('visibilitychange', () => {
  if (!visible()) return;
  pollRuns();
  pollCluster();
  if (state.dirty) redraw();
});
pollRuns().then(schedulePollRuns);
