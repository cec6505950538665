// paddock dashboard: the browser side of `paddock ui`.
//
// Vanilla ES2020, no dependencies. Everything the server sends is treated as hostile (a
// sandboxed agent controls run output, file names, hosts…): the DOM is built with
// createElement + textContent only, never from HTML strings, and links are only made from
// http(s) URLs.
'use strict';

const TABS = ['logs', 'init', 'traffic', 'audit', 'changes'];
const TERMINAL = new Set(['stopped', 'failed']);
const TRAFFIC_CAP = 1000;
const LOG_NODE_CAP = 20000; // DOM nodes kept in pre#logs before the oldest are dropped
const CONFIRM_MS = 4000;

const app = { csrf: '', dead: false };
let page = null; // the current page: { kind, runId?, cleanups: [], ... }

// ---------------------------------------------------------------------------
// DOM helpers

const $ = (sel, root = document) => root.querySelector(sel);

/** el('a', {class: 'x', href: '#/', text: 'hi', on: {click: fn}}, child, …). */
function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = String(v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat(Infinity)) if (kid != null && kid !== false) e.append(kid); // strings become text nodes
  return e;
}

function setKids(node, ...kids) {
  node.replaceChildren(...kids.flat(Infinity).filter((k) => k != null && k !== false));
}

const enc = encodeURIComponent;
const runHref = (id, tab) => `#/runs/${enc(id)}${tab ? '/' + tab : ''}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// Formatting

function fmtBytes(n) {
  if (n == null || !Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(n < 10 ? 1 : 0) : n} ${units[i]}`;
}

