// Usage and quotas in the browser: a person's usage card (today's remaining
// quota, the 30-day chart, CSV), the admin usage charts, quota editing on the
// admin users page, the audit log filters, and axe on each of them.

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

let app;
let browser;

before(async () => {
  app = await startApp({
    extraConfig: [
      '[quota]',
      'messages_per_day = 50',
      'tokens_per_day = 100000',
      '',
      '[[prices]]',
      'model = "fake-model*"',
      'input_per_million = 2.5',
      'output_per_million = 10.0',
      '',
    ].join('\n'),
  });
  browser = await launch();
  for (const [q, model] of [['first question', 'fake-model'], ['second question', 'fake-model-2'], ['third', 'fake-model']]) {
    await app.api('POST', '/chat/message', { content: q, model });
  }
  await app.api('POST', '/admin/users', { username: 'bob', password: 'correct horse battery' });
  // Charges land just after each answer: wait for them.
  for (let i = 0; i < 100; i++) {
    const u = await app.api('GET', '/usage');
    if (u.quota.messages_used === 3 && u.quota.running === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

async function axe(page) {
  await page.addScriptTag({ path: AXE_PATH });
  const r = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const res = await axe.run(document, { resultTypes: ['violations'] });
    return res.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  return r.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

test('settings shows today\'s quota, the 30-day chart and a CSV link', { timeout: 60_000 }, async (t) => {
  const context = await newContext(browser, { viewport: { width: 1280, height: 900 } });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url);
  await page.goto(app.url + '/settings#usage');
  const card = page.locator('#usage');
  await card.getByTestId('usage-today').waitFor();
  await card.getByText('3 of 50 messages').waitFor();
  await card.getByText('47 left').waitFor();
  const bar = card.getByRole('progressbar', { name: 'Messages today used today' });
  assert.equal(await bar.getAttribute('aria-valuenow'), '3');
  const chart = card.getByRole('img', { name: /Your tokens per day/ });
  assert.equal(await chart.locator('rect').count() >= 1, true);
  await card.getByRole('cell', { name: 'fake-model-2' }).waitFor();
  const href = await card.getByRole('link', { name: 'Download CSV' }).getAttribute('href');
  const csv = await (await fetch(app.url + href, { headers: { Cookie: app.cookie } })).text();
  assert.match(csv, /^date,provider,model,messages/);
  t.diagnostic(`screenshot: ${await screenshot(page, 'settings-usage')}`);
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('admin usage charts, quota editing and audit filters', { timeout: 90_000 }, async (t) => {
  const context = await newContext(browser, { viewport: { width: 1280, height: 900 } });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url);

  await page.goto(app.url + '/admin/usage');
  const usage = page.getByTestId('admin-usage');
  await usage.getByRole('img', { name: /Tokens per day by model/ }).waitFor();
  await page.getByRole('heading', { name: 'Top users' }).waitFor();
  await page.getByRole('list', { name: 'Tokens by user' }).getByText('admin').waitFor();
  await page.getByRole('heading', { name: 'Cost by model' }).waitFor();
  await page.getByRole('cell', { name: 'fake-model-2' }).waitFor();
  await page.getByLabel('Period').selectOption('7');
  await usage.getByRole('img', { name: /7 days/ }).waitFor();
  t.diagnostic(`screenshot: ${await screenshot(page, 'admin-usage-charts')}`);

  // Quota editing on the users page.
  await page.goto(app.url + '/admin/users');
  await page.getByRole('button', { name: 'Edit quota of bob' }).click();
  const form = page.getByRole('form', { name: 'Daily quota of bob' });
  await form.getByLabel('Messages / day').fill('5');
  await form.getByRole('button', { name: 'Save' }).click();
  await page.getByText('Quota saved').waitFor();
  const row = page.getByRole('row', { name: /bob/ });
  await row.getByText('5 msg').waitFor();
  await row.getByText('custom').waitFor();
  const users = await app.api('GET', '/admin/users');
  const bob = users.items.find((u) => u.username === 'bob');
  assert.deepEqual(bob.quota, { messages_per_day: 5, tokens_per_day: null });
  assert.equal(bob.effective_quota.tokens_per_day, 100000);

  // The change is in the audit log; the filters find it.
  await page.goto(app.url + '/admin/audit');
  await page.getByRole('table').waitFor();
  const filters = page.getByRole('form', { name: 'Filter the audit log' });
  await filters.getByLabel('Action').fill('admin.user.quota');
  await filters.getByRole('button', { name: 'Filter' }).click();
  // The unfiltered table (which also holds this entry) stays until the
  // filtered page arrives: wait for the filtered one, not for the cell.
  await page.waitForFunction(() => document.querySelectorAll('table.audit tbody tr').length === 1, null, { timeout: 10_000 });
  await page.getByRole('cell', { name: /messages_per_day=5/ }).waitFor();
  assert.equal(await page.locator('table.audit tbody tr').count(), 1);
  await filters.getByRole('button', { name: 'Clear' }).click();
  await page.waitForFunction(() => document.querySelectorAll('table.audit tbody tr').length > 1);
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('axe-core: no serious or critical violations on the usage screens', { timeout: 120_000 }, async (t) => {
  assert.ok(AXE_PATH, 'axe-core is installed in tests/e2e/node_modules (npm ci in tests/e2e)');
  const results = [];
  for (const colorScheme of ['light', 'dark']) {
    const context = await newContext(browser, { viewport: { width: 1280, height: 900 }, bypassCSP: true, colorScheme });
    t.after(() => context.close());
    const page = await context.newPage();
    await signIn(page, app.url);
    const screens = [
      ['settings usage', '/settings', async () => page.getByTestId('usage-today').waitFor()],
      ['admin usage', '/admin/usage', async () => page.getByRole('heading', { name: 'Cost by model' }).waitFor()],
      ['admin users with quota editor', '/admin/users', async () => {
        await page.getByRole('button', { name: 'Edit quota of bob' }).click();
        await page.getByRole('form', { name: 'Daily quota of bob' }).waitFor();
      }],
      ['admin audit with filters', '/admin/audit', async () => page.getByRole('form', { name: 'Filter the audit log' }).waitFor()],
    ];
    for (const [name, path, ready] of screens) {
      await page.goto(app.url + path);
      await ready();
      await page.waitForTimeout(200);
      const bad = await axe(page);
      t.diagnostic(`${name} (${colorScheme}): ${bad.length} serious/critical`);
      results.push(...bad.map((v) => ({ page: `${name} (${colorScheme})`, ...v })));
    }
  }
  assert.deepEqual(results, [], 'no serious or critical axe violations');
});
