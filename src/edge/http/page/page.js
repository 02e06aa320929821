// The live page's script (served at /page.js next to the page, as /bff.js is): it renders what
// the daemon sends; connecting, reconnecting with backoff, resuming with since/epoch and the
// relay channels' offsets, and matching command results are the client library's
// (clients/js/bff.js, served by the daemon from the same file).
'use strict';
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const token = params.get('token');
// Read once, then gone from the address bar (and from what is bookmarked or shared from it).
if (params.has('token')) {
  const bare = new URL(location.href);
  bare.searchParams.delete('token');
  history.replaceState(history.state, '', bare);
}
const wsPath = document.querySelector('meta[name="bff-ws-path"]')?.content || '/';
const ownWs = (location.protocol === 'https:' ? 'wss://' : 'ws://') + (location.host || 'localhost:3000') + wsPath;
// `?ws=` may point at this page's own origin or one listed in server.allowed_origins, never
// elsewhere: a link to this page must not send its token, or its commands, to another server.
function allowedWs(target) {
  let url;
  try { url = new URL(target, location.href); } catch { return false; }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') return false;
  const origin = url.protocol.replace('ws', 'http') + '//' + url.host;
  const listed = (document.querySelector('meta[name="bff-ws-origins"]')?.content || '')
    .split(' ').filter(Boolean).map((o) => o.toLowerCase());
  return origin.toLowerCase() === location.origin.toLowerCase() || listed.includes(origin.toLowerCase());
}
const wsAsked = params.get('ws');
const wsRefused = wsAsked !== null && !allowedWs(wsAsked);
if (wsRefused) console.warn('bff: ?ws= ignored: not this page\'s origin nor in server.allowed_origins', wsAsked);
const wsUrl = wsAsked !== null && !wsRefused ? new URL(wsAsked, location.href).href : ownWs;
const KNOWN = ['timestamp', 'status', 'market', 'portfolio', 'signal', 'governance', 'logs',
  'agents', 'models', 'sources', 'mood', 'alerts'];
// Every packet's price goes on the sparkline: with pushes, up to a handful a second.
const WINDOW_MS = 5 * 60 * 1000, MAX_POINTS = 1800, MAX_LOGS = 50;
const RATE_WINDOW_MS = 5000, MAX_UPDATES = 20;

window.bff = { seq: null, connected: false, status: null, url: wsUrl, wsRefused, packet: null, allowed: [], lastCommand: null,
  rate: null, updates: [], subscribed: [], rejected: [], seqs: [], resumed: null, channelsResumed: null,
  mood: null, alerts: [], regimes: [], alertEvents: [] };
let client = null, retryTimer = null; // the library's client, and the countdown's timer
const prices = []; // {t, p}: prices of the last 5 minutes
let lastSeq = null, lastEpoch = null;
const arrivals = []; // when each packet of the last RATE_WINDOW_MS arrived
let liveSince = 0;
const wanted = new Set(); // channels subscribed to (the library subscribes them again after a reconnect)

// ---- formatting (null → "—") ----
const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const dash = (s) => (s === null || s === undefined || s === '' ? '—' : String(s));
const fixed = (v, d = 2) => (isNum(v) ? v.toFixed(d) : '—');
const money = (v) => (isNum(v) ? v.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 }) : '—');
const pct = (v, d = 1) => (isNum(v) ? (v * 100).toFixed(d) + '%' : '—');
const sig = (v) => (isNum(v) ? String(Number(v.toPrecision(3))) : '—');
const count = (v) => (isNum(v) ? v.toLocaleString('en-US') : '—');
const age = (ms) => (!isNum(ms) ? '' : ms < 1000 ? `${ms} ms old` : `${(ms / 1000).toFixed(1)} s old`);
const clock = (iso) => {
  const d = iso ? new Date(iso) : null;
  return d && !isNaN(d) ? d.toISOString().slice(11, 23) : '';
};
const obj = (v) => (v && typeof v === 'object' && !Array.isArray(v) ? v : {});
function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}
function setText(id, text, cls) {
  const e = $(id);
  e.textContent = text;
  if (cls !== undefined) e.className = cls;
}
const signClass = (v) => (isNum(v) ? (v > 0 ? 'pos' : v < 0 ? 'neg' : '') : '');