function fmtAge(iso) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return '';
  const s = Math.max(0, Math.floor((Date.now() - t) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

function fmtTime(ms) {
  const d = new Date(ms);
  return Number.isFinite(d.getTime()) ? d.toLocaleTimeString([], { hour12: false }) : '';
}

const str = (v) => (v == null ? '' : String(v));
const isLive = (state) => !TERMINAL.has(state);
// States with a sandbox whose stats mean something.
const hasSandbox = (state) => state === 'starting' || state === 'running' || state === 'stopping';

/** Only http(s) URLs become links; anything else (javascript:, data:…) stays text. */
function safeUrl(u) {
  try {
    const url = new URL(String(u));
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch { return null; }
}

function urlLinks(urls) {
  const out = [];
  for (const [name, u] of Object.entries(urls || {})) {
    const href = safeUrl(u);
    if (out.length) out.push(' ');
    out.push(href ? el('a', { href, target: '_blank', rel: 'noopener noreferrer', title: href, text: name })
                  : el('span', { title: str(u), text: name }));
  }
  return out;
}

function stateBadge(run) {
  const state = str(run.state);
  const title = [run.reason, run.exit_code != null ? `exit code ${run.exit_code}` : null].filter(Boolean).join('; ');
  // state-<state> only for the known states: the class name is never made of arbitrary text.
  const known = ['created', 'starting', 'running', 'stopping', 'stopped', 'failed'].includes(state);
  return el('span', { class: `badge ${known ? 'state-' + state : ''}`, title: title || null, text: state });
}

// ---------------------------------------------------------------------------
// API, errors, session

class ApiError extends Error {
  constructor(status, code, message, hint) {
    super(message);
    Object.assign(this, { status, code, hint });
  }
}

/** fetch with the session cookie and CSRF header; non-2xx throws ApiError (from the envelope). */
async function api(method, path, body, opts = {}) {
  if (app.dead) throw new ApiError(401, 'unauthorized', 'session expired');
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-Paddock-CSRF'] = app.csrf;
  const init = { method, headers, credentials: 'same-origin', signal: opts.signal, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'Cannot reach the paddock daemon.', 'Is `paddock ui` still running?');
  }
  if (res.status === 401) {
    loginNeeded();
    throw new ApiError(401, 'unauthorized', 'session expired');
  }
  if (!res.ok) {
    let err = { code: `http_${res.status}`, message: `${res.status} ${res.statusText}`, hint: null };
    try {
      const b = await res.json(); // {"error": {"code", "message", "hint"}}
      if (b && b.error && typeof b.error === 'object') err = { ...err, ...b.error };
    } catch { /* not JSON */ }
    throw new ApiError(res.status, str(err.code), str(err.message), err.hint == null ? null : str(err.hint));
  }
  if (opts.raw) return res;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

function showError(e) {
  if (!e || e.name === 'AbortError' || e.status === 401 || app.dead) return;
  const banner = $('#error-banner');
  $('.banner-msg', banner).textContent = e.message || String(e);
  $('.banner-hint', banner).textContent = e.hint || '';
  banner.hidden = false;
}

/** Runs fn, showing a failure in the banner. */
async function attempt(fn) {
  try { return await fn(); } catch (e) { showError(e); return undefined; }
}

function loginNeeded() {
  if (app.dead) return;
  app.dead = true;
  leavePage();
  $('#app').hidden = true;
  $('#error-banner').hidden = true;
  $('#login-needed').hidden = false;
  setLive(false);
}

function setLive(on) {
  const live = $('#live');
  live.textContent = on ? 'live' : 'reconnecting…';
  live.className = `live ${on ? 'on' : 'off'}`;
}

// ---------------------------------------------------------------------------
// Server-sent events

/**
 * Opens /v1/events with `query`, dispatching named events to handlers[kind](event) (the
 * `dropped` notice's data is `{dropped: n}`). The browser resumes by itself with Last-Event-ID;
 * when it gives up (the stream answered an error), we reconnect with `after=<last id>`.
 * Returns {opened: Promise, close()}.
 */
function openEvents(query, handlers) {
  let es = null, lastId = null, closed = false, timer = null, resolveOpened;
  const opened = new Promise((r) => { resolveOpened = r; });
  const connect = () => {
    const url = '/v1/events' + query + (lastId ? `${query ? '&' : '?'}after=${lastId}` : '');
    es = new EventSource(url);
    es.onopen = () => { setLive(true); resolveOpened(); };
    es.onerror = () => {
      setLive(false);
      if (closed || es.readyState !== EventSource.CLOSED) return; // CONNECTING: the browser retries
      // Given up: maybe the session expired (api() notices a 401), else retry later.
      api('GET', '/ui/session').catch(() => {});
      timer = setTimeout(() => { if (!closed && !app.dead) connect(); }, 3000);
    };
    for (const [kind, fn] of Object.entries(handlers)) {
      es.addEventListener(kind, (ev) => {
        if (closed) return;
        if (/^\d+$/.test(ev.lastEventId || '')) lastId = ev.lastEventId;
        let msg;
        try { msg = JSON.parse(ev.data); } catch { return; }
        try { fn(msg); } catch (e) { console.error(e); }
      });
    }
  };
  connect();
  return {
    opened,
    close() { closed = true; clearTimeout(timer); if (es) es.close(); },
  };
}

// ---------------------------------------------------------------------------
// Stats (CPU %, memory) of live runs

const statPrev = new Map(); // run id → {cpu: ns, t: ms}

/** The run's stats, or null when it has none (not live). CPU % from two samples. */
async function fetchStats(id, signal) {
  let s;
  try {
    s = await api('GET', `/v1/runs/${enc(id)}/stats`, undefined, { signal });
  } catch {
    statPrev.delete(id);
    return null;
  }
  const t = performance.now();
  let cpu = null;
  const prev = statPrev.get(id);
  if (s && Number.isFinite(s.cpu_usage_ns)) {
    if (prev && t > prev.t) cpu = Math.max(0, ((s.cpu_usage_ns - prev.cpu) / ((t - prev.t) * 1e6)) * 100);
    statPrev.set(id, { cpu: s.cpu_usage_ns, t });
  }
  return { cpu, mem: s ? s.memory_bytes : null, pids: s ? s.pids : null };
}

const fmtCpu = (st) => (st && st.cpu != null ? `${st.cpu.toFixed(st.cpu < 10 ? 1 : 0)}%` : '–');
const fmtMem = (st) => (st && st.mem != null ? fmtBytes(st.mem) : '–');

// ---------------------------------------------------------------------------
// ANSI SGR → DOM. Only SGR (ESC [ … m) is honoured; every other escape sequence and
// control character (but \n and \t) is dropped. State carries across chunks.

const ESC_WINDOW = 4096; // longest escape sequence honoured (bounds the work per ESC)
const CSI_RE = /^\x1b\[([0-?]*)([ -/]*)([@-~])/;
const CSI_PART = /^\x1b\[[0-?]*[ -/]*$/;
const STR_RE = /^\x1b[\]PX^_][\s\S]*?(?:\x07|\x1b\\)/; // OSC, DCS, SOS, PM, APC
const STR_PART = /^\x1b[\]PX^_]/;
const ESC_RE = /^\x1b[ -/]*[0-~]/;
const ESC_PART = /^\x1b[ -/]*$/;
// C0 (but \t \n), DEL, C1, and bidirectional overrides (which could disguise text).
const CTRL_RE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g;

const newAnsi = () => ({ pending: '', fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false, strike: false });

function resetSgr(st) { Object.assign(st, newAnsi(), { pending: st.pending }); }

function xterm256(n) {
  if (n < 16) return n;
  if (n >= 232) { const g = 8 + 10 * (n - 232); return [g, g, g]; }
  n -= 16;
  const lv = [0, 95, 135, 175, 215, 255];
  return [lv[Math.floor(n / 36)], lv[Math.floor(n / 6) % 6], lv[n % 6]];
}

// SGR codes that set or clear one attribute.
const SGR_FLAGS = { 1: ['bold', true], 2: ['dim', true], 3: ['italic', true], 4: ['underline', true], 7: ['inverse', true],
  9: ['strike', true], 23: ['italic', false], 24: ['underline', false], 27: ['inverse', false], 29: ['strike', false] };

function applySgr(st, params) {
  if (/[<=>?]/.test(params)) return; // private-mode sequences are not SGR
  const p = params === '' ? [0] : params.split(/[;:]/).map((x) => (x === '' ? 0 : parseInt(x, 10)));
  for (let i = 0; i < p.length; i++) {
    const n = p[i];
    if (n === 0) resetSgr(st);
    else if (SGR_FLAGS[n]) st[SGR_FLAGS[n][0]] = SGR_FLAGS[n][1];
    else if (n === 21 || n === 22) st.bold = st.dim = false;
    else if (n >= 30 && n <= 37) st.fg = n - 30;
    else if (n >= 90 && n <= 97) st.fg = n - 90 + 8;
    else if (n >= 40 && n <= 47) st.bg = n - 40;
    else if (n >= 100 && n <= 107) st.bg = n - 100 + 8;
    else if (n === 39) st.fg = null;
    else if (n === 49) st.bg = null;
    else if (n === 38 || n === 48) { // 38;5;N (256 colours) or 38;2;R;G;B
      let c;
      if (p[i + 1] === 5 && p[i + 2] >= 0 && p[i + 2] <= 255) { c = xterm256(p[i + 2]); i += 2; }
      else if (p[i + 1] === 2 && p.length >= i + 5) { c = p.slice(i + 2, i + 5).map((v) => Math.min(255, Math.max(0, v | 0))); i += 4; }
      else break; // malformed: ignore the rest
      st[n === 38 ? 'fg' : 'bg'] = c;
    }
  }
}

/** Splits text into [{text, st: snapshot}] segments, updating the parser state. */
function ansiSegments(st, input) {
  const s = st.pending + input;
  st.pending = '';
  const out = [];
  const emit = (t) => {
    t = t.replace(CTRL_RE, '');
    if (t) out.push({ text: t, cls: sgrClasses(st) });
  };
  let i = 0, j;
  while ((j = s.indexOf('\x1b', i)) !== -1) {
    emit(s.slice(i, j));
    const w = s.slice(j, j + ESC_WINDOW);
    const atEnd = j + w.length === s.length;
    // The byte after ESC decides the sequence's grammar: CSI, a string (OSC…), or short.
    const csi = w[1] === '[', string = !csi && STR_PART.test(w);
    const m = (csi ? CSI_RE : string ? STR_RE : ESC_RE).exec(w);
    if (m) {
      if (csi && m[3] === 'm' && m[2] === '') applySgr(st, m[1]);
      i = j + m[0].length;
    } else if (atEnd && (csi ? CSI_PART.test(w) : string || ESC_PART.test(w))) {
      st.pending = w; // incomplete: wait for the next chunk
      return out;
    } else {
      i = j + 1; // malformed or too long: drop the ESC, keep the rest as (filtered) text
    }
  }
  emit(s.slice(i));
  return out;
}

const rgb = (c) => `rgb(${c[0]},${c[1]},${c[2]})`;

/** The classes and inline colours of the current SGR state: {cls, fg, bg}. */
function sgrClasses(st) {
  let fg = st.fg, bg = st.bg;
  const cls = [];
  if (st.inverse) {
    [fg, bg] = [bg, fg];
    if (fg == null) cls.push('ansi-inv-fg');
    if (bg == null) cls.push('ansi-inv-bg');
  }
  if (typeof fg === 'number') cls.push(`ansi-fg-${fg}`);
  if (typeof bg === 'number') cls.push(`ansi-bg-${bg}`);
  if (st.bold) cls.push('ansi-bold');
  if (st.dim) cls.push('ansi-dim');
  if (st.italic) cls.push('ansi-italic');
  if (st.underline) cls.push('ansi-underline');
  if (st.strike) cls.push('ansi-strike');
  return { cls: cls.join(' '), fg: Array.isArray(fg) ? rgb(fg) : null, bg: Array.isArray(bg) ? rgb(bg) : null };
}

function segNode(seg, extra) {
  const { cls, fg, bg } = seg.cls;
  if (!cls && !fg && !bg && !extra) return document.createTextNode(seg.text);
  const span = el('span', { class: [cls, extra].filter(Boolean).join(' ') || null, text: seg.text });
  if (fg) span.style.color = fg; // computed from integers only
  if (bg) span.style.backgroundColor = bg;
  return span;
}

// ---------------------------------------------------------------------------
// Pages and routing

function newPage(kind, props) {
  leavePage();
  page = { kind, cleanups: [], ...props };
  return page;
}

function leavePage() {
  if (!page) return;
  for (const fn of page.cleanups) { try { fn(); } catch (e) { console.error(e); } }
  page = null;
}

function every(ms, fn) {
  const h = setInterval(fn, ms);
  page.cleanups.push(() => clearInterval(h));
}

function mount(...nodes) { setKids($('#app'), ...nodes); }

function route() {
  if (app.dead) return;
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  if (parts[0] === 'runs' && parts[1]) {
    const tab = TABS.includes(parts[2]) ? parts[2] : 'logs';
    if (page && page.kind === 'run' && page.runId === parts[1]) page.showTab(tab);
    else renderRun(parts[1], tab);
  } else {
    renderRuns();
  }
}

// ---------------------------------------------------------------------------
// Runs page: #/

const RUN_COLS = [['name', 'Name'], ['state', 'State'], ['agent', 'Agent'], ['branch', 'Branch'], ['runtime', 'Runtime'],
  ['urls', 'URLs'], ['cpu', 'CPU'], ['memory', 'Memory'], ['age', 'Age']];

function renderRuns() {
  const pg = newPage('runs');
  const ctl = new AbortController();
  pg.cleanups.push(() => ctl.abort());
  const tbody = el('tbody');
  const empty = el('p', { class: 'empty', hidden: true, text: 'No runs. Start one with `paddock run` or `paddock claude`.' });
  mount(el('section', { class: 'page' },
    el('h1', { text: 'Runs' }),
    el('table', { id: 'runs', class: 'grid' },
      el('thead', null, el('tr', null, RUN_COLS.map(([k, h]) => el('th', { class: k, text: h })))), tbody),
    empty));

  const rows = new Map(); // id → {run, tr, c: {col: td}, stats}
  const order = () => {
    const list = [...rows.values()].sort((a, b) => str(b.run.created_at).localeCompare(str(a.run.created_at)));
    list.forEach((r) => tbody.append(r.tr)); // append moves existing rows
    empty.hidden = rows.size > 0;
  };
  const fill = (r) => {
    const run = r.run;
    setKids(r.c.name, el('a', { class: 'run-link', href: runHref(run.id), text: run.name || run.id }));
    setKids(r.c.state, stateBadge(run));
    r.c.agent.textContent = str(run.agent);
    r.c.branch.textContent = str(run.branch);
    r.c.runtime.textContent = str(run.runtime);
    setKids(r.c.urls, urlLinks(run.urls));
    r.c.age.textContent = fmtAge(run.created_at);
    if (!hasSandbox(run.state)) r.stats = null;
    r.c.cpu.textContent = fmtCpu(r.stats);
    r.c.memory.textContent = fmtMem(r.stats);
  };
  const upsert = (run) => {
    if (!run || typeof run.id !== 'string' || page !== pg) return;
    let r = rows.get(run.id);
    if (!r) {
      const c = {};
      const tr = el('tr', { 'data-run-id': run.id }, RUN_COLS.map(([k]) => (c[k] = el('td', { class: k }))));
      r = { run, tr, c, stats: null };
      rows.set(run.id, r);
    }
    r.run = run;
    fill(r);
    order();
  };
  const remove = (id) => {
    const r = rows.get(id);
    if (r) { r.tr.remove(); rows.delete(id); statPrev.delete(id); order(); }
  };
  const fetchRun = (id) => api('GET', `/v1/runs/${enc(id)}`, undefined, { signal: ctl.signal }).then(upsert, () => {});
  const refresh = () => attempt(async () => {
    const list = await api('GET', '/v1/runs?all=1', undefined, { signal: ctl.signal });
    const runs = (list && list.runs) || [];
    const ids = new Set(runs.map((r) => r.id));
    for (const id of [...rows.keys()]) if (!ids.has(id)) remove(id);
    runs.forEach(upsert);
    order();
  });

  const es = openEvents('?type=run.', {
    'run.created': (ev) => fetchRun(ev.run_id),
    'run.state': (ev) => {
      const r = rows.get(ev.run_id);
      if (!r || !ev.data) return fetchRun(ev.run_id);
      r.run = { ...r.run, state: ev.data.to || ev.data.state, reason: ev.data.reason ?? r.run.reason, exit_code: ev.data.exit_code ?? r.run.exit_code };
      fill(r);
      if (TERMINAL.has(ev.data.to)) fetchRun(ev.run_id); // exit code, finished_at
    },
    'run.started': (ev) => fetchRun(ev.run_id),
    'run.exit': (ev) => fetchRun(ev.run_id),
    'run.removed': (ev) => remove(ev.run_id),
    dropped: refresh,
  });
  pg.cleanups.push(() => es.close());
  refresh();

  // Every 2 s: ages, and stats of the runs that have a sandbox.
  let busy = false;
  every(2000, async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      await Promise.all([...rows.values()].map(async (r) => {
        r.c.age.textContent = fmtAge(r.run.created_at);
        if (!hasSandbox(r.run.state)) return;
        r.stats = await fetchStats(r.run.id, ctl.signal);
        r.c.cpu.textContent = fmtCpu(r.stats);
        r.c.memory.textContent = fmtMem(r.stats);
      }));
    } finally { busy = false; }
  });
}

// ---------------------------------------------------------------------------
// Run page: #/runs/<id>[/<tab>]

function renderRun(id, tab) {
  const pg = newPage('run', { runId: id, run: null });
  const ctl = new AbortController();
  pg.cleanups.push(() => ctl.abort());
  const signal = ctl.signal;
  const base = `/v1/runs/${enc(id)}`;

  // Header
  const title = el('h1', { id: 'run-title', text: id });
  const stateEl = el('span', { id: 'run-state' });
  const meta = el('dl', { class: 'meta' });
  const stats = el('div', { id: 'run-stats', class: 'stats' });
  const notice = el('p', { class: 'notice', hidden: true });
  const btnStop = el('button', { id: 'btn-stop', type: 'button', disabled: true, text: 'Stop' });
  const btnRemove = el('button', { id: 'btn-remove', type: 'button', class: 'danger', text: 'Remove' });

  // Tabs and panels
  const tabLinks = TABS.map((t) => el('a', { href: runHref(id, t), 'data-tab': t, role: 'tab', text: t[0].toUpperCase() + t.slice(1) }));
  const logs = logsPanel(id, signal);
  const init = initPanel();
  const traffic = trafficPanel();
  const audit = auditPanel(base, signal);
  const changes = changesPanel(base, signal, () => pg.run);
  const panels = { logs, init, traffic, audit, changes };

  mount(el('section', { class: 'page run-page' },
    el('div', { class: 'run-head' },
      el('div', null, el('a', { class: 'back', href: '#/', text: '← Runs' }), el('div', { class: 'title-row' }, title, stateEl)),
      el('div', { class: 'actions' }, stats, btnStop, btnRemove)),
    notice, meta,
    el('nav', { class: 'tabs', role: 'tablist' }, tabLinks),
    TABS.map((t) => panels[t].el)));

  const fillHeader = (run) => {
    pg.run = run;
    title.textContent = run.name || run.id;
    setKids(stateEl, stateBadge(run));
    const rows = [
      ['Command', run.command && run.command.length ? run.command.join(' ') : '(shell)', 'mono'],
      ['Workspace', run.workspace, 'mono'],
      ['Runtime', run.runtime],
      ['Agent', run.agent],
      ['Branch', run.branch, 'mono'],
      ['URLs', Object.keys(run.urls || {}).length ? urlLinks(run.urls) : null],
      ['Created', Number.isFinite(Date.parse(run.created_at)) ? `${new Date(run.created_at).toLocaleString()} (${fmtAge(run.created_at)} ago)` : run.created_at],
      ['Exit', run.exit_code != null ? `code ${run.exit_code}` : null],
      ['Reason', run.reason],
    ].filter(([, v]) => v != null && v !== '');
    setKids(meta, rows.map(([k, v, cls]) => [el('dt', { text: k }), el('dd', { class: cls || null }, v)]));
    btnStop.disabled = !isLive(run.state) || run.state === 'stopping';
    changes.runChanged(run);
    if (!hasSandbox(run.state)) { statPrev.delete(id); stats.textContent = ''; }
  };
  const reloadRun = () => api('GET', base, undefined, { signal }).then(fillHeader, (e) => {
    if (e.status === 404) { gone('This run does not exist (any more).'); es.close(); }
    else showError(e);
  });
  const gone = (msg) => {
    notice.textContent = msg;
    notice.hidden = false;
    btnStop.disabled = btnRemove.disabled = true;
  };

  pg.showTab = (t) => {
    for (const a of tabLinks) {
      const on = a.dataset.tab === t;
      a.classList.toggle('active', on);
      a.setAttribute('aria-selected', String(on));
    }
    for (const name of TABS) panels[name].el.hidden = name !== t;
    if (panels[t].activate) panels[t].activate();
  };

  btnStop.addEventListener('click', () => attempt(async () => {
    btnStop.disabled = true;
    btnStop.textContent = 'Stopping…';
    try {
      pg.run = await api('POST', `${base}/stop`, {}, { signal });
    } finally {
      btnStop.textContent = 'Stop';
      if (pg.run) fillHeader(pg.run);
    }
  }));
  confirmButton(btnRemove, 'Click again to remove', () => attempt(async () => {
    const live = pg.run && isLive(pg.run.state);
    await api('DELETE', base + (live ? '?force=1' : ''), undefined, { signal });
    location.hash = '#/';
  }));

  // Live events of this run. The panels fed from the audit log are seeded once the stream is
  // open, so nothing falls between the two (duplicates are dropped by the panels).
  const es = openEvents(`?run=${enc(id)}`, {
    'run.state': (ev) => {
      if (pg.run && ev.data) fillHeader({ ...pg.run, state: ev.data.to || ev.data.state, reason: ev.data.reason ?? pg.run.reason });
      if (ev.data && ev.data.to === 'running') logs.start();
      reloadRun();
    },
    'run.started': () => logs.start(),
    'run.exit': () => reloadRun(),
    'run.removed': () => gone('This run was removed.'),
    'init.step': (ev) => init.live(ev.data),
    'net.request': (ev) => traffic.live('net.request', ev.data),
    'net.denied': (ev) => traffic.live('net.denied', ev.data),
    'layer.applied': () => changes.reload(),
    'layer.discarded': () => changes.reload(),
    dropped: () => { reloadRun(); seed(); audit.reload(); changes.reload(); },
  });
  pg.cleanups.push(() => es.close());

  const seed = () => {
    init.reset();
    traffic.reset();
    api('GET', `${base}/audit?type=init.step`, undefined, { signal })
      .then((a) => init.seed(a.entries.map((e) => e.data)), () => init.seed([]));
    api('GET', `${base}/audit?type=net.&limit=${TRAFFIC_CAP}`, undefined, { signal })
      .then((a) => traffic.seed(a.entries.map((e) => [e.kind, e.data])), () => traffic.seed([]));
  };

  // A run that has not started has no output yet: its logs follow once it runs.
  reloadRun().then(() => { if (pg.run) pg.run.state === 'created' ? logs.waiting() : logs.start(); });
  Promise.race([es.opened, sleep(3000)]).then(() => { if (page === pg) seed(); });
  pg.showTab(tab);

  let busy = false;
  every(2000, async () => {
    if (busy || document.hidden || !pg.run || !hasSandbox(pg.run.state)) return;
    busy = true;
    try {
      const s = await fetchStats(id, signal);
      stats.textContent = s ? `CPU ${fmtCpu(s)} · memory ${fmtMem(s)} · pids ${s.pids ?? '–'}` : '';
    } finally { busy = false; }
  });
}

/** A destructive button: the first click arms it for CONFIRM_MS, the second acts; `after`
 * runs once the action is over (to set the button's state again). */
function confirmButton(btn, armedText, act, after) {
  const label = btn.textContent;
  let timer = null;
  const disarm = () => { clearTimeout(timer); timer = null; btn.textContent = label; btn.classList.remove('armed'); };
  btn.addEventListener('click', async () => {
    if (!timer) {
      btn.textContent = armedText;
      btn.classList.add('armed');
      timer = setTimeout(disarm, CONFIRM_MS);
      return;
    }
    disarm();
    btn.disabled = true;
    try { await act(); } finally { btn.disabled = false; if (after) after(); }
  });
}

/** Feeds a list first from a seed (the audit log), then live, dropping what is seen twice. */
function seededList(render, keyOf) {
  let seen = new Set(), buffer = [];
  const add = (d) => {
    const k = keyOf(d);
    if (seen.has(k)) return;
    if (seen.size > 5000) seen = new Set(); // duplicates only occur around the seed
    seen.add(k);
    render(d);
  };
  return {
    reset() { seen = new Set(); buffer = []; },
    seed(items) { items.forEach(add); const b = buffer; buffer = null; (b || []).forEach(add); },
    live(d) { if (buffer) buffer.push(d); else add(d); },
  };
}

// --- logs -----------------------------------------------------------------------------

function logsPanel(id, signal) {
  const pre = el('pre', { id: 'logs', class: 'logs', tabindex: '0' });
  const status = el('p', { class: 'log-status' });
  let active = false, ctl = null;
  signal.addEventListener('abort', () => ctl && ctl.abort());

  const start = async () => {
    if (active || signal.aborted) return;
    active = true;
    ctl = new AbortController();
    pre.replaceChildren();
    status.textContent = 'connecting…';
    const parsers = {}, decoders = {};
    try {
      const res = await api('GET', `/v1/runs/${enc(id)}/logs?follow=1&tail=2000`, undefined, { signal: ctl.signal, raw: true });
      status.textContent = 'following';
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        const lines = buf.split('\n');
        buf = lines.pop(); // an incomplete last line waits for more
        const frag = document.createDocumentFragment();
        for (const line of lines) {
          if (!line.trim()) continue;
          let l;
          try { l = JSON.parse(line); } catch { continue; }
          const stream = l.stream === 'stderr' ? 'stderr' : l.stream === 'tty' ? 'tty' : 'stdout';
          let text = l.text;
          if (text == null && typeof l.b64 === 'string') {
            // Not valid UTF-8 by itself (a character split across chunks, or binary).
            const d = (decoders[stream] ||= new TextDecoder('utf-8', { fatal: false }));
            try { text = d.decode(Uint8Array.from(atob(l.b64), (c) => c.charCodeAt(0)), { stream: true }); } catch { text = ''; }
          }
          if (typeof text !== 'string') continue;
          const st = (parsers[stream] ||= newAnsi());
          for (const seg of ansiSegments(st, text)) frag.append(segNode(seg, stream === 'stderr' ? 'stderr' : null));
        }
        append(frag);
      }
      status.textContent = 'end of log';
    } catch (e) {
      if (e.name === 'AbortError') return;
      status.textContent = `logs unavailable: ${e.message}`;
    } finally {
      active = false;
    }
  };

  const append = (frag) => {
    if (!frag.childNodes.length) return;
    // Follow the end only when the reader is already there.
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    pre.append(frag);
    if (pre.childNodes.length > LOG_NODE_CAP) {
      for (let n = pre.childNodes.length - LOG_NODE_CAP * 0.75; n > 0; n--) pre.firstChild.remove();
    }
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  };

  const waiting = () => { if (!active) status.textContent = 'waiting for the run to start…'; };
  return { el: el('div', { id: 'panel-logs', class: 'panel', role: 'tabpanel' }, pre, status), start, waiting };
}

