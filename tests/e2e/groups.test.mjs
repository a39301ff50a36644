// Admin → Groups in the browser: the admin creates a group, allows one
// model, adds a user; that user's model picker shows only that model, and
// the admin's users table shows the group. Screenshots at 1280 px light and
// 390 px dark (target/e2e/), axe-core on the group editor.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { launch, watchPage, screenshot } from './lib/browser.mjs';
import { startApp, signIn, unexpectedProblems, newContext, MODELS } from './lib/app.mjs';

const require = createRequire(import.meta.url);
const AXE_PATH = require.resolve('axe-core/axe.min.js');
const MEMBER = { username: 'gina', password: 'gina-password-123' };

let app;
let browser;

before(async () => {
  app = await startApp();
  browser = await launch();
  await app.api('POST', '/admin/users', { ...MEMBER, role: 'user' });
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

async function open(t, options = {}, who = undefined) {
  const context = await newContext(browser, { viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1, ...options });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url, who);
  return { page, watch };
}

async function axe(page) {
  await page.addScriptTag({ path: AXE_PATH });
  return page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const res = await axe.run(document, { resultTypes: ['violations'] });
    return res.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
}

/** The ids the picker offers, once it is open. */
async function pickerModels(page) {
  await page.getByRole('button', { name: /^Model\b(?! settings)/ }).click();
  const list = page.getByRole('listbox', { name: 'Models' });
  await list.waitFor();
  const ids = await list.locator('[role=option]').evaluateAll((els) => els.map((e) => e.dataset.model));
  await page.keyboard.press('Escape');
  return ids;
}

test('a group allowing one model limits its member\'s picker', { timeout: 150_000 }, async (t) => {
  // Before any group the member sees every chat model.
  {
    const { page } = await open(t, {}, MEMBER);
    const ids = await pickerModels(page);
    assert.ok(ids.includes('fake-model') && ids.includes('fake-model-2'), ids.join(','));
  }

  const { page, watch } = await open(t, { bypassCSP: true });
  await page.goto(app.url + '/admin/groups');
  await page.getByRole('heading', { name: 'Groups', exact: true }).waitFor();
  await page.getByLabel('Group name').fill('Interns');
  await page.getByRole('button', { name: 'Add group' }).click();
  const editor = page.locator('#group-edit');
  await editor.waitFor();
  // Allow one model.
  await editor.getByTestId('allow-model-fake-model-2').check();
  await editor.getByLabel('Messages / day').fill('40');
  await editor.getByTestId('group-storage').fill('5');
  await editor.getByRole('button', { name: 'Save group' }).click();
  await page.getByText('Group saved').waitFor();
  // Add the member through the search.
  await editor.getByTestId('member-search').fill('gi');
  await editor.getByRole('button', { name: 'Add gina to Interns' }).click();
  await editor.getByTestId('group-members').getByText('gina').waitFor();
  const row = page.locator('#groups tbody tr', { hasText: 'Interns' });
  await row.getByRole('cell', { name: 'fake-model-2', exact: true }).waitFor();
  await row.getByRole('cell', { name: '40 messages a day; 5 MiB of files', exact: true }).waitFor();
  const saved = (await app.api('GET', '/admin/groups')).items.find((g) => g.name === 'Interns');
  assert.equal(saved.quota.messages_per_day, 40);
  assert.equal(saved.quota.storage_bytes, 5 * 1048576, 'the storage default is saved in bytes');
  t.diagnostic(`screenshot: ${await screenshot(page, 'groups-admin-desktop-light')}`);
  const v = await axe(page);
  assert.deepEqual(v, [], 'no serious or critical axe violations (1280, light)');

  // A duplicate name: a sentence.
  await page.getByLabel('Group name').fill('interns');
  await page.getByRole('button', { name: 'Add group' }).click();
  await page.locator('#groups .banner, #groups [role=alert]').filter({ hasText: /name/i }).first().waitFor();

  // The users table shows the member's groups.
  await page.goto(app.url + '/admin/users');
  await page.locator('tr', { hasText: 'gina' }).getByTestId('user-groups').filter({ hasText: 'Interns' }).waitFor();
  assert.deepEqual(unexpectedProblems(watch, [/status of 409/]), []);

  // The member's picker: only the allowed model.
  const member = await open(t, {}, MEMBER);
  assert.deepEqual(await pickerModels(member.page), ['fake-model-2']);
  assert.deepEqual(unexpectedProblems(member.watch), []);
  // The admin still sees everything.
  const adminChat = await open(t);
  const ids = await pickerModels(adminChat.page);
  assert.ok(ids.length > 1 && MODELS.includes(ids[0]), ids.join(','));
});

test('the group editor at 390 px in dark mode: no overflow, axe clean', { timeout: 120_000 }, async (t) => {
  const { page, watch } = await open(t, { viewport: { width: 390, height: 844 }, colorScheme: 'dark', bypassCSP: true });
  await page.goto(app.url + '/admin/groups');
  await page.getByRole('button', { name: 'Edit group Interns' }).click();
  await page.locator('#group-edit').getByTestId('group-members').getByText('gina').waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal overflow at 390 px (${overflow} px)`);
  // On a phone the table folds models and quotas under the name, so the
  // whole row fits without scrolling the table sideways.
  const row = page.locator('#groups tbody tr', { hasText: 'Interns' });
  await row.getByText('fake-model-2 · 40 messages a day; 5 MiB of files').waitFor();
  const wrap = await page.locator('#groups .table-wrap').evaluate((el) => el.scrollWidth - el.clientWidth);
  assert.ok(wrap <= 0, `the groups table fits at 390 px (${wrap} px wider)`);
  t.diagnostic(`screenshot: ${await screenshot(page, 'groups-editor-390-dark')}`);
  const v = await axe(page);
  assert.deepEqual(v, [], 'no serious or critical axe violations (390, dark)');
  assert.deepEqual(unexpectedProblems(watch), []);
});
