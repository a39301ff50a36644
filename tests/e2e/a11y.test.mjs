// Looks and accessibility: screenshots of the chat at 360 px and on a
// desktop, in both themes (target/e2e/), the drawer on a phone, and axe-core
// with no serious or critical violations on chat (also with search results,
// an active result and an invalid query showing), settings and admin.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { launch, watchPage, screenshot } from './lib/browser.mjs';
import { startApp, signIn, unexpectedProblems, newContext } from './lib/app.mjs';

const require = createRequire(import.meta.url);
let AXE_PATH;
try {
  AXE_PATH = require.resolve('axe-core/axe.min.js');
} catch {
  AXE_PATH = null;
}

const RICH = [
  'Sure! Here is a quick comparison, a formula and some code.',
  '',
  '| Option | Speed | Notes |',
  '| --- | --- | --- |',
  '| **redb** | fast | embedded, ACID |',
  '| tantivy | fast | full-text search |',
  '',
  'The area of a circle is $A = \\pi r^2$, and in general:',
  '',
  '$$\\sum_{k=1}^{n} k = \\frac{n(n+1)}{2}$$',
  '',
  '```rust',
  'fn main() {',
  '    let greeting = "hello";',
  '    println!("{greeting}, world");',
  '}',
  '```',
  '',
  '1. Start the binary',
  '2. Open the setup link',
  '3. Chat — see the [docs](https://example.com/docs).',
].join('\n');

let app;
let browser;
let convId;

