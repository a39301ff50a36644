// The HTTPS page of the admin screen (/admin/tls), in a real browser against
// the real binary: with automatic certificates whose CA cannot be reached
// (the self-signed stand-in, the failure with what to do about it, the next
// attempt), and with plain HTTP ("HTTPS is off"). Issuance itself is tested
// against Pebble in tests/it/tls_acme.rs.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createRequire } from 'node:module';
import { launch, watchPage, screenshot } from './lib/browser.mjs';
import { startServer } from './lib/server.mjs';
import { startApp, signIn, unexpectedProblems, newContext, ADMIN } from './lib/app.mjs';

const require = createRequire(import.meta.url);
let AXE_PATH;
try {
  AXE_PATH = require.resolve('axe-core/axe.min.js');
} catch {
  AXE_PATH = null;
}

const DOMAIN = 'chat.confab.test';

let browser;

before(async () => {
  // The certificate is for DOMAIN: the browser asks for it by name, as a
  // person would, and reaches this machine.
  browser = await launch({ args: [`--host-resolver-rules=MAP ${DOMAIN} 127.0.0.1`] });
});

after(async () => {
  await browser?.close();
});

/** A loopback port nothing listens on. */
function closedPort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function axeViolations(page) {
  await page.addScriptTag({ path: AXE_PATH });
  const r = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const res = await axe.run(document, { resultTypes: ['violations'] });
    return res.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  return r.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

test('admin HTTPS page: self-signed stand-in and the CA failure with what to do', { timeout: 120_000 }, async (t) => {
  assert.ok(AXE_PATH, 'axe-core is installed in tests/e2e/node_modules (npm ci in tests/e2e)');
  const directory = `https://127.0.0.1:${await closedPort()}/dir`;
  const srv = await startServer({
    env: { CONFAB_DETECT_LOCAL_PROVIDERS: 'false' },
    args: ['--domain', DOMAIN, '--acme-directory', directory, '--https-listen', '127.0.0.1:0', '--http-listen', 'off'],
  });
  t.after(() => srv.stop());
  assert.match(srv.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const base = new URL(srv.setupUrl).origin;
  assert.equal(base, `https://${DOMAIN}:${new URL(srv.url).port}`, 'links follow the domain');
  const failed = await srv.waitForLog((e) => e?.fields?.message === 'could not obtain a certificate');
  assert.match(failed.fields.error, /cannot reach the ACME server/);

  // The stand-in certificate is self-signed: this context accepts it (a
  // person would click through the browser's warning).
  const context = await newContext(browser, { viewport: { width: 1280, height: 900 }, ignoreHTTPSErrors: true, bypassCSP: true });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await page.goto(srv.setupUrl);
  await page.getByRole('heading', { name: 'Create the administrator' }).waitFor();
  await page.getByLabel('Username').fill(ADMIN.username);
  await page.getByLabel('Password', { exact: true }).fill(ADMIN.password);
  await page.getByLabel('Repeat password').fill(ADMIN.password);
  await page.getByRole('button', { name: 'Create account and sign in' }).click();
  await page.getByRole('textbox', { name: 'Message' }).waitFor();

  await page.goto(base + '/admin/tls');
  const card = page.getByTestId('tls-status');
  await card.waitFor();
  assert.equal(await card.getAttribute('data-mode'), 'acme');
  await page.getByRole('link', { name: 'HTTPS' }).and(page.locator('[aria-current=page]')).waitFor();
  const text = await card.innerText();
  for (const want of [
    'automatic certificates (ACME)',
    DOMAIN,
    'self-signed stand-in',
    'Browsers warn about this server until the first certificate arrives',
    directory,
  ]) {
    assert.ok(text.includes(want), `${JSON.stringify(want)} on the page:\n${text}`);
  }
  assert.match(await page.getByTestId('tls-days-left').innerText(), /^\d+ days left$/);
  const alert = page.getByTestId('tls-error');
  const err = await alert.innerText();
  assert.match(err, /Could not obtain a certificate/);
  assert.match(err, /cannot reach the ACME server at https:\/\/127\.0\.0\.1:\d+\/dir/);
  assert.match(err, /What to do: .*outbound HTTPS/);
  assert.match(err, /next attempt/);
  t.diagnostic(`screenshot: ${await screenshot(page, 'admin-tls-failing')}`);

  // The same facts as the API.
  const api = await page.evaluate(async () => (await fetch('/api/admin/tls')).json());
  assert.equal(api.certificate.source, 'self_signed');
  assert.ok(api.consecutive_failures >= 1, JSON.stringify(api));
  assert.match(api.last_error.hint, /outbound HTTPS/);

  assert.deepEqual(await axeViolations(page), [], 'no serious or critical axe violations');
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('admin HTTPS page over plain HTTP says HTTPS is off', { timeout: 60_000 }, async (t) => {
  const app = await startApp();
  t.after(() => app.stop());
  const context = await newContext(browser, { viewport: { width: 1280, height: 900 } });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url);
  await page.goto(app.url + '/admin/tls');
  const card = page.getByTestId('tls-status');
  await card.waitFor();
  assert.equal(await card.getAttribute('data-mode'), 'off');
  assert.match(await card.innerText(), /HTTPS is off/);
  assert.equal(await page.getByTestId('tls-error').count(), 0);
  assert.deepEqual(unexpectedProblems(watch), []);
});
