// The live page: one HTML document with its own script and styles (no CDN: a bench has no
// internet).  It listens to /events (server-sent events: "status" several times a second,
// "history" when the event log or delivery history changes) and redraws in place; charts
// are inline SVG drawn by the script.
#include "dashboard/pages.hpp"

namespace thecal::dashboard {

const char* live_page_html() {
  return R"HTML(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>thecal — live</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/style.css">
</head><body>
<header><h1>thecal</h1><nav><a href="/">live</a> <a href="/preview">preview</a> <a href="/report">report</a></nav>
<span id="link" class="muted">connecting…</span></header>
<div id="banner" class="banner hidden"></div>
<main>
<section class="card" id="state-card"><h2>State</h2>
  <div class="big" id="state">—</div>
  <table class="kv">
   <tr><th>Phase</th><td id="phase">—</td></tr>
   <tr><th>Drug</th><td id="drug">—</td></tr>
   <tr><th>Basal rate</th><td id="basal">—</td></tr>
   <tr><th>Catheter</th><td id="primed">—</td></tr>
   <tr><th>Bolus</th><td id="bolus">—</td></tr>
   <tr><th>Patient boluses (24 h)</th><td id="pboluses">—</td></tr>
   <tr><th>Next patient bolus</th><td id="nextbolus">—</td></tr>
   <tr><th>Trial ends</th><td id="trialends">—</td></tr>
   <tr><th>Battery</th><td id="battery">—</td></tr>
   <tr><th>Pump clock</th><td id="pumpclock">—</td></tr>
  </table></section>
<section class="card" id="alarm-card"><h2>Alarms</h2><ul id="alarms" class="alarms"><li class="muted">none</li></ul></section>
<section class="card" id="drugs-card"><h2>Rolling 24 h against the daily limit</h2><div id="drugs"></div></section>
<section class="card" id="reservoir-card"><h2>Reservoir</h2><div id="reservoir"></div>
  <table class="kv"><tr><th>Refill due</th><td id="refilldue">—</td></tr>
  <tr><th>Last refill accuracy</th><td id="accuracy">—</td></tr>
  <tr><th>Solution expires</th><td id="expires">—</td></tr></table></section>
<section class="card wide"><h2>Delivered per hour (last 48 h)</h2><div id="hourly" class="chart"></div></section>
<section class="card wide"><h2>Delivered per day (last 14 days)</h2><div id="daily" class="chart"></div></section>
<section class="card wide"><h2>Dosing loop wake-up latency</h2><div id="latency-figures"></div><div id="latency" class="chart"></div></section>
<section class="card wide"><h2>Event log</h2><table class="events"><thead><tr><th>time</th><th>type</th><th>who</th><th>detail</th></tr></thead><tbody id="events"></tbody></table></section>
</main>
<script src="/live.js"></script>
</body></html>
)HTML";
}