before(async () => {
  app = await startApp({ replies: { markdown: RICH } });
  browser = await launch();
  // A conversation to look at, plus a few more for the sidebar.
  for (const [q, model] of [['How do I deploy confab on a small VPS?', 'fake-model'], ['Compare the storage options, with a formula and code', 'markdown']]) {
    const m = await app.api('POST', '/chat/message', { conversation_id: convId, content: q, model });
    convId = m.conversation_id;
  }
  await app.api('PATCH', `/conversations/${convId}`, { title: 'Storage options for confab' });
  for (const title of ['Trip ideas for the weekend', 'Rust lifetimes explained', 'Weekly report draft']) {
    await app.api('POST', '/conversations', { title });
  }
  const pinned = await app.api('POST', '/conversations', { title: 'Project notes' });
  await app.api('PATCH', `/conversations/${pinned.id}`, { pinned: true });
  await app.api('POST', '/admin/invites', { uses: 3 });
  await app.api('POST', '/keys', { name: 'editor' });
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

async function openChat(t, { width, height, colorScheme = 'light' }) {
  const context = await newContext(browser, { viewport: { width, height }, colorScheme, deviceScaleFactor: 1 });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url, { next: `/c/${convId}` });
  await page.waitForURL(new RegExp(`/c/${convId}$`));
  await page.locator('.msg.assistant .katex').first().waitFor({ timeout: 15_000 });
  await page.locator('.msg.assistant .hljs-keyword').first().waitFor();
  await page.waitForTimeout(300);
  return { context, page, watch };
}

test('chat screenshots: desktop and 360 px, light and dark', { timeout: 90_000 }, async (t) => {
  for (const colorScheme of ['light', 'dark']) {
    const { page, watch } = await openChat(t, { width: 1280, height: 800, colorScheme });
    assert.equal(await page.title(), 'Storage options for confab · confab');
    const file = await screenshot(page, `chat-desktop-${colorScheme}`);
    t.diagnostic(`screenshot: ${file}`);
    assert.deepEqual(unexpectedProblems(watch), []);
  }
  for (const colorScheme of ['light', 'dark']) {
    const { page, watch } = await openChat(t, { width: 360, height: 740, colorScheme });
    // Nothing overflows sideways on a phone.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal overflow at 360 px (${overflow} px)`);
    // The sidebar is a drawer: hidden, then opened by the menu button.
    assert.equal(await page.locator('.sidebar').isVisible(), false, 'sidebar hidden on a phone');
    t.diagnostic(`screenshot: ${await screenshot(page, `chat-360-${colorScheme}`)}`);
    await page.getByRole('button', { name: 'Open sidebar' }).click();
    await page.locator('.sidebar.open').waitFor();
    await page.waitForTimeout(300);
    t.diagnostic(`screenshot: ${await screenshot(page, `chat-360-drawer-${colorScheme}`)}`);
    await page.getByRole('button', { name: 'Close sidebar' }).click();
    assert.deepEqual(unexpectedProblems(watch), []);
  }
});

test('settings and admin screenshots', { timeout: 60_000 }, async (t) => {
  const context = await newContext(browser, { viewport: { width: 1280, height: 900 } });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url);
  await page.goto(app.url + '/settings');
  await page.getByRole('heading', { name: 'API keys' }).waitFor();
  await page.locator('.row', { hasText: 'editor' }).waitFor();
  await screenshot(page, 'settings');
  for (const section of ['users', 'invites', 'providers', 'usage', 'audit']) {
    await page.goto(`${app.url}/admin/${section}`);
    await page.locator('.card').first().waitFor();
    await page.waitForLoadState('networkidle');
    await screenshot(page, `admin-${section}`);
  }
  await page.goto(`${app.url}/admin/usage`);
  await page.getByTestId('admin-usage').waitFor();
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('axe-core: no serious or critical violations on chat, settings and admin', { timeout: 120_000 }, async (t) => {
  assert.ok(AXE_PATH, 'axe-core is installed in tests/e2e/node_modules (npm ci in tests/e2e)');
  // axe is injected as a script; the app's CSP forbids that (as it should),
  // so this context alone bypasses the CSP.
  const results = [];
  for (const colorScheme of ['light', 'dark']) {
    const context = await newContext(browser, { viewport: { width: 1280, height: 900 }, bypassCSP: true, colorScheme });
    t.after(() => context.close());
    const page = await context.newPage();
    await signIn(page, app.url);
    // Search states: typed into the sidebar's search box on the chat page.
    const searchFor = (q, ready, keys = []) => async () => {
      const box = page.getByRole('combobox', { name: 'Search conversations' });
      await box.fill(q);
      await page.locator(ready).first().waitFor({ timeout: 10_000 });
      for (const k of keys) await page.keyboard.press(k);
    };
    const pages = [
      ['chat', `/c/${convId}`, '.msg.assistant .katex'],
      // (null path: the same page, with axe already injected)
      ['chat with search results', null, '.msg.assistant .katex', searchFor('confab', '.sr-hit', ['ArrowDown', 'ArrowDown'])],
      ['chat with an invalid search', null, '.msg.assistant .katex', searchFor('"unclosed', '[data-testid=search-invalid]')],
      ['chat with no search results', null, '.msg.assistant .katex', searchFor('xyzzy-nothing', '.sr-empty')],
      ['settings', '/settings', '.row'],
      ['admin users', '/admin/users', 'table'],
      ['admin invites', '/admin/invites', '.row'],
      ['admin providers', '/admin/providers', '.row'],
      ['admin usage', '/admin/usage', '[data-testid=admin-usage] svg'],
      ['admin audit', '/admin/audit', 'table'],
    ];
    for (const [name, path, ready, act] of pages) {
      if (path) await page.goto(app.url + path);
      await page.locator(ready).first().waitFor();
      if (act) await act();
      await page.waitForTimeout(200);
      if (path) await page.addScriptTag({ path: AXE_PATH });
      const r = await page.evaluate(async () => {
        // eslint-disable-next-line no-undef
        const res = await axe.run(document, { resultTypes: ['violations'] });
        return res.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
      });
      const bad = r.filter((v) => v.impact === 'serious' || v.impact === 'critical');
      t.diagnostic(`${name} (${colorScheme}): ${r.length} violation(s), ${bad.length} serious/critical${r.length ? ': ' + r.map((v) => `${v.id}[${v.impact}]`).join(', ') : ''}`);
      results.push(...bad.map((v) => ({ page: `${name} (${colorScheme})`, ...v })));
    }
  }
  assert.deepEqual(results, [], 'no serious or critical axe violations');
});