// ---- rendering ----
function render(packet) {
  const data = obj(packet.data);
  const market = obj(data.market), pf = obj(data.portfolio), signal = obj(data.signal);
  window.bff.seq = packet.seq;
  window.bff.status = data.status ?? null;
  window.bff.packet = packet;

  setText('seq', dash(packet.seq));
  const status = $('status');
  status.textContent = dash(data.status);
  status.dataset.s = data.status || '';
  setText('symbol', dash(market.symbol));
  setText('updated', clock(data.timestamp) ? clock(data.timestamp) + ' UTC' : '—');
  document.title = `${market.symbol || 'bff'} ${fixed(market.price)} · ${data.status || '—'}`;

  setText('price', fixed(market.price));
  setText('regime', dash(market.regime));
  setText('regime-h', dash(market.regime));
  setText('alpha', fixed(market.alpha));
  setText('velocity', sig(market.velocity));
  setText('acceleration', sig(market.acceleration));
  if (isNum(market.price) && packet.seq !== lastSeq) prices.push({ t: Date.now(), p: market.price });
  if (packet.seq !== lastSeq) arrivals.push(Date.now());
  lastSeq = packet.seq;
  drawSparkline();
  showRate();

  setText('nav', money(pf.nav));
  setText('cash', money(pf.cash));
  setText('daily-pnl', isNum(pf.daily_pnl) ? (pf.daily_pnl > 0 ? '+' : '') + money(pf.daily_pnl) : '—', signClass(pf.daily_pnl));
  setText('max-drawdown', pct(pf.max_drawdown, 2), signClass(pf.max_drawdown));

  const side = $('side');
  side.textContent = dash(signal.side);
  side.dataset.s = signal.side || '';
  setText('confidence', pct(signal.confidence));
  $('confidence-bar').style.width = isNum(signal.confidence) ? Math.max(0, Math.min(1, signal.confidence)) * 100 + '%' : '0';
  setText('reasoning', signal.reasoning ?? '');
  setText('approved-size', pct(obj(data.governance).approved_size));

  renderLogs(Array.isArray(data.logs) ? data.logs : []);
  renderTable('agents', obj(data.agents), (a) => [fixed(a.latency_ms, 1), pct(a.success_rate), count(a.invocations)]);
  renderTable('models', obj(data.models), (m) => [fixed(m.latency_ms, 1), pct(m.cache_hit_rate), count(m.invocations)]);
  renderSources(obj(data.sources));
  if ('mood' in data) showMood(data.mood);
  if (Array.isArray(data.alerts)) showAlerts(data.alerts);

  const extra = Object.fromEntries(Object.entries(data).filter(([k]) => !KNOWN.includes(k)));
  $('extra').hidden = Object.keys(extra).length === 0;
  setText('extra-json', JSON.stringify(extra, null, 2));
}

function drawSparkline() {
  const cutoff = Date.now() - WINDOW_MS;
  while (prices.length && (prices[0].t < cutoff || prices.length > MAX_POINTS)) prices.shift();
  const svg = $('sparkline'), line = svg.querySelector('polyline'), area = svg.querySelector('path');
  const change = $('change');
  svg.querySelector('text').style.display = prices.length < 2 ? '' : 'none';
  if (prices.length < 2) { line.setAttribute('points', ''); area.setAttribute('d', ''); change.textContent = ''; return; }
  const ps = prices.map((h) => h.p);
  const lo = Math.min(...ps), hi = Math.max(...ps), span = hi - lo;
  const t0 = prices[0].t, tspan = prices[prices.length - 1].t - t0 || 1;
  const pts = prices.map((h) => [((h.t - t0) / tspan) * 300, span ? 66 - ((h.p - lo) / span) * 62 : 35]);
  const str = pts.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ');
  line.setAttribute('points', str);
  area.setAttribute('d', `M0,70 L${str.replace(/ /g, ' L')} L300,70 Z`);
  const diff = ps[ps.length - 1] - ps[0];
  change.textContent = `${diff >= 0 ? '+' : ''}${diff.toFixed(2)} (${((diff / ps[0]) * 100).toFixed(2)}%) · 5 min`;
  change.className = 'num ' + (diff > 0 ? 'up' : diff < 0 ? 'down' : '');
}

