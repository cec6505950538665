// The dashboard benchmark's driver (run by bench/dashboard.sh, which sets PADDOCK,
// PADDOCK_HOME, RUNS, RATE, SECS and the working directory).
//
// 1. RUNS runs start, each waiting for /tmp/go inside its sandbox before it makes RATE
//    DNS lookups per second of a denied name (one `net.denied` event each).
// 2. Idle: the API's latency with those runs live and quiet, no browser.
// 3. Load: /tmp/go in every run (`paddock exec`), two chromium processes on the
//    dashboard, each following the whole event stream; the API's latency again.
// 4. Ratios, events/s per browser, daemon RSS, browser JS heaps.
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';

const require = createRequire(import.meta.url);
const here = path.dirname(new URL(import.meta.url).pathname);
const { chromium } = require(path.join(here, '../tests/ui/node_modules/playwright-core'));
const run = promisify(execFile);

const PADDOCK = process.env.PADDOCK;
const RUNS = Number(process.env.RUNS || 50);
const RATE = Number(process.env.RATE || 20);
const SECS = Number(process.env.SECS || 20);
const SOCK = path.join(process.env.PADDOCK_HOME, 'daemon.sock');
const SAMPLES = 1000;

function get(p) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = http.request({ socketPath: SOCK, path: p, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(Number(process.hrtime.bigint() - t0) / 1e6));
    });
    req.on('error', reject);
    req.end();
  });
}

async function json(p) {
  return new Promise((resolve, reject) => {
    http.get({ socketPath: SOCK, path: p, agent: false }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(JSON.parse(body)));
    }).on('error', reject);
  });
}

const pct = (xs, q) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

async function latency(p) {
  const xs = [];
  for (let i = 0; i < SAMPLES; i++) {
    xs.push(await get(p));
    // Spread the samples over time (the load is not steady from one ms to the next).
    if (i % 50 === 49) await new Promise((r) => setTimeout(r, 20));
  }
  return { p50: pct(xs, 0.5), p99: pct(xs, 0.99) };
}

/** CPU seconds (user + system) of a process. */
function cpuOf(pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch { return 0; }
}