// --- init steps -----------------------------------------------------------------------

function initPanel() {
  const ol = el('ol', { id: 'init-steps', class: 'steps' });
  const empty = el('p', { class: 'empty', text: 'No init steps recorded yet.' });
  const list = seededList((s) => {
    if (!s || typeof s !== 'object') return;
    ol.append(el('li', null,
      el('span', { class: 'step-n', text: `${str(s.index)}/${str(s.total)}` }), ' ', str(s.description)));
    empty.hidden = true;
  }, (s) => `${s && s.index}|${s && s.description}`);
  return {
    el: el('div', { id: 'panel-init', class: 'panel', role: 'tabpanel' }, ol, empty),
    reset() { ol.replaceChildren(); empty.hidden = false; list.reset(); },
    seed: list.seed,
    live: list.live,
  };
}

// --- traffic --------------------------------------------------------------------------

function trafficPanel() {
  const tbody = el('tbody');
  const cols = ['time', 'method', 'host', 'path', 'status', 'bytes', 'decision', 'grants', 'rule'];
  const table = el('table', { id: 'traffic', class: 'grid' },
    el('thead', null, el('tr', null, cols.map((c) => el('th', { class: c, text: c[0].toUpperCase() + c.slice(1) })))), tbody);
  const empty = el('p', { class: 'empty', text: 'No network traffic recorded yet.' });

  const render = ([kind, d]) => {
    if (!d || typeof d !== 'object') return;
    const denied = kind === 'net.denied' || (d.decision && d.decision.allowed === false);
    const port = d.port != null && d.port !== 443 && d.port !== 80 ? `:${d.port}` : '';
    const grants = Array.isArray(d.grants) ? d.grants.map((g) => (typeof g === 'string' ? g : str(g && g.name))) : [];
    const tr = el('tr', { class: denied ? 'denied' : null, title: d.detail ? str(d.detail) : null },
      el('td', { class: 'time', text: fmtTime(d.time_ms) }),
      el('td', { class: 'method', text: str(d.method || (d.kind !== 'http' ? d.kind : '')) }),
      el('td', { class: 'host', text: str(d.host) + port }),
      el('td', { class: 'path', text: str(d.path) }),
      el('td', { class: 'status', text: str(d.status) }),
      el('td', { class: 'bytes', title: `${str(d.bytes_up)} bytes up, ${str(d.bytes_down)} bytes down`, text: `↑${fmtBytes(d.bytes_up)} ↓${fmtBytes(d.bytes_down)}` }),
      el('td', { class: `decision ${denied ? 'denied' : 'allowed'}`, text: denied ? 'denied' : 'allowed' }),
      el('td', { class: 'grants', text: grants.join(', ') }),
      el('td', { class: 'rule', text: typeof d.rule === 'string' ? d.rule : '' }));
    tbody.prepend(tr); // newest on top
    while (tbody.rows.length > TRAFFIC_CAP) tbody.lastElementChild.remove();
    empty.hidden = true;
  };
  const list = seededList(render, ([kind, d]) => [kind, d && d.time_ms, d && d.host, d && d.port, d && d.method,
    d && d.path, d && d.status, d && d.bytes_up, d && d.bytes_down, d && d.duration_us].join('|'));
  return {
    el: el('div', { id: 'panel-traffic', class: 'panel', role: 'tabpanel' }, el('div', { class: 'scroll' }, table), empty),
    reset() { tbody.replaceChildren(); empty.hidden = false; list.reset(); },
    seed: list.seed,
    live: (kind, d) => list.live([kind, d]),
  };
}

