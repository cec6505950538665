// A real browser on paddock's dashboard (run by crates/paddock-cli/tests/dashboard.rs).
//
// Debian's chromium, driven by playwright-core, logs in with a one-time link, watches a run
// appear live, reads its logs, init steps, traffic and audit, reviews its change, stops it
// and applies the change; each step takes a screenshot.
//
// Environment:
//   PADDOCK    the paddock binary (PADDOCK_HOME, XDG_CONFIG_HOME… are inherited by it)
//   WORKSPACE  the run's workspace (a directory; a `paddock.yaml` with `network.policy:
//              strict` is written there if it has none, so the run's request is denied)
//   SHOTS      directory for the screenshots
//   LOGIN_URL  from `paddock ui --url`
//   CHROMIUM   the browser (default /usr/bin/chromium)
//
// Prints one line per step passed; exits 0 on success, 1 with the reason on failure, 2 when
// the whole run takes longer than two minutes.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const TOTAL_MS = 120_000;
const STEP_MS = 30_000;
const NAME = 'web-demo';
const HOST = 'denied.example';
const FILE = 'made-by-web-demo.txt';
const CONTENT = 'written inside the sandbox by web-demo';
const ECHO = 'hello from web-demo';

const overall = setTimeout(() => {
  console.error(`FAIL: the dashboard test took longer than ${TOTAL_MS / 1000} s`);
  process.exit(2);
}, TOTAL_MS);
overall.unref();

const need = (k) => {
  const v = process.env[k];
  if (!v) fail(`environment variable ${k} is not set`);
  return v;
};

function fail(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}

const PADDOCK = need('PADDOCK');
const WORKSPACE = need('WORKSPACE');
const SHOTS = need('SHOTS');
const LOGIN_URL = need('LOGIN_URL');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const run = promisify(execFile);

let browser = null;
let page = null;
const pageErrors = [];
const consoleErrors = [];

/** One step: `what` is the failure's explanation; a step failing takes a screenshot. */
async function step(name, what, fn) {
  try {
    await fn();
  } catch (e) {
    let shot = '';
    if (page) {
      const p = path.join(SHOTS, `failed-${name}.png`);
      try { await page.screenshot({ path: p, fullPage: true, timeout: 5000 }); shot = ` (screenshot: ${p})`; } catch { /* none */ }
    }
    const extra = [
      pageErrors.length ? `page errors: ${pageErrors.join(' | ')}` : '',
      consoleErrors.length ? `console errors: ${consoleErrors.join(' | ')}` : '',
      page ? `page URL: ${page.url()}` : '',
    ].filter(Boolean).join('\n');
    if (browser) await browser.close().catch(() => {});
    fail(`${name}: ${what}: ${e && e.message ? e.message.split('\n')[0] : e}${shot}${extra ? '\n' + extra : ''}`);
  }
  console.log(`ok: ${name}`);
}

const shot = (file) => page.screenshot({ path: path.join(SHOTS, file), fullPage: true });

/** The dashboard's error banner must stay hidden. */
async function noBanner() {
  const banner = page.locator('#error-banner');
  if (await banner.isVisible()) throw new Error(`the error banner shows: ${(await banner.innerText()).trim()}`);
}

fs.mkdirSync(SHOTS, { recursive: true });
const policy = path.join(WORKSPACE, 'paddock.yaml');
if (!fs.existsSync(policy)) fs.writeFileSync(policy, 'network:\n  policy: strict\n');
fs.rmSync(path.join(WORKSPACE, FILE), { force: true });

await step('launch', `could not start ${CHROMIUM} through playwright-core`, async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: STEP_MS });
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  ctx.setDefaultTimeout(STEP_MS);
  page = await ctx.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e && e.message)));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const url = (m.location() && m.location().url) || '';
    // A run's stats answer 409 once its sandbox is gone; the page polls them and may ask
    // just as the run stops. Every other failed load or CSP violation counts.
    if (/^Failed to load resource/.test(m.text()) && /\/v1\/runs\/[^/]+\/stats(\?|$)/.test(url)) return;
    consoleErrors.push(`${m.text()}${url ? ` (${url})` : ''}`);
  });
});

// a. The login link: a session cookie, then the runs table.
await step('login', 'the login link did not lead to the runs table', async () => {
  const resp = await page.goto(LOGIN_URL, { waitUntil: 'load' });
  if (!resp || resp.status() !== 200) throw new Error(`the landing page answered ${resp && resp.status()}`);
  const url = new URL(page.url());
  if (url.pathname !== '/' || url.search) throw new Error(`landed on ${page.url()}, not /`);
  await page.locator('table#runs').waitFor();
  await page.locator('#live.on').waitFor(); // the event stream is open
  if (await page.locator('#login-needed').isVisible()) throw new Error('the page asks to log in again');
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name.startsWith('paddock_session_'));
  if (!session) throw new Error(`no session cookie: ${JSON.stringify(cookies.map((c) => c.name))}`);
  if (!session.httpOnly || session.sameSite !== 'Strict') throw new Error(`the session cookie is not HttpOnly+Strict: ${JSON.stringify(session)}`);
  await noBanner();
  await shot('runs.png');
});