// Packets a second: one per poll; more while the engine's events are pushed between polls.
function showRate() {
  const now = Date.now();
  while (arrivals.length && arrivals[0] < now - RATE_WINDOW_MS) arrivals.shift();
  const span = Math.max(1000, Math.min(RATE_WINDOW_MS, now - liveSince));
  const rate = window.bff.connected ? arrivals.length / (span / 1000) : null;
  window.bff.rate = rate;
  setText('rate', isNum(rate) ? rate.toFixed(1) : '—', 'num' + (rate > 1.5 ? ' push' : ''));
}
setInterval(showRate, 1000);

function renderLogs(logs) {
  const items = logs.slice(-MAX_LOGS).reverse().map((log) => {
    const level = ['WARNING', 'ERROR'].includes(log?.level) ? log.level : 'INFO';
    const li = el('li', level);
    li.append(el('span', 'lv', dash(log?.level)));
    if (clock(log?.timestamp)) li.append(el('span', 'ts', clock(log.timestamp)));
    li.append(el('span', 'msg', dash(log?.message)));
    return li;
  });
  if (!items.length) items.push(el('li', 'INFO', 'no log entries'));
  $('logs').replaceChildren(...items);
}

function renderTable(id, rows, cells) {
  const trs = Object.entries(rows).map(([name, row]) => {
    const tr = el('tr');
    tr.append(el('td', '', name), ...cells(obj(row)).map((c) => el('td', '', c)));
    return tr;
  });
  if (!trs.length) { const tr = el('tr'); const td = el('td', 'empty', `no ${id} reported`); td.colSpan = 4; tr.append(td); trs.push(tr); }
  $(id).replaceChildren(...trs);
}

function renderSources(sources) {
  const items = Object.entries(sources).map(([name, s]) => {
    s = obj(s);
    const li = el('li');
    li.append(el('span', 'dot ' + (s.ok ? 'ok' : 'bad')), el('span', 'name', name), el('span', 'age', age(s.age_ms) || (s.ok ? '' : 'never answered')));
    if (s.error) li.append(el('span', 'err', s.error));
    return li;
  });
  $('sources').replaceChildren(...items);
  // A failing source keeps its last good values: grey out the panels it feeds.
  for (const card of document.querySelectorAll('[data-source]')) {
    const s = sources[card.dataset.source];
    card.classList.toggle('stale', !!s && !s.ok);
  }
  const state = sources.state;
  $('status').classList.toggle('stale', !!state && !state.ok);
  $('status').title = state && !state.ok ? 'last known status: the engine state is stale' : '';
}

// ---- the market's mood and the alerts (PROTOCOL.md §12) ----
// The words come from the daemon (its [regime] config), never from here: only the class, and
// so the colours, follow the regime word.
const REGIMES = ['crash', 'bull', 'neutral'];
function showMood(mood) {
  mood = mood && typeof mood === 'object' ? mood : null;
  window.bff.mood = mood;
  // A daemon without moods (before §12) shows no card rather than an empty one.
  $('vibe').hidden = !mood;
  const regime = REGIMES.includes(mood?.regime) ? mood.regime : null;
  const card = $('vibe');
  for (const r of REGIMES) card.classList.toggle('mood-' + r, r === regime);
  const persona = obj(mood?.persona);
  setText('vibe-label', mood ? dash(mood.label ?? mood.regime) : 'mood');
  setText('vibe-persona', dash(persona.name));
  setText('vibe-headline', dash(persona.headline));
  setText('vibe-since', clock(mood?.since) ? 'since ' + clock(mood.since) + ' UTC' : '');
}

// The active alerts, oldest first: a packet's list replaces them, an ALERT adds or drops one.
let activeAlerts = [];
function showAlerts(alerts) {
  activeAlerts = alerts.filter((a) => a && typeof a === 'object' && a.active !== false);
  window.bff.alerts = activeAlerts;
  const items = activeAlerts.map((a) => {
    const level = ['critical', 'warning', 'info'].includes(a.level) ? a.level : 'warning';
    const li = el('li', level);
    li.dataset.code = a.code ?? '';
    li.append(el('span', 'level', dash(a.level)), el('span', 'code', dash(a.code)), el('span', 'message', dash(a.message)));
    if (clock(a.timestamp)) li.append(el('span', 'since', 'since ' + clock(a.timestamp) + ' UTC'));
    return li;
  });
  $('alerts').replaceChildren(...items);
  $('alerts').hidden = items.length === 0;
}

