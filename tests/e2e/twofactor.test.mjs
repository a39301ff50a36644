// Two-factor sign-in and the admin's reset link in the browser: a user sets
// up TOTP in Settings (the code computed here with node's HMAC, RFC 6238),
// signs out, signs in again through the second step; an admin makes a reset
// link, the user opens it, sets a new password and signs in with it (and a
// recovery code). axe on the set-up card, the second step and the reset
// page; screenshots at 390 px in dark mode.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { launch, watchPage, screenshot } from './lib/browser.mjs';
import { startApp, signIn, unexpectedProblems, newContext } from './lib/app.mjs';

const require = createRequire(import.meta.url);
const AXE_PATH = require.resolve('axe-core/axe.min.js');

const USER = { username: 'tess', password: 'tess-first-password' };

let app;
let browser;

before(async () => {
  app = await startApp();
  browser = await launch();
  await app.api('POST', '/admin/users', { ...USER, role: 'user' });
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

/** axe on `selector` (the whole page by default). The app's CSP forbids the
 * injected script (as it should), so the contexts that run axe bypass it. */
async function axe(page, selector = null) {
  await page.addScriptTag({ path: AXE_PATH });
  const r = await page.evaluate(async (sel) => {
    // eslint-disable-next-line no-undef
    const res = await axe.run(sel ? document.querySelector(sel) : document, { resultTypes: ['violations'] });
    return res.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  }, selector);
  return r.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** RFC 4648 base32 (no padding) to bytes. */
function base32(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of s.replace(/=+$/, '').toUpperCase()) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** The TOTP code (HMAC-SHA1, 6 digits, 30 s) of `secret` at now + `offset` seconds. */
function totp(secret, offset = 0) {
  const step = Math.floor((Date.now() / 1000 + offset) / 30);
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const h = createHmac('sha1', base32(secret)).update(msg).digest();
  const o = h[h.length - 1] & 0x0f;
  const bin = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(bin % 1_000_000).padStart(6, '0');
}

test('RFC 6238 vector: the helper computes what authenticator apps do', () => {
  // Appendix B, SHA-1, T = 59 s, truncated to 6 digits: 287082.
  const realNow = Date.now;
  Date.now = () => 59_000;
  try {
    assert.equal(totp('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ'), '287082');
  } finally {
    Date.now = realNow;
  }
});

let secret;
let recovery;

test('set up two-factor sign-in, sign out, sign in with the second step', async () => {
  const context = await newContext(browser, { colorScheme: 'dark', bypassCSP: true });
  const page = await context.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url, USER);

  await page.goto(app.url + '/settings#two-factor');
  const card = page.locator('#two-factor');
  await card.getByRole('button', { name: 'Set up two-factor sign-in' }).click();
  secret = (await card.getByTestId('totp-secret').textContent()).trim();
  assert.match(secret, /^[A-Z2-7]{32}$/);
  await card.getByRole('img', { name: /QR code/ }).waitFor();
  assert.deepEqual(await axe(page, '#two-factor'), []);
  await page.setViewportSize({ width: 390, height: 844 });
  await card.scrollIntoViewIfNeeded();
  await screenshot(page, 'twofactor-setup-390-dark');
  await page.setViewportSize({ width: 1280, height: 800 });

  // A wrong code first: a sentence, and still off.
  await card.getByLabel('Code').fill('000000');
  await card.getByRole('button', { name: 'Turn on' }).click();
  await card.getByText('That code is not right.').waitFor();
  await card.getByLabel('Code').fill(totp(secret));
  await card.getByRole('button', { name: 'Turn on' }).click();
  const codes = card.getByTestId('recovery-codes');
  await codes.waitFor();
  recovery = (await codes.locator('code').allTextContents()).map((c) => c.trim());
  assert.equal(recovery.length, 10);
  await card.getByRole('button', { name: 'I saved them' }).click();
  await card.getByTestId('two-factor-on').waitFor();

  await page.getByRole('button', { name: 'Back to chat' }).or(page.getByRole('link', { name: 'Back to chat' })).first().click();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();

  await page.getByLabel('Username').fill(USER.username);
  await page.getByLabel('Password', { exact: true }).fill(USER.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Two-factor sign-in' }).waitFor();
  assert.deepEqual(await axe(page), []);
  await page.setViewportSize({ width: 390, height: 844 });
  await screenshot(page, 'twofactor-second-step-390-dark');
  // The code of the next step: the current one was spent on the set-up.
  await page.getByTestId('totp-code').fill(totp(secret, 30));
  await page.getByRole('button', { name: 'Verify and sign in' }).click();
  await page.getByRole('textbox', { name: 'Message' }).waitFor();
  assert.deepEqual(unexpectedProblems(watch, [/status of 40[0-9]/]), []);
  await context.close();
});

test('an admin reset link sets a new password; the second step still applies', async () => {
  assert.ok(recovery, 'the set-up test ran first');
  const adminCtx = await newContext(browser);
  const admin = await adminCtx.newPage();
  await signIn(admin, app.url);
  await admin.goto(app.url + '/admin/users');
  await admin.getByRole('button', { name: 'Make a reset link for tess' }).click();
  const banner = admin.getByTestId('reset-link');
  await banner.waitFor();
  const url = (await banner.locator('code').textContent()).trim();
  assert.ok(url.startsWith(app.url + '/reset-password#token='), url);
  await adminCtx.close();

  const context = await newContext(browser, { viewport: { width: 390, height: 844 }, colorScheme: 'dark', bypassCSP: true });
  const page = await context.newPage();
  const watch = await watchPage(page);
  await page.goto(url);
  await page.getByRole('heading', { name: 'Choose a new password' }).waitFor();
  assert.deepEqual(await axe(page), []);
  await screenshot(page, 'reset-password-390-dark');
  await page.getByLabel('New password', { exact: true }).fill('tess-second-password');
  await page.getByLabel('Repeat new password').fill('tess-second-password');
  await page.getByRole('button', { name: 'Set the new password' }).click();
  await page.getByTestId('reset-done').click();

  await page.getByLabel('Username').fill(USER.username);
  await page.getByLabel('Password', { exact: true }).fill('tess-second-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('totp-code').fill(recovery[0]);
  await page.getByRole('button', { name: 'Verify and sign in' }).click();
  await page.getByRole('textbox', { name: 'Message' }).waitFor();

  // The link works once.
  await page.goto(url);
  await page.waitForURL(/\/$|\/c\//);
  assert.deepEqual(unexpectedProblems(watch, [/status of 40[0-9]/]), []);
  await context.close();
  const again = await fetch(app.url + '/api/auth/password-reset', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ token: new URL(url).hash.slice('#token='.length), new_password: 'tess-third-password' }),
  });
  assert.equal(again.status, 400);
  assert.equal((await again.json()).code, 'INVALID_LINK');
});
