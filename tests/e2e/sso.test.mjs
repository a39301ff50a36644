// Single sign-on end to end: headless Chromium signs in to confab through a
// real OpenID Connect provider (the certified oidc-provider package, run by
// tests/oidc/provider.mjs on a free port): the sign-in page's button, the
// provider's page, back into the app signed in; the linked identity shows
// in settings; a refused identity comes back to the sign-in page with a
// sentence. axe-core checks the sign-in page with its buttons.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { launch, watchPage } from './lib/browser.mjs';
import { startApp, unexpectedProblems, newContext } from './lib/app.mjs';
import { REPO_ROOT } from './lib/server.mjs';

const require = createRequire(import.meta.url);
const AXE_PATH = require.resolve('axe-core/axe.min.js');

let app;
let browser;
let provider;
let providerPort;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts the provider; resolves once it listens. */
function startProvider(port, redirectUri) {
  const proc = spawn(process.execPath, [path.join(REPO_ROOT, 'tests/oidc/provider.mjs'), String(port), redirectUri], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  return new Promise((resolve, reject) => {
    readline.createInterface({ input: proc.stdout }).on('line', (line) => {
      if (line.startsWith('READY ')) resolve(proc);
    });
    proc.on('exit', (code) => reject(new Error(`the OIDC provider exited (${code}): ${stderr}`)));
  });
}

before(async () => {
  const port = await freePort();
  providerPort = port;
  app = await startApp({
    extraConfig: [
      '[[oidc]]',
      'name = "test"',
      'display_name = "Test Provider"',
      `issuer = "http://127.0.0.1:${port}"`,
      'client_id = "confab"',
      'client_secret = "confab-test-secret-0123456789abcdef"',
      'scopes = ["email", "profile", "groups"]',
      'auto_create = true',
      'allowed_domains = ["example.com"]',
      'admin_groups = ["confab-admins"]',
      '',
    ].join('\n'),
  });
  provider = await startProvider(port, `${app.url}/api/auth/oidc/test/callback`);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  provider?.kill();
  await app?.stop();
});

test('a person signs in with the provider button and lands in the app', { timeout: 120_000 }, async (t) => {
  const context = await newContext(browser, { viewport: { width: 390, height: 844 } });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await page.goto(app.url + '/login');
  const button = page.getByRole('link', { name: 'Sign in with Test Provider' });
  await button.waitFor();
  await button.click();
  // The provider's own page.
  await page.getByLabel('Account').fill('alice');
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByRole('textbox', { name: 'Message' }).waitFor();
  assert.equal(new URL(page.url()).origin, app.url);
  // Signed in as the account made for alice (an admin by her group).
  const me = await page.evaluate(async () => (await fetch('/api/auth/me')).json());
  assert.equal(me.user.username, 'alice');
  assert.equal(me.user.role, 'admin');
  // Settings list the linked identity.
  await page.goto(app.url + '/settings');
  const list = page.getByTestId('identities');
  await list.waitFor();
  assert.match(await list.innerText(), /Test Provider/);
  // The provider's own page has no favicon; that 404 is not confab's.
  const providerFavicon = new RegExp(`127\\.0\\.0\\.1:${providerPort}/favicon\\.ico`);
  assert.deepEqual(unexpectedProblems(watch, [providerFavicon]), []);
});

test('a refused identity comes back to the sign-in page with a sentence', { timeout: 120_000 }, async (t) => {
  const context = await newContext(browser, { colorScheme: 'dark' });
  t.after(() => context.close());
  const page = await context.newPage();
  await page.goto(app.url + '/login');
  await page.getByRole('link', { name: 'Sign in with Test Provider' }).click();
  await page.getByLabel('Account').fill('carol');
  await page.getByRole('button', { name: 'Continue' }).click();
  const alert = page.getByRole('alert');
  await alert.waitFor();
  assert.match(await alert.innerText(), /may not sign in to this server/);
  assert.equal(new URL(page.url()).pathname, '/login');
});

test('axe-core: the sign-in page with its provider buttons', { timeout: 120_000 }, async (t) => {
  const results = [];
  for (const colorScheme of ['light', 'dark']) {
    const context = await newContext(browser, { bypassCSP: true, colorScheme });
    t.after(() => context.close());
    const page = await context.newPage();
    await page.goto(app.url + '/login');
    await page.getByTestId('sso-buttons').waitFor();
    await page.addScriptTag({ path: AXE_PATH });
    const r = await page.evaluate(async () => {
      // eslint-disable-next-line no-undef
      const res = await axe.run(document, { resultTypes: ['violations'] });
      return res.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
    });
    results.push(...r.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => ({ colorScheme, ...v })));
  }
  assert.deepEqual(results, []);
});
