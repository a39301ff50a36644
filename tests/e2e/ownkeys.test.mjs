// Own provider keys and temporary chats in the browser: a key is checked
// before it is kept, kept only encrypted (never in plain storage), sent
// with its kind, and gone from localStorage, sessionStorage and IndexedDB
// after signing out; a temporary chat is marked while on, is never listed
// or stored, and is closed on the server when left. Screenshots at desktop
// and 390 px, light and dark; axe on both screens.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { launch, watchPage, screenshot } from './lib/browser.mjs';
import { startApp, signIn, unexpectedProblems, newContext, pickModel } from './lib/app.mjs';

const require = createRequire(import.meta.url);
let AXE_PATH;
try {
  AXE_PATH = require.resolve('axe-core/axe.min.js');
} catch {
  AXE_PATH = null;
}

/** The fake upstream answers 401 to this key (tests/it/common_upstream REJECTED_KEY). */
const REJECTED_KEY = 'sk-rejected-0123456789abcdef';
const GOOD_KEY = 'sk-e2e-own-key-4f9a2c7d1b';

let app;
let browser;

before(async () => {
  app = await startApp();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

/** axe on `selector` (the whole page by default). */
async function axe(page, selector = null) {
  await page.addScriptTag({ path: AXE_PATH });
  const r = await page.evaluate(async (sel) => {
    // eslint-disable-next-line no-undef
    const res = await axe.run(sel ? document.querySelector(sel) : document, { resultTypes: ['violations'] });
    return res.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  }, selector);
  return r.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/**
 * Everything the page's origin keeps in localStorage, sessionStorage and
 * IndexedDB, as text (binary values as their bytes read as Latin-1), with
 * the IndexedDB database names.
 */
async function browserStorage(page) {
  return page.evaluate(async () => {
    const dump = [];
    for (const s of [localStorage, sessionStorage]) {
      for (let i = 0; i < s.length; i++) dump.push(s.key(i) + '=' + s.getItem(s.key(i)));
    }
    const bytes = (v) => {
      const u = v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      return Array.from(u, (b) => String.fromCharCode(b)).join('');
    };
    const text = (v) => {
      if (v === null || v === undefined) return '';
      if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return bytes(v);
      if (typeof CryptoKey !== 'undefined' && v instanceof CryptoKey) return `[CryptoKey extractable=${v.extractable}]`;
      if (typeof v === 'object') return Object.entries(v).map(([k, x]) => k + ':' + text(x)).join(',');
      return String(v);
    };
    const names = (await indexedDB.databases()).map((d) => d.name);
    for (const name of names) {
      const db = await new Promise((res, rej) => { const r = indexedDB.open(name); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
      for (const store of Array.from(db.objectStoreNames)) {
        const all = await new Promise((res, rej) => { const r = db.transaction(store).objectStore(store).getAll(); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
        for (const v of all) dump.push(name + '/' + store + ':' + text(v));
      }
      db.close();
    }
    return { dump: dump.join('\n'), databases: names };
  });
}

test('own keys: checked, kept encrypted, sent with their kind, gone after sign-out', { timeout: 90_000 }, async (t) => {
  const context = await newContext(browser, { viewport: { width: 1280, height: 900 } });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url);
  // The former version kept the key in plain localStorage: it is removed.
  await page.evaluate((k) => localStorage.setItem('confab.providerKey', k), GOOD_KEY);

  await page.goto(app.url + '/settings#provider-key');
  const row = page.getByTestId('own-key-openai');
  await row.waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('confab.providerKey')), null, 'the plain key of old is gone');

  // A bad key is refused and not kept.
  await row.getByRole('textbox', { name: /^OpenAI-compatible key/ }).fill(REJECTED_KEY);
  await row.getByRole('button', { name: 'Check and save OpenAI-compatible key' }).click();
  await row.getByTestId('own-key-openai-result').getByText('fake refused this key').waitFor();
  assert.equal(await row.getByTestId('own-key-openai-kept').count(), 0);

  // A good key is accepted, then kept.
  await row.getByRole('textbox', { name: /^OpenAI-compatible key/ }).fill(GOOD_KEY);
  await row.getByRole('button', { name: 'Check and save OpenAI-compatible key' }).click();
  await row.getByTestId('own-key-openai-result').getByText(/Key accepted by fake/).waitFor();
  await row.getByTestId('own-key-openai-kept').waitFor();
  assert.equal(await row.getByRole('textbox', { name: /^OpenAI-compatible key/ }).inputValue(), '', 'the field is emptied');

  // Kept only as ciphertext under a non-extractable key.
  const kept = await browserStorage(page);
  assert.ok(kept.databases.includes('confab-own-keys'), kept.databases.join());
  assert.ok(!kept.dump.includes(GOOD_KEY), 'the key is not in plain text in browser storage');
  assert.ok(!kept.dump.includes(GOOD_KEY.slice(4, 20)), 'no part of the key in plain text either');
  assert.match(kept.dump, /\[CryptoKey extractable=false\]/);
  t.diagnostic(`screenshot: ${await screenshot(page, 'own-keys-desktop-light')}`);

  // Sent with a chat on a model of an OpenAI-compatible provider, with its kind.
  await page.goto(app.url + '/');
  const composer = page.getByRole('textbox', { name: 'Message' });
  await composer.waitFor();
  await pickModel(page, 'fake-model');
  const sent = page.waitForRequest((r) => r.url().endsWith('/api/chat/stream'));
  await composer.fill('Hello with my own key');
  await composer.press('Enter');
  const req = await sent;
  const h = await req.allHeaders();
  assert.equal(h['x-provider-key'], GOOD_KEY);
  assert.equal(h['x-provider-key-kind'], 'openai');
  await page.locator('.msg.assistant[data-status="complete"]').waitFor();

  // An admin turns users' keys off for the provider: the key stays home.
  await page.goto(app.url + '/admin/providers');
  const sw = page.getByRole('switch', { name: 'Users may bring their own key to fake' });
  assert.equal(await sw.isChecked(), true);
  await sw.uncheck();
  await page.getByText("Users' keys no longer go to fake").waitFor();
  const admin = await app.api('GET', '/admin/providers');
  assert.equal(admin.items.find((p) => p.name === 'fake').allow_user_keys, false);
  t.diagnostic(`screenshot: ${await screenshot(page, 'admin-provider-user-keys')}`);
  await page.goto(app.url + '/');
  await composer.waitFor();
  const sent2 = page.waitForRequest((r) => r.url().endsWith('/api/chat/stream'));
  await composer.fill('Hello with the server key');
  await composer.press('Enter');
  const h2 = await (await sent2).allHeaders();
  assert.equal(h2['x-provider-key'], undefined, 'no key for a provider that takes none');
  await page.waitForFunction(() => document.querySelectorAll('.msg.assistant[data-status="complete"]').length >= 1);
  await app.api('PATCH', '/admin/providers/fake', { allow_user_keys: true });

  // Sign out: nothing of the key remains.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  await page.waitForFunction(async () => !(await indexedDB.databases()).some((d) => d.name === 'confab-own-keys'), null, { timeout: 10_000 });
  const left = await browserStorage(page);
  assert.ok(!left.databases.includes('confab-own-keys'), left.databases.join());
  assert.ok(!left.dump.includes(GOOD_KEY) && !left.dump.includes(GOOD_KEY.slice(-8)), left.dump);
  assert.ok(!left.dump.includes('CryptoKey'), 'the wrapping key is gone too');

  // The server never logged a key, good or bad (checks and chats included).
  const logText = [...app.server.stderr, ...app.server.stdout].join('\n');
  assert.ok(logText.includes('own key checked'), 'the check is logged, without the key');
  for (const k of [GOOD_KEY, REJECTED_KEY, GOOD_KEY.slice(-10)]) assert.ok(!logText.includes(k), `a key reached the log: ${k}`);

  // Signing in again starts without a key.
  await signIn(page, app.url);
  await page.goto(app.url + '/settings#provider-key');
  await page.getByTestId('own-key-openai').waitFor();
  assert.equal(await page.getByTestId('own-key-openai-kept').count(), 0);
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('a temporary chat is marked, never listed or stored, and closed when left', { timeout: 90_000 }, async (t) => {
  const context = await newContext(browser, { viewport: { width: 1280, height: 900 } });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url);
  const marker = 'tempmarker' + Date.now();
  const toggle = page.getByRole('switch', { name: 'Temporary chat' });
  await toggle.check();
  await page.getByTestId('temporary-note').waitFor();
  const composer = page.getByRole('textbox', { name: 'Message' });
  await composer.fill('A question ' + marker);
  await composer.press('Enter');
  await page.locator('.msg.assistant[data-status="complete"]').waitFor();
  // Still marked, locked on, with no address and not in the list.
  await page.getByTestId('temporary-note').waitFor();
  assert.equal(await toggle.isDisabled(), true);
  assert.equal(await toggle.isChecked(), true);
  assert.equal(new URL(page.url()).pathname, '/');
  const convs = await app.api('GET', '/conversations');
  assert.ok(!JSON.stringify(convs).includes(marker), 'not a stored conversation');
  assert.equal(await page.locator('nav, aside').getByText(marker).count(), 0);
  // A second turn continues it.
  await composer.fill('And a follow-up');
  await composer.press('Enter');
  await page.waitForFunction(() => document.querySelectorAll('.msg.assistant[data-status="complete"]').length === 2, null, { timeout: 15_000 });
  t.diagnostic(`screenshot: ${await screenshot(page, 'temporary-desktop-light')}`);

  // Leaving it closes it on the server.
  const closed = page.waitForResponse((r) => /\/api\/chat\/temporary\//.test(r.url()) && r.request().method() === 'DELETE');
  await page.getByRole('button', { name: 'New chat' }).first().click();
  assert.equal((await closed).status(), 204);
  await page.getByRole('heading', { name: 'How can I help you today?' }).waitFor();
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('screens at 390 px and desktop, light and dark; axe finds no serious issue', { timeout: 150_000 }, async (t) => {
  assert.ok(AXE_PATH, 'axe-core is installed in tests/e2e/node_modules (npm ci in tests/e2e)');
  const problems = [];
  for (const colorScheme of ['light', 'dark']) {
    for (const width of [1280, 390]) {
      const context = await newContext(browser, { viewport: { width, height: 860 }, bypassCSP: true, colorScheme });
      const page = await context.newPage();
      await signIn(page, app.url);
      await page.goto(app.url + '/settings#provider-key');
      await page.getByTestId('own-key-anthropic').waitFor();
      await page.locator('#provider-key').scrollIntoViewIfNeeded();
      t.diagnostic(`screenshot: ${await screenshot(page, `own-keys-${width}-${colorScheme}`)}`);
      // The keys card: the rest of the settings page has its own tests.
      for (const v of await axe(page, '#provider-key')) problems.push({ screen: `settings ${width} ${colorScheme}`, ...v });

      await page.goto(app.url + '/');
      await page.getByRole('switch', { name: 'Temporary chat' }).check();
      const composer = page.getByRole('textbox', { name: 'Message' });
      await composer.fill('Temporary question');
      await composer.press('Enter');
      await page.locator('.msg.assistant[data-status="complete"]').waitFor();
      t.diagnostic(`screenshot: ${await screenshot(page, `temporary-${width}-${colorScheme}`)}`);
      for (const v of await axe(page)) problems.push({ screen: `temporary ${width} ${colorScheme}`, ...v });
      await context.close();
    }
  }
  assert.deepEqual(problems, []);
});