// b. A run started from outside appears in the open page, without a reload.
let runId = null;
await step('live run', `run ${NAME} did not appear in the runs table without a reload`, async () => {
  const script = [
    `echo '${ECHO}'`,
    // Through the egress proxy (http_proxy); the strict policy denies it: a net.denied row.
    `curl -sS -m 10 -o /dev/null -w 'proxy answered %{http_code}\\n' http://${HOST}/from-web-demo`,
    `printf '%s\\n' '${CONTENT}' > ${FILE}`,
    'echo ready',
    'exec sleep 600',
  ].join('; ');
  const navigations = [];
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations.push(f.url()); });
  const { stdout } = await run(PADDOCK, ['run', '-d', '--json', '--name', NAME, '--', 'sh', '-c', script],
    { cwd: WORKSPACE, timeout: STEP_MS });
  runId = JSON.parse(stdout).id;
  if (!/^run_[0-9a-f]{12}$/.test(runId || '')) throw new Error(`paddock run -d printed no run id: ${stdout}`);
  const row = page.locator(`table#runs tr[data-run-id="${runId}"]`);
  await row.filter({ hasText: NAME }).waitFor();
  await row.locator('td.state', { hasText: 'running' }).waitFor();
  if (navigations.length) throw new Error(`the page navigated: ${navigations.join(', ')}`);
  await shot('runs-live.png');
});

// c. The run's page: traffic, logs, init steps, audit.
await step('open run', `clicking run ${NAME} did not open its page`, async () => {
  await page.locator(`table#runs tr[data-run-id="${runId}"] a.run-link`).click();
  await page.waitForURL((u) => u.hash.startsWith(`#/runs/${runId}`));
  await page.locator('#run-title', { hasText: NAME }).waitFor();
  await page.locator('#run-state', { hasText: 'running' }).waitFor();
});

await step('logs', `the logs tab did not show the run's output ("${ECHO}")`, async () => {
  await page.locator('a[data-tab=logs]').click();
  await page.locator('#panel-logs').waitFor();
  await page.locator('pre#logs', { hasText: ECHO }).waitFor();
  await page.locator('pre#logs', { hasText: 'ready' }).waitFor(); // the file is written
  await shot('logs.png');
});

await step('traffic', `the traffic tab did not show the denied request to ${HOST}`, async () => {
  await page.locator('a[data-tab=traffic]').click();
  await page.waitForURL((u) => u.hash === `#/runs/${runId}/traffic`);
  const row = page.locator('table#traffic tbody tr').filter({
    has: page.locator('td.host', { hasText: new RegExp(`^${HOST.replace('.', '\\.')}$`) }),
  }).first();
  await row.waitFor();
  const cells = {};
  for (const c of ['method', 'path', 'decision', 'status']) cells[c] = (await row.locator(`td.${c}`).innerText()).trim();
  if (cells.method !== 'GET' || cells.path !== '/from-web-demo' || cells.decision !== 'denied' || cells.status !== '403') {
    throw new Error(`the row reads ${JSON.stringify(cells)}`);
  }
  await shot('traffic.png');
});

await step('init', 'the init tab showed no setup steps', async () => {
  await page.locator('a[data-tab=init]').click();
  await page.locator('ol#init-steps li').first().waitFor();
  await shot('init.png');
});

await step('audit', "the audit tab did not verify the run's audit log", async () => {
  await page.locator('a[data-tab=audit]').click();
  const status = page.locator('#audit-status.ok', { hasText: /^verified: [1-9]\d* entries/ });
  await status.waitFor();
  await page.locator('table#audit tbody tr').first().waitFor();
  await shot('audit.png');
});

// d. The change: listed, its diff shown. Apply needs the run stopped (the page says so).
await step('changes', `the changes tab did not show ${FILE} and its diff`, async () => {
  await page.locator('a[data-tab=changes]').click();
  const li = page.locator(`ul#changes li[data-path="${FILE}"]`);
  await li.waitFor();
  await li.click();
  await page.locator('pre#diff-view', { hasText: `+${CONTENT}` }).waitFor();
  if (await page.locator('#btn-apply').isEnabled()) throw new Error('Apply is enabled while the run is live');
  await shot('changes.png');
});

// e. Stop.
await step('stop', 'the Stop button did not stop the run', async () => {
  await page.locator('#btn-stop').click();
  await page.locator('#run-state', { hasText: 'stopped' }).waitFor();
  await page.locator('#btn-stop:disabled').waitFor();
  await noBanner();
  await shot('stopped.png');
});

await step('apply', `Apply did not bring ${FILE} into the workspace`, async () => {
  await page.locator('a[data-tab=changes]').click();
  const apply = page.locator('#btn-apply:enabled');
  await apply.waitFor();
  await apply.click();
  await page.locator('#review-result.ok', { hasText: 'Applied' }).waitFor();
  const file = path.join(WORKSPACE, FILE);
  if (!fs.existsSync(file)) throw new Error(`${file} does not exist after Apply`);
  const got = fs.readFileSync(file, 'utf8');
  if (got !== `${CONTENT}\n`) throw new Error(`${file} holds ${JSON.stringify(got)}`);
  await noBanner();
  await shot('applied.png');
});

await step('clean page', 'the page logged errors', async () => {
  if (pageErrors.length) throw new Error(`uncaught: ${pageErrors.join(' | ')}`);
  // A CSP violation or a failed request of the page's own would show here.
  if (consoleErrors.length) throw new Error(consoleErrors.join(' | '));
});

await browser.close();
console.log('ok: all steps');
process.exit(0);