/** CPU seconds of every process whose command is `name`. */
function cpuByName(name) {
  let t = 0;
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/comm`, 'utf8').trim() === name) t += cpuOf(d);
    } catch { /* gone */ }
  }
  return t;
}

/** [busy, total] CPU seconds of the machine. */
function machine() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0) / 100;
  return [total - (f[3] + f[4]) / 100, total];
}

function rssMb(pid) {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(s)[1]) / 1024;
}

const loadScript = `
import socket, time, os
while not os.path.exists("/tmp/go"):
    time.sleep(0.1)
period = 1.0 / ${RATE}
next_t = time.monotonic()
i = 0
while True:
    i += 1
    try:
        socket.getaddrinfo("load%d.denied.example" % i, 80, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        pass
    next_t += period
    time.sleep(max(0, next_t - time.monotonic()))
`;

async function main() {
  console.log(`dashboard benchmark: ${RUNS} runs x ${RATE} events/s for ${SECS} s, two browsers`);
  fs.writeFileSync('load.py', loadScript);
  for (let i = 1; i <= RUNS; i++) {
    await run(PADDOCK, ['run', '-d', '-q', '--name', `load-${i}`, '--', '/usr/bin/python3', 'load.py']);
  }
  const health = await json('/v1/health');
  const pid = health.pid;
  console.log(`${RUNS} runs live; daemon pid ${pid}`);
  await new Promise((r) => setTimeout(r, 2000));

  const idle = { runs: await latency('/v1/runs'), health: await latency('/v1/health'), rss: rssMb(pid) };

  // Two browsers, each logged in with its own one-time link.
  const browsers = [];
  const pages = [];
  for (let b = 0; b < 2; b++) {
    const { stdout } = await run(PADDOCK, ['ui', '--url']);
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu'],
    });
    const page = await browser.newPage();
    await page.goto(stdout.trim());
    await page.waitForSelector('table#runs tr[data-run-id]', { timeout: 30000 });
    if (process.env.BARE === '1') {
      // The stream alone, without the dashboard's pages (what the pages themselves cost).
      await page.goto(new URL('/ui/session', stdout.trim()).href);
    } else if (b === 1) {
      const id = await page.getAttribute('table#runs tr[data-run-id]', 'data-run-id');
      await page.goto(new URL(`/#/runs/${id}/traffic`, stdout.trim()).href);
    }
    // Follow the whole stream, as a second dashboard tab would.
    await page.evaluate(() => {
      window.__events = 0;
      const es = new EventSource('/v1/events');
      es.onmessage = () => window.__events++;
      es.addEventListener('net.denied', () => window.__events++);
      es.addEventListener('net.request', () => window.__events++);
      es.addEventListener('dropped', (e) => { window.__dropped = (window.__dropped || 0) + JSON.parse(e.data).data.dropped; });
    });
    browsers.push(browser);
    pages.push(page);
  }

  await Promise.all(
    Array.from({ length: RUNS }, (_, i) => run(PADDOCK, ['exec', `load-${i + 1}`, '--', 'touch', '/tmp/go'])),
  );
  await new Promise((r) => setTimeout(r, 3000));
  const start = await Promise.all(pages.map((p) => p.evaluate(() => window.__events)));
  const t0 = Date.now();
  const cpu0 = { daemon: cpuOf(pid), chromium: cpuByName('chromium'), python: cpuByName('python3'), machine: machine() };
  const loaded = { runs: await latency('/v1/runs'), health: await latency('/v1/health') };
  const rest = SECS * 1000 - (Date.now() - t0);
  if (rest > 0) await new Promise((r) => setTimeout(r, rest));
  const elapsed = (Date.now() - t0) / 1000;
  const m1 = machine();
  const cpu = {
    daemon: (cpuOf(pid) - cpu0.daemon) / elapsed,
    chromium: (cpuByName('chromium') - cpu0.chromium) / elapsed,
    python: (cpuByName('python3') - cpu0.python) / elapsed,
    busy: (m1[0] - cpu0.machine[0]) / (m1[1] - cpu0.machine[1]),
  };
  const end = await Promise.all(pages.map((p) => p.evaluate(() => [window.__events, window.__dropped || 0])));
  const heaps = await Promise.all(pages.map((p) => p.evaluate(() => performance.memory.usedJSHeapSize / 1048576)));
  loaded.rss = rssMb(pid);
  const perSec = end.map(([n], i) => (n - start[i]) / elapsed);

  const f = (x) => x.toFixed(3);
  console.log('');
  console.log('| request (daemon socket) | idle p50 | idle p99 | loaded p50 | loaded p99 | p99 ratio | target |');
  console.log('|---|---:|---:|---:|---:|---:|---|');
  for (const k of ['runs', 'health']) {
    const r = loaded[k].p99 / idle[k].p99;
    console.log(`| GET /v1/${k} | ${f(idle[k].p50)} ms | ${f(idle[k].p99)} ms | ${f(loaded[k].p50)} ms | ${f(loaded[k].p99)} ms | ${r.toFixed(2)}x | <= 1.2x: ${r <= 1.2 ? 'met' : 'NOT met'} |`);
  }
  console.log('');
  console.log('| figure | value |');
  console.log('|---|---:|');
  perSec.forEach((x, i) => console.log(`| events/s received by browser ${i + 1} | ${x.toFixed(0)} (dropped ${end[i][1]}) |`));
  console.log(`| daemon RSS idle (${RUNS} quiet runs) | ${idle.rss.toFixed(1)} MB |`);
  console.log(`| daemon RSS loaded | ${loaded.rss.toFixed(1)} MB |`);
  heaps.forEach((h, i) => console.log(`| browser ${i + 1} JS heap | ${h.toFixed(1)} MB |`));
  const events = perSec.length ? perSec[0] : 0;
  console.log(`| daemon CPU, loaded | ${(cpu.daemon * 100).toFixed(0)}% of a core (${(cpu.daemon * 1e6 / Math.max(1, events)).toFixed(0)} µs per event) |`);
  console.log(`| both chromiums' CPU | ${(cpu.chromium * 100).toFixed(0)}% of a core |`);
  console.log(`| the ${RUNS} load generators' CPU | ${(cpu.python * 100).toFixed(0)}% of a core |`);
  console.log(`| machine busy, loaded | ${(cpu.busy * 100).toFixed(0)}% of ${os.cpus().length} cores |`);
  for (const b of browsers) await b.close();
}

const watchdog = setTimeout(() => { console.error('dashboard benchmark: timed out'); process.exit(2); }, (SECS + 600) * 1000);
main().then(() => { clearTimeout(watchdog); }, (e) => { console.error(e); process.exit(1); });
