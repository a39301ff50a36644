// Smoke test: the real confab binary serves the browser app shell to headless
// Chromium under a strict CSP, with SPA fallback, and without console errors.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { effectiveScriptSrc, launch, screenshot, watchPage } from './lib/browser.mjs';

const T = { timeout: 60_000 };

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Open a fresh page on `path`, watching it for errors from the start. */
async function open(t, path) {
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  const responses = [];
  page.on('response', (r) => responses.push(r));
  const response = await page.goto(server.url + path, { waitUntil: 'load' });
  // Let the ES module run and any late CSP reports / errors arrive.
  await page.waitForLoadState('networkidle');
  return { page, watch, response, responses };
}

/** app.js ran: it replaced index.html's boot spinner inside #app. */
async function assertAppMounted(page) {
  await page
    .waitForFunction(() => document.querySelector('#app') && !document.querySelector('#app .boot'), null, { timeout: 10_000 })
    .catch(async () => {
      assert.fail(`app.js did not mount into #app; #app is: ${await page.locator('#app').innerHTML().catch(() => '(missing)')}`);
    });
}

function assertCleanPage(watch) {
  assert.deepEqual(watch.problems(), [], 'page had console errors, CSP violations or failed requests');
}

test('server logs its URL and a first-run setup URL; /health is ok', T, async () => {
  assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.ok(server.setupUrl, 'expected a "first-run setup" log line on a fresh data dir');
  const setup = new URL(server.setupUrl);
  assert.equal(setup.origin, server.url);
  assert.equal(setup.pathname, '/setup');
  assert.ok(setup.searchParams.get('token'), 'setup URL carries a token');

  const res = await fetch(`${server.url}/health`);
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.status, 'ok');
  assert.equal(typeof body.version, 'string');
});

test('/ renders the app shell under a strict CSP without errors', T, async (t) => {
  const { page, watch, response, responses } = await open(t, '/');

  assert.equal(response.status(), 200);
  assert.match(response.headers()['content-type'] ?? '', /^text\/html/);

  const cspHeader = response.headers()['content-security-policy'];
  assert.ok(cspHeader, 'response has a content-security-policy header');
  // Several policies arrive joined by newlines; each one must forbid inline script.
  const policies = cspHeader.split('\n');
  const scriptSrcs = policies.map(effectiveScriptSrc).filter(Boolean);
  assert.ok(scriptSrcs.length > 0, `CSP restricts scripts (script-src or default-src): ${cspHeader}`);
  for (const src of scriptSrcs) {
    assert.ok(!src.includes("'unsafe-inline'"), `script-src allows 'unsafe-inline': ${cspHeader}`);
  }

  // The served document is titled "confab"; the app may then refine it ("Set up · confab").
  assert.match(await response.text(), /<title>confab<\/title>/);
  assert.match(await page.title(), /\bconfab$/);
  await assertAppMounted(page);

  const appJs = responses.find((r) => new URL(r.url()).pathname === '/app.js');
  assert.ok(appJs, 'the page loaded /app.js');
  assert.equal(appJs.status(), 200);
  assert.match(appJs.headers()['content-type'] ?? '', /javascript/);

  // The app links its favicon and manifest, and both are served.
  const links = await page.evaluate(() => ({
    icon: document.querySelector('link[rel=icon]')?.getAttribute('href'),
    manifest: document.querySelector('link[rel=manifest]')?.getAttribute('href'),
  }));
  assert.equal(links.icon, '/favicon.svg');
  assert.equal(links.manifest, '/manifest.webmanifest');
  const icon = await fetch(server.url + '/favicon.svg');
  assert.match(icon.headers.get('content-type') ?? '', /image\/svg\+xml/);
  const manifest = await (await fetch(server.url + '/manifest.webmanifest')).json();
  assert.equal(manifest.name, 'confab');
  // A fresh server shows the setup screen.
  await page.getByRole('heading', { name: 'Welcome to confab' }).waitFor();

  assertCleanPage(watch);
  await screenshot(page, 'smoke');
});

test('vendored libraries are served immutable, as JavaScript modules', T, async () => {
  const manifest = await (await fetch(`${server.url}/vendor/manifest.json`)).json();
  for (const pkg of manifest.packages) {
    const js = pkg.files.find((f) => /\.(m?js)$/.test(f.path));
    if (!js) continue;
    const res = await fetch(`${server.url}/vendor/${js.path}`);
    assert.equal(res.status, 200, js.path);
    assert.match(res.headers.get('content-type') ?? '', /javascript/, js.path);
    assert.match(res.headers.get('cache-control') ?? '', /immutable/, js.path);
  }
  const index = await fetch(`${server.url}/`);
  assert.equal(index.headers.get('cache-control'), 'no-cache');
});

test('an unknown non-API path like /c/123 falls back to the same page', T, async (t) => {
  const { page, watch, response } = await open(t, '/c/123');
  assert.equal(response.status(), 200);
  assert.match(response.headers()['content-type'] ?? '', /^text\/html/);
  assert.match(await response.text(), /<title>confab<\/title>/);
  assert.match(await page.title(), /\bconfab$/);
  await assertAppMounted(page);
  assertCleanPage(watch);

  const [root, deep] = await Promise.all(
    ['/', '/c/123'].map((p) => fetch(server.url + p).then((r) => r.text())),
  );
  assert.equal(deep, root, '/c/123 serves the same document as /');
});

test('/api/nope is a JSON 404, not the SPA fallback', T, async () => {
  const res = await fetch(`${server.url}/api/nope`);
  assert.equal(res.status, 404);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const body = await res.json();
  assert.equal(body.code, 'NOT_FOUND');
  assert.equal(typeof body.message, 'string');
  assert.equal(typeof body.request_id, 'string');
});