const char* style_css() {
  return R"CSS(
body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2430}
header{display:flex;align-items:baseline;gap:1.5em;padding:.6em 1.2em;background:#1d2430;color:#fff}
header h1{margin:0;font-size:1.3em} header a{color:#9cc3ff;margin-right:.8em}
.muted{color:#7a8594}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1em;padding:1em}
.card{background:#fff;border-radius:6px;padding:.8em 1em;box-shadow:0 1px 2px #0002}
.card.wide{grid-column:1/-1} .card h2{font-size:1em;margin:.1em 0 .6em;color:#445}
.big{font-size:2em;font-weight:600}
.kv th{text-align:left;font-weight:normal;color:#667;padding-right:1em}
.banner{padding:.8em 1.2em;font-weight:600;background:#8a8f98;color:#fff}
.banner.alarm-high{background:#c0162b} .hidden{display:none}
main.stale{opacity:.55}
.alarms{list-style:none;padding:0;margin:0} .alarms li{padding:.4em .6em;margin:.2em 0;border-radius:4px}
.alarm.high{background:#c0162b;color:#fff} .alarm.medium{background:#f0a400} .alarm.low{background:#ffe680}
body.alarm-high #state-card{outline:4px solid #c0162b}
.bar{height:1.1em;background:#e3e6ea;border-radius:3px;position:relative;margin:.2em 0 .6em}
.bar>div{height:100%;background:#2e7dd7;border-radius:3px} .bar.over>div{background:#c0162b}
.chart svg{width:100%;height:180px} .chart text{font-size:10px;fill:#556}
table.events{width:100%;border-collapse:collapse;font-size:.9em} table.events td{border-top:1px solid #eee;padding:.15em .4em;vertical-align:top}
@media print{header nav,#link{display:none}}
)CSS";
}

const char* live_js() {
  return R"JS('use strict';
const $ = (id) => document.getElementById(id);
let status = null, history = null, linkUp = false;
const shownAt = {};   // alarm key -> Date.now() when the page first showed it
function fmtTime(us) { if (!us) return '—'; const d = new Date(us / 1000); return d.toISOString().replace('T', ' ').slice(0, 19) + ' UTC'; }
function num(x, d) { return (x === null || x === undefined) ? '—' : Number(x).toFixed(d); }
function esc(s) { return String(s).replace(/[&<>"]/g, (c) => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c])); }
function barChart(el, buckets, unitLabel, labelFn) {
  const W = 800, H = 180, L = 46, B = 20;
  const max = Math.max(1e-9, ...buckets.map((b) => b[1]));
  const w = (W - L) / Math.max(1, buckets.length);
  let s = `<svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" role="img">`;
  s += `<text x="0" y="10">${num(max, 2)} ${unitLabel}</text><text x="0" y="${H - B}">0</text>`;
  buckets.forEach((b, i) => {
    const h = (H - B - 12) * b[1] / max;
    s += `<rect class="bucket" data-start="${b[0]}" data-mcg="${b[1]}" x="${L + i * w + 1}" y="${H - B - h}" width="${Math.max(1, w - 2)}" height="${h}" fill="#2e7dd7"><title>${labelFn(b[0])}: ${num(b[1], 3)} ${unitLabel}, ${num(b[2], 2)} µL</title></rect>`;
    if (buckets.length <= 16 || i % Math.ceil(buckets.length / 12) === 0) s += `<text x="${L + i * w}" y="${H - 5}">${labelFn(b[0])}</text>`;
  });
  el.innerHTML = s + '</svg>';
}
function latencyChart(el, bins) {
  // Bins of 1 µs (64 µs above 4 ms) gathered into power-of-two microsecond bands.
  const bands = new Map();
  let total = 0;
  for (const [edge, count] of bins) { const us = Math.max(1, edge / 1000); const k = Math.floor(Math.log2(us)); bands.set(k, (bands.get(k) || 0) + count); total += count; }
  const keys = [...bands.keys()].sort((a, b) => a - b);
  if (!keys.length) { el.innerHTML = '<p class="muted">no cycles yet</p>'; return; }
  const W = 800, H = 180, L = 46, B = 20, w = (W - L) / keys.length;
  const maxLog = Math.log10(Math.max(...bands.values()) + 1);
  let s = `<svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" role="img"><text x="0" y="10">cycles (log)</text>`;
  keys.forEach((k, i) => {
    const c = bands.get(k), h = (H - B - 12) * Math.log10(c + 1) / maxLog;
    s += `<rect x="${L + i * w + 1}" y="${H - B - h}" width="${Math.max(1, w - 2)}" height="${h}" fill="#6a51a3"><title>${2 ** k}–${2 ** (k + 1)} µs: ${c} of ${total}</title></rect>`;
    s += `<text x="${L + i * w}" y="${H - 5}">${2 ** k} µs</text>`;
  });
  el.innerHTML = s + '</svg>';
}
function renderStatus() {
  const s = status;
  const banner = $('banner');
  document.body.classList.remove('alarm-high');
  if (!linkUp) { banner.textContent = 'dashboard not reachable (reconnecting…)'; banner.className = 'banner'; }
  else if (!s.reachable) { banner.textContent = 'pump not reachable — ' + (s.error || '') + ' (the page keeps trying)'; banner.className = 'banner'; }
  else banner.className = 'banner hidden';
  document.body.dataset.reachable = (linkUp && s.reachable) ? 'yes' : 'no';
  if (!s.pump) return;
  const p = s.pump;
  $('state').textContent = p.State; document.body.dataset.state = p.State;
  $('phase').textContent = p.Phase || '(no prescription)';
  $('drug').textContent = p.Drug ? `${p.Drug}, ${num(p.ConcentrationMcgPerMl, 1)} mcg/mL` : '—';
  $('basal').textContent = `${num(p.BasalRateMcgPerDay, 2)} mcg/day`;
  $('primed').textContent = p.CatheterPrimed ? 'primed' : 'not primed';
  $('bolus').textContent = p.BolusActive ? 'bolus running' : 'none';
  $('pboluses').textContent = p.PatientBolusesToday;
  $('nextbolus').textContent = p.NextPatientBolusUsec ? fmtTime(p.NextPatientBolusUsec) : 'now';
  $('trialends').textContent = p.TrialEndsUsec ? fmtTime(p.TrialEndsUsec) : '—';
  $('battery').textContent = `${num(p.BatteryPercent, 1)} %`;
  $('pumpclock').textContent = s.diagnostics ? fmtTime(s.diagnostics.WallClockUsec) + (s.simulator ? ` (simulated, ×${num(s.simulator.TimeScale, 0)})` : '') : '—';
  // Alarms, highest first.
  const rank = { high: 0, medium: 1, low: 2 };
  const alarms = (p.ActiveAlarms || []).slice().sort((a, b) => rank[a[1]] - rank[b[1]]);
  const now = Date.now();
  $('alarms').innerHTML = alarms.length ? alarms.map((a) => {
    const key = a[0] + '@' + a[3];
    if (!(key in shownAt)) shownAt[key] = now;
    return `<li class="alarm ${esc(a[1])}" data-code="${esc(a[0])}" data-priority="${esc(a[1])}" data-shown-ms="${shownAt[key]}"><b>${esc(a[1]).toUpperCase()}</b> ${esc(a[0])}: ${esc(a[2])} <span class="muted">since ${fmtTime(a[3])}</span></li>`;
  }).join('') : '<li class="muted">none</li>';
  const live = linkUp && s.reachable;
  document.querySelector('main').classList.toggle('stale', !live);  // last known figures, greyed
  if (alarms.some((a) => a[1] === 'high')) {
    document.body.classList.add('alarm-high');
    // While the pump cannot be read the banner keeps saying so: its alarms are the last known.
    if (live) { banner.textContent = 'HIGH ALARM: ' + alarms.filter((a) => a[1] === 'high').map((a) => a[0]).join(', '); banner.className = 'banner alarm-high'; }
  }
  // Every drug against its limit (Drugs when served, else the single-drug properties).
  const drugs = p.Drugs || (p.Drug ? [[p.Drug, p.ConcentrationMcgPerMl, p.Delivered24hMcg, p.DailyLimitMcg]] : []);
  $('drugs').innerHTML = drugs.length ? drugs.map((d) => {
    const pct = d[3] > 0 ? 100 * d[2] / d[3] : 0;
    return `<div class="drug" data-drug="${esc(d[0])}">${esc(d[0])}: <b>${num(d[2], 3)}</b> of ${num(d[3], 1)} mcg (${num(pct, 1)} %)<div class="bar${pct >= 100 ? ' over' : ''}"><div style="width:${Math.min(100, pct)}%"></div></div></div>`;
  }).join('') : '<p class="muted">no prescription</p>';
  const rpct = p.ReservoirCapacityUl > 0 ? 100 * p.ReservoirUl / p.ReservoirCapacityUl : 0;
  $('reservoir').innerHTML = `<b id="reservoir-ul">${num(p.ReservoirUl, 1)}</b> of ${num(p.ReservoirCapacityUl, 0)} µL (${num(rpct, 1)} %)<div class="bar"><div style="width:${Math.min(100, rpct)}%"></div></div>`;
  $('refilldue').textContent = fmtTime(p.RefillDueUsec);
  $('expires').textContent = p.SolutionExpiresUsec ? fmtTime(p.SolutionExpiresUsec) : '—';
  $('accuracy').textContent = p.RefillAccuracyPercent === null || p.RefillAccuracyPercent === undefined ? 'not measured yet' : `${num(p.RefillAccuracyPercent, 1)} %`;
  if (s.diagnostics) {
    const d = s.diagnostics;
    $('latency-figures').innerHTML = `max ${num(d.LatencyMaxNs / 1000, 1)} µs · p99 ${num(d.LatencyP99Ns / 1000, 1)} µs · p99.9 ${num(d.LatencyP999Ns / 1000, 1)} µs · last minute max ${num(d.LatencyMaxNsLastMinute / 1000, 1)} µs · ${d.LoopCycles} cycles, ${d.Overruns} overruns${d.RealtimeScheduling ? '' : ' · <b>not real-time scheduled</b>'}`;
    latencyChart($('latency'), d.LatencyHistogram || []);
  }
}
function renderHistory() {
  const h = history;
  barChart($('hourly'), h.hourly || [], 'mcg', (t) => new Date(t / 1000).toISOString().slice(11, 16));
  barChart($('daily'), h.daily || [], 'mcg', (t) => new Date(t / 1000).toISOString().slice(5, 10));
  const ev = (h.events || []).slice().reverse();
  $('events').innerHTML = ev.map((e) => `<tr data-type="${esc(e[1])}"><td>${fmtTime(e[0])}</td><td>${esc(e[1])}</td><td>${esc(e[2])}</td><td>${esc(e[3])}</td></tr>`).join('');
}
function connect() {
  const es = new EventSource('/events');
  es.addEventListener('open', () => { linkUp = true; $('link').textContent = 'live'; if (status) renderStatus(); });
  es.addEventListener('status', (m) => { linkUp = true; status = JSON.parse(m.data); renderStatus(); window.lastStatusMs = Date.now(); });
  es.addEventListener('history', (m) => { history = JSON.parse(m.data); renderHistory(); window.lastHistoryMs = Date.now(); });
  es.addEventListener('error', () => { linkUp = false; $('link').textContent = 'reconnecting…'; if (status) renderStatus(); });
}
if (window.thecalInitial) {  // the snapshot served with the page: shown before the stream opens
  linkUp = true; status = window.thecalInitial; history = window.thecalInitial;
  renderStatus(); renderHistory();
}
connect();
)JS";
}

}  // namespace thecal::dashboard