function onRegime(message) {
  const change = obj(message.data);
  window.bff.regimes.push(`${change.previous ?? ''}>${change.regime ?? ''}`);
  if (window.bff.regimes.length > 100) window.bff.regimes.shift();
  showMood(change);
}

function onAlert(message) {
  const alert = obj(message.data);
  window.bff.alertEvents.push(`${alert.code}:${alert.active === true ? 'raised' : 'cleared'}`);
  if (window.bff.alertEvents.length > 100) window.bff.alertEvents.shift();
  const others = activeAlerts.filter((a) => a.code !== alert.code);
  showAlerts(alert.active === true ? [...others, alert] : others);
}

// ---- connection: bff.js connects, comes back after 1, 2, 4, 8, 16, 30, 30 … s and resumes ----
function setConn(state, text) {
  const conn = $('conn');
  conn.dataset.s = state;
  conn.textContent = text;
  window.bff.connected = state === 'live';
  document.body.classList.toggle('offline', state !== 'live');
}

function onStatus(status) {
  clearTimeout(retryTimer);
  $('retry').textContent = '';
  if (status.state === 'live') {
    liveSince = Date.now();
    arrivals.length = 0;
    setConn('live', 'Live');
  } else if (status.state === 'connecting') {
    setConn('connecting', 'Connecting…');
  } else if (status.state === 'reconnecting') {
    setConn('down', 'Disconnected');
    countDown(Math.round(status.delayMs / 1000));
  } else if (status.code === 4401) {
    // 4401: the daemon no longer accepts this token (rotated or revoked); the library does not
    // retry with it, which would only be refused, so ask for a new one instead.
    setConn('down', 'Token no longer valid');
    $('retry').textContent = 'open the page with a new ?token=';
  } else {
    setConn('down', 'Disconnected');
  }
}

// The wait before the library's next try, shown a second at a time.
function countDown(left) {
  if (left <= 0) return;
  $('retry').textContent = `retrying in ${left} s`;
  retryTimer = setTimeout(() => countDown(left - 1), 1000);
}

function onPacket(packet) {
  if (packet.type === 'WELCOME') window.bff.resumed = packet.resumed ?? null;
  // The seqs received, newest last (a gap after a resume would show here).
  if (packet.seq !== lastSeq || packet.epoch !== lastEpoch) {
    window.bff.seqs.push(`${packet.epoch}:${packet.seq}`);
    if (window.bff.seqs.length > 600) window.bff.seqs.shift();
  }
  lastEpoch = packet.epoch ?? null;
  render(packet);
}

// The socket of the moment, for a look from the console: `ws.close()` drops it, and the library
// comes back and resumes.
let ws = null;
class PageSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    ws = this;
  }
}

async function start() {
  let connect;
  try {
    ({ connect } = await import('./bff.js'));
  } catch (err) {
    console.error('bff: cannot load the client library bff.js', err);
    setConn('down', 'Disconnected');
    $('retry').textContent = 'reload the page';
    return;
  }
  client = connect(wsUrl, {
    token,
    WebSocket: PageSocket,
    onStatus,
    onError: (err) => console.error('bff:', err),
    // No jitter: whole seconds, as the countdown shows them.
    random: () => 1,
  });
  client.on('WELCOME', onPacket);
  client.on('TELEMETRY', onPacket);
  client.on('UPDATE', showUpdate);
  client.on('SUBSCRIBED', showSubscribed);
  client.on('UNSUBSCRIBED', showSubscribed);
  client.on('REGIME', onRegime);
  client.on('ALERT', onAlert);
}