// --- audit ----------------------------------------------------------------------------

function auditSummary(kind, d) {
  d = d && typeof d === 'object' ? d : {};
  switch (kind) {
    case 'run.state':
      return `${str(d.from || '∅')} → ${str(d.to)}${d.reason ? ` (${d.reason})` : ''}${d.exit_code != null ? `, exit ${d.exit_code}` : ''}`;
    case 'run.created': return Array.isArray(d.command) ? d.command.map(str).join(' ') : str(d.name);
    case 'run.started': return `pid ${str(d.pid)}`;
    case 'run.exit': return [d.exit_code != null ? `exit ${d.exit_code}` : null, d.signal != null ? `signal ${d.signal}` : null,
      d.oom_killed ? 'out of memory' : null, d.reason].filter(Boolean).map(str).join(', ');
    case 'init.step': return `${str(d.index)}/${str(d.total)} ${str(d.description)}`;
    case 'net.request': case 'net.denied':
      return `${str(d.method)} ${str(d.host)}${str(d.path)}${d.status != null ? ` → ${d.status}` : ''}${kind === 'net.denied' ? ` (denied: ${str(d.rule)})` : ''}`;
    case 'grant.used': return `${str(d.grant)} → ${str(d.method)} ${str(d.host)}${str(d.path)}`;
    case 'layer.diffed': case 'layer.applied': return str(d.summary).split('\n')[0];
    default: {
      const j = JSON.stringify(d);
      return j.length > 200 ? j.slice(0, 200) + '…' : j;
    }
  }
}