// ---- commands: buttons only for what this page's token allows ----
async function loadAllowed() {
  let url;
  try {
    url = new URL(wsUrl);
    url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
    url.pathname = '/api/actions';
    url.search = '';
  } catch { return; }
  try {
    const answer = await fetch(url, { headers: token ? { Authorization: 'Bearer ' + token } : {} });
    const allowed = (await answer.json()).allowed;
    window.bff.allowed = Array.isArray(allowed) ? allowed : [];
  } catch { window.bff.allowed = []; }
  $('halt').hidden = !window.bff.allowed.includes('halt');
  $('resume').hidden = !window.bff.allowed.includes('resume');
}

function send(action) {
  if (client?.status.state !== 'live') return showResult({ action, ok: false, error: 'not connected' });
  $(action).disabled = true;
  setText('command-result', `${action}…`, '');
  // Its COMMAND_RESULT, matched by id; a connection that drops first rejects it.
  client.command(action).then(showResult, (err) => showResult({ action, ok: false, error: err.message }));
}

function showResult(result) {
  window.bff.lastCommand = result;
  for (const id of ['halt', 'resume']) $(id).disabled = false;
  const text = result.ok
    ? `${result.action}: ${result.message || 'done'}`
    : `${result.action} failed: ${result.error || result.message || 'no reason given'}`;
  setText('command-result', text, result.ok ? '' : 'bad');
}

// ---- relay channels: SUBSCRIBE, and the last MAX_UPDATES UPDATEs ----
function subscribe(channel) {
  if (client?.status.state !== 'live') return setText('channel-result', 'not connected', 'bad');
  setText('channel-result', 'subscribing…', '');
  client.subscribe(channel);
}

function unsubscribe(channel) {
  wanted.delete(channel);
  client?.unsubscribe(channel);
  renderSubscriptions();
}

function showSubscribed(answer) {
  const channels = Array.isArray(answer.channels) ? answer.channels : [];
  const rejected = Array.isArray(answer.rejected) ? answer.rejected : [];
  if (answer.type === 'SUBSCRIBED') {
    channels.forEach((c) => wanted.add(c));
    // A channel refused after a reconnect (another daemon, Redis off) is not asked for again.
    rejected.forEach((r) => { if (r.reason !== 'already subscribed') wanted.delete(r.channel); });
    window.bff.rejected = rejected;
    if (answer.resumed) window.bff.channelsResumed = answer.resumed;
    const refused = rejected.map((r) => `${r.channel}: ${r.reason}`).join('; ');
    if (refused) setText('channel-result', 'refused ' + refused, 'bad');
    else setText('channel-result', channels.length ? 'subscribed to ' + channels.join(', ') : '', '');
  } else {
    channels.forEach((c) => wanted.delete(c));
  }
  renderSubscriptions();
}

function renderSubscriptions() {
  window.bff.subscribed = [...wanted];
  const chips = [...wanted].map((channel) => {
    const chip = el('span', 'chip', channel);
    const leave = el('button', '', '×');
    leave.title = 'unsubscribe from ' + channel;
    leave.onclick = () => unsubscribe(channel);
    chip.append(leave);
    return chip;
  });
  $('subscriptions').replaceChildren(...chips);
}

function showUpdate(update) {
  const updates = window.bff.updates;
  updates.push({ channel: update.channel, offset: update.offset, data: update.data, at: new Date().toISOString() });
  if (updates.length > MAX_UPDATES) updates.splice(0, updates.length - MAX_UPDATES);
  const items = updates.slice().reverse().map((u) => {
    const li = el('li');
    const json = JSON.stringify(u.data) ?? 'null';
    const text = el('span', 'json', json.length > 400 ? json.slice(0, 400) + '…' : json);
    text.title = json.length > 4000 ? json.slice(0, 4000) + '…' : json;
    li.append(el('span', 'ts', clock(u.at)), el('span', 'ch', dash(u.channel)), el('span', 'off', '#' + dash(u.offset)), text);
    return li;
  });
  $('updates').replaceChildren(...items);
}

$('subscribe').onclick = () => {
  const channel = $('channel').value.trim();
  if (channel) subscribe(channel);
};
$('channel').onkeydown = (event) => { if (event.key === 'Enter') $('subscribe').click(); };

$('halt').onclick = () => {
  if (confirm('HALT trading now? The engine stops trading until someone sends RESUME.')) send('halt');
};
$('resume').onclick = () => send('resume');

loadAllowed();
start();