function auditPanel(base, signal) {
  const status = el('p', { id: 'audit-status' });
  const tbody = el('tbody');
  const info = el('p', { class: 'muted' });
  const refresh = el('button', { type: 'button', text: 'Refresh' });
  let loaded = false;

  const reload = () => attempt(async () => {
    loaded = true;
    status.textContent = 'verifying…';
    status.className = '';
    const [entries, verify] = await Promise.all([
      api('GET', `${base}/audit?limit=1000`, undefined, { signal }),
      api('GET', `${base}/audit/verify`, undefined, { signal }).catch((e) => ({ ok: false, error: e.message })),
    ]);
    if (verify && verify.ok) {
      status.textContent = `verified: ${verify.entries} entries, ${verify.checkpoints} signed checkpoints`;
      status.className = 'ok';
    } else {
      status.textContent = `verification failed: ${str(verify && verify.error) || 'unknown error'}`;
      status.className = 'bad';
    }
    const list = entries.entries || [];
    info.textContent = `${list.length} of ${entries.size} entries shown (newest last)`;
    tbody.replaceChildren(...list.map((e) => el('tr', null,
      el('td', { class: 'seq', text: str(e.seq) }),
      el('td', { class: 'time', text: fmtTime(e.ts) }),
      el('td', { class: 'kind', text: str(e.type) }),
      el('td', { class: 'summary', text: auditSummary(e.type, e.data) }))));
  });
  refresh.addEventListener('click', reload);

  return {
    el: el('div', { id: 'panel-audit', class: 'panel', role: 'tabpanel' },
      el('div', { class: 'toolbar' }, status, refresh), info,
      el('div', { class: 'scroll' }, el('table', { id: 'audit', class: 'grid' },
        el('thead', null, el('tr', null, ['Seq', 'Time', 'Kind', 'Summary'].map((h) => el('th', { text: h })))), tbody))),
    activate: () => { if (!loaded) reload(); },
    reload: () => { if (loaded) reload(); },
  };
}

// --- changes --------------------------------------------------------------------------

const KIND = { A: 'added', M: 'modified', D: 'deleted' };

/** escape_path of paddock-layer: how the patch's `diff --git` headers spell a path. */
function escapePath(p) {
  let out = '';
  for (const ch of p) {
    const c = ch.codePointAt(0);
    if (ch === '\\') out += '\\\\';
    else if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069) || c === 0x200e || c === 0x200f) {
      out += `\\u{${c.toString(16)}}`;
    } else out += ch;
  }
  return out;
}

/** Splits a unified patch into header line → [file parts] (a type change has two parts). */
function splitPatch(patch) {
  const parts = new Map();
  let cur = null;
  for (const line of str(patch).replace(/\n$/, '').split('\n')) {
    if (line.startsWith('diff --git ')) {
      cur = [line];
      if (!parts.has(line)) parts.set(line, []);
      parts.get(line).push(cur);
    } else if (cur) cur.push(line);
  }
  return parts;
}

function diffLines(lines) {
  const MAX = 5000;
  const frag = document.createDocumentFragment();
  for (const line of lines.slice(0, MAX)) {
    let cls = null;
    if (line.startsWith('+++ ') || line.startsWith('--- ')) cls = 'diff-file';
    else if (line.startsWith('+')) cls = 'diff-add';
    else if (line.startsWith('-')) cls = 'diff-del';
    else if (line.startsWith('@@')) cls = 'diff-hunk';
    else if (/^(diff --git |# |new |deleted |old mode|new mode|Binary files|File too large)/.test(line)) cls = 'diff-meta';
    frag.append(el('span', { class: cls, text: line.replace(CTRL_RE, '') + '\n' }));
  }
  if (lines.length > MAX) frag.append(el('span', { class: 'diff-meta', text: `… ${lines.length - MAX} more lines (see \`paddock diff\`)\n` }));
  return frag;
}

function changesPanel(base, signal, getRun) {
  const summary = el('p', { class: 'changes-summary' });
  const ul = el('ul', { id: 'changes', class: 'changes' });
  const view = el('pre', { id: 'diff-view', class: 'diff' });
  const result = el('div', { id: 'review-result', hidden: true });
  const btnApply = el('button', { id: 'btn-apply', type: 'button', class: 'primary', text: 'Apply' });
  const btnDiscard = el('button', { id: 'btn-discard', type: 'button', class: 'danger', text: 'Discard' });
  const note = el('span', { class: 'muted' });
  let loaded = false, parts = new Map(), count = 0;

  const setButtons = () => {
    const run = getRun();
    const ended = run && !isLive(run.state);
    btnApply.disabled = btnDiscard.disabled = !ended || count === 0;
    note.textContent = run && !ended ? 'Stop the run to apply or discard its changes.' : '';
  };

  const item = (e) => {
    const path = str(e.path);
    const kind = KIND[e.status] || 'modified';
    const li = el('li', { 'data-path': path, class: e.held ? 'held' : null, tabindex: '0', role: 'button' },
      el('span', { class: `kind kind-${kind}`, text: kind }),
      el('span', { class: 'path', text: path + (e.kind === 'dir' ? '/' : '') }),
      e.held ? el('span', { class: 'badge held-badge', title: e.held.reason === 'autorun' ? `auto-run file (${str(e.held.pattern)})` : 'git metadata',
        text: e.held.reason === 'autorun' ? 'held back: auto-run' : 'held back: .git' }) : null,
      Array.isArray(e.notes) && e.notes.length ? el('span', { class: 'notes', text: e.notes.map(str).join(', ') }) : null);
    const show = () => {
      for (const other of ul.querySelectorAll('li.selected')) other.classList.remove('selected');
      li.classList.add('selected');
      const chunks = parts.get(`diff --git a/${escapePath(path)} b/${escapePath(path)}`);
      view.replaceChildren(chunks ? diffLines(chunks.flat()) : el('span', { class: 'diff-meta', text: 'No patch for this path.' }));
    };
    li.addEventListener('click', show);
    li.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); show(); } });
    return li;
  };

  const reload = () => attempt(async () => {
    loaded = true;
    let d;
    try {
      d = await api('GET', `${base}/diff?patch=1`, undefined, { signal });
    } catch (e) {
      if (e.status !== 409) throw e; // a bind-mounted run has no layer to review
      summary.textContent = e.message;
      ul.replaceChildren(); view.replaceChildren(); count = 0; setButtons();
      return;
    }
    const ch = d.changes && !Array.isArray(d.changes) ? d.changes : { entries: [] };
    const entries = Array.isArray(ch.entries) ? ch.entries : [];
    count = entries.length;
    parts = splitPatch(d.patch);
    const normal = entries.filter((e) => !e.held), held = entries.filter((e) => e.held);
    summary.textContent = count
      ? `${ch.added || 0} added, ${ch.modified || 0} modified, ${ch.deleted || 0} deleted${held.length ? `; ${held.length} held back` : ''}`
      : 'No changes.';
    setKids(ul, normal.map(item), held.length ? el('li', { class: 'held-header' },
      '⚠ Held back: code that runs on the host (.git, auto-run files). Apply will not bring these; use `paddock apply --include-git` / `--include-autorun` from the CLI after reviewing them.') : null,
    held.map(item));
    view.replaceChildren(el('span', { class: 'diff-meta', text: count ? 'Select a file to see its diff.' : '' }));
    setButtons();
  });

  const outcome = (text, ok) => {
    result.textContent = text;
    result.className = ok ? 'ok' : 'bad';
    result.hidden = false;
  };

  btnApply.addEventListener('click', () => attempt(async () => {
    btnApply.disabled = true;
    try {
      const r = await api('POST', `${base}/apply`, {}, { signal });
      outcome(`Applied.\n${str(r && r.summary)}`, true);
    } catch (e) {
      outcome(`Apply failed: ${e.message}${e.hint ? `\n${e.hint}` : ''}`, false);
      throw e;
    } finally { await reload(); }
  }));
  confirmButton(btnDiscard, 'Click again to discard', () => attempt(async () => {
    try {
      const r = await api('POST', `${base}/discard`, {}, { signal });
      outcome(`Discarded ${str(r && r.discarded)} change(s).`, true);
    } catch (e) {
      outcome(`Discard failed: ${e.message}`, false);
      throw e;
    } finally { await reload(); }
  }), setButtons);

  return {
    el: el('div', { id: 'panel-changes', class: 'panel', role: 'tabpanel' },
      el('div', { class: 'toolbar' }, summary, btnApply, btnDiscard, note), result,
      el('div', { class: 'review' }, ul, view)),
    activate: () => { if (!loaded) reload(); },
    reload: () => { if (loaded) reload(); },
    runChanged: setButtons,
  };
}

// ---------------------------------------------------------------------------
// Start

async function main() {
  $('.banner-close').addEventListener('click', () => { $('#error-banner').hidden = true; });
  try {
    const s = await api('GET', '/ui/session');
    app.csrf = str(s && s.csrf);
    $('#version').textContent = str(s && s.version);
  } catch (e) {
    showError(e);
    if (app.dead) return;
  }
  window.addEventListener('hashchange', route);
  route();
}

document.addEventListener('DOMContentLoaded', main);
