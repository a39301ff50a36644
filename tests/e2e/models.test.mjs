// Issue 16, items 1 and 7: Admin → Models (capabilities, hide/show, display
// name, price, default model, Test buttons, test-before-save for a new
// provider) and the chat's model picker (search, provider labels on
// duplicates, capability icons, unreachable models marked and not
// selectable, keyboard), with screenshots at 1280 and 390 px in both themes
// and axe-core on both.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import net from 'node:net';
import { launch, watchPage, screenshot } from './lib/browser.mjs';
import { startApp, signIn, unexpectedProblems, newContext, pickModel } from './lib/app.mjs';

const require = createRequire(import.meta.url);
const AXE_PATH = require.resolve('axe-core/axe.min.js');
const T = { timeout: 150_000 };

let app;
let browser;

/** A port nothing listens on. */
async function deadPort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

before(async () => {
  app = await startApp({
    extraConfig: [
      '[[providers]]',
      'kind = "openai"',
      'name = "ghost"',
      'base_url = "http://127.0.0.1:9/v1"',
      'models = ["ghost-model"]',
      '',
    ].join('\n'),
  });
  // A second provider on the same upstream: fake-model twice, and models
  // that are not for chatting.
  await app.api('POST', '/admin/providers', {
    kind: 'openai',
    name: 'second',
    base_url: app.upstream.openaiBase,
    api_key: 'sk-second-0123456789',
    models: ['fake-model', 'gpt-4o', 'gpt-image-1', 'text-embedding-3-small'],
  });
  for (let i = 0; i < 200; i++) {
    const ms = (await app.api('GET', '/models')).items;
    const ghost = (await app.api('GET', '/providers')).items.find((p) => p.name === 'ghost');
    if (ms.some((m) => m.id === 'gpt-4o') && ghost?.last_error) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

async function open(t, { width = 1280, height = 800, colorScheme = 'light', bypassCSP = false } = {}) {
  const context = await newContext(browser, { viewport: { width, height }, colorScheme, deviceScaleFactor: 1, bypassCSP });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url);
  return { page, watch };
}

async function axeSerious(page) {
  await page.addScriptTag({ path: AXE_PATH });
  const r = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const res = await axe.run(document, { resultTypes: ['violations'] });
    return res.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  return r.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

const row = (page, provider, id) => page.locator(`tr[data-provider="${provider}"][data-model="${id}"]`);
const button = (page) => page.getByRole('button', { name: /^Model\b(?! settings)/ });
const options = async (page) => page.locator('[role=option]').evaluateAll((els) => els.map((e) => e.dataset.model + '@' + e.dataset.provider));

test('Admin → Models: capabilities, hide, rename, price, default, Test', T, async (t) => {
  const { page, watch } = await open(t);
  await page.goto(app.url + '/admin/models');
  await row(page, 'second', 'gpt-4o').waitFor();
  // What each model can do.
  const gpt = row(page, 'second', 'gpt-4o');
  assert.match(await gpt.textContent(), /chat.*vision.*tools.*128k context.*16k output/);
  assert.match(await row(page, 'second', 'gpt-image-1').textContent(), /images.*not a chat model/);
  assert.match(await row(page, 'second', 'text-embedding-3-small').textContent(), /embeddings.*not a chat model/);
  assert.match(await row(page, 'ghost', 'ghost-model').textContent(), /unreachable/);

  // Hide a model from the picker.
  await page.getByRole('button', { name: 'Hide fake-model-2 in the picker' }).click();
  await page.getByRole('button', { name: 'Show fake-model-2 in the picker' }).waitFor();
  assert.match(await row(page, 'fake', 'fake-model-2').textContent(), /hidden/);

  // A display name, a description and a price.
  await page.getByRole('button', { name: 'Edit fake-model' }).first().click();
  const form = page.getByRole('form', { name: 'Settings of fake-model' });
  await form.getByLabel('Display name').fill('Fake Prime');
  await form.getByLabel('Description').fill('The house model');
  await form.getByLabel('Input price per 1M tokens').fill('2.5');
  await form.getByLabel('Output price per 1M tokens').fill('10');
  await form.getByRole('button', { name: 'Save' }).click();
  await form.waitFor({ state: 'detached' });
  const fake = row(page, 'fake', 'fake-model');
  await page.waitForFunction(() => document.querySelector('tr[data-provider="fake"][data-model="fake-model"]')?.textContent.includes('Fake Prime'));
  assert.match(await fake.textContent(), /Fake Prime.*The house model/);
  assert.match(await fake.textContent(), /2\.5 in \/ 10 out per 1M tokens \(set here\)/);
  const listed = (await app.api('GET', '/admin/models')).items.find((m) => m.id === 'fake-model' && m.provider === 'fake');
  assert.deepEqual(listed.price_override, { input_per_million: 2.5, output_per_million: 10 });

  // The default model.
  await page.getByLabel('Default model for new chats').selectOption('gpt-4o');
  await page.waitForFunction(() => document.querySelector('tr[data-provider="second"][data-model="gpt-4o"]')?.textContent.includes('default'));
  assert.equal((await app.api('GET', '/models?use=chat')).default_model, 'gpt-4o');

  // Test buttons: a model, then a provider.
  await page.getByRole('button', { name: 'Test fake-model on fake' }).click();
  await fake.locator('.test-result.ok').waitFor();
  assert.match(await fake.locator('.test-result').textContent(), /"fake-model" on "fake" answered in \d+ ms\./);
  await page.goto(app.url + '/admin/providers');
  await page.getByRole('button', { name: 'Test connection to second' }).click();
  await page.locator('.test-result.ok').waitFor();
  assert.match(await page.locator('.test-result.ok').textContent(), /Connected to "second": it lists \d+ models/);

  // Adding a provider tests it first; "Save anyway" adds it regardless.
  await page.getByRole('button', { name: 'Add provider' }).click();
  await page.getByLabel('Name').fill('offline');
  await page.getByLabel('Base URL').fill(`http://127.0.0.1:${await deadPort()}/v1`);
  await page.getByRole('button', { name: 'Test and add' }).click();
  const alert = page.getByRole('alert').filter({ hasText: 'did not answer the test' });
  await alert.waitFor();
  assert.match(await alert.textContent(), /Could not use "offline"/);
  assert.ok(!(await app.api('GET', '/admin/providers')).items.some((p) => p.name === 'offline'), 'not saved after a failed test');
  await page.getByRole('button', { name: 'Save anyway' }).click();
  await page.getByRole('button', { name: 'Edit provider offline' }).waitFor();
  assert.ok((await app.api('GET', '/admin/providers')).items.some((p) => p.name === 'offline'));
  await app.api('DELETE', '/admin/providers/offline');

  // Screenshots, both themes, desktop and phone; axe on the page.
  const bad = [];
  for (const colorScheme of ['light', 'dark']) {
    for (const [width, height] of [[1280, 900], [390, 844]]) {
      const v = await open(t, { width, height, colorScheme, bypassCSP: true });
      await v.page.goto(app.url + '/admin/models');
      await row(v.page, 'second', 'gpt-4o').waitFor();
      const overflow = await v.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `no sideways overflow at ${width} px (${overflow} px)`);
      t.diagnostic(`screenshot: ${await screenshot(v.page, `models-admin-${width}-${colorScheme}`)}`);
      bad.push(...(await axeSerious(v.page)).map((x) => ({ width, colorScheme, ...x })));
      assert.deepEqual(unexpectedProblems(v.watch), []);
    }
  }
  assert.deepEqual(bad, [], 'no serious or critical axe violations');
  // Put things back for the picker test.
  await app.api('PATCH', '/admin/models/fake-model-2', { hidden: false });
  await app.api('PATCH', '/admin/models/fake-model', { display_name: null, description: null, price: null });
  await app.api('PUT', '/admin/default-model', { model: null });
  // The refused test-before-save is a 422 the page expects.
  assert.deepEqual(unexpectedProblems(watch, [/status of 422 \(Unprocessable Entity\) \(http:\/\/127\.0\.0\.1:\d+\/api\/admin\/providers\)/]), []);
});

test('the model picker: chat models only, search, labels, icons, unreachable, keyboard', T, async (t) => {
  await app.api('PATCH', '/admin/models/fake-model-2', { hidden: true });
  t.after(() => app.api('PATCH', '/admin/models/fake-model-2', { hidden: false }));
  const { page, watch } = await open(t);
  await button(page).click();
  const list = page.getByRole('listbox', { name: 'Models' });
  await list.waitFor();
  const all = await options(page);
  // Hidden, embedding and image models are never offered.
  for (const gone of ['fake-model-2', 'gpt-image-1', 'text-embedding-3-small']) {
    assert.ok(!all.some((o) => o.startsWith(gone + '@')), `${gone} not offered: ${all}`);
  }
  assert.ok(all.includes('fake-model@fake') && all.includes('fake-model@second') && all.includes('gpt-4o@second'), String(all));
  // Duplicates carry their provider; capability icons.
  const dupe = page.locator('[role=option][data-model="fake-model"][data-provider="second"]');
  assert.equal(await dupe.locator('.model-provider').textContent(), 'second');
  assert.equal(await page.locator('[role=option][data-model="xss"] .model-provider').count(), 0);
  const gpt = page.locator('[role=option][data-model="gpt-4o"]');
  assert.match(await gpt.textContent(), /reads images.*calls tools/);
  // Unreachable: marked, not selectable.
  const ghost = page.locator('[role=option][data-model="ghost-model"]');
  assert.equal(await ghost.getAttribute('aria-disabled'), 'true');
  assert.match(await ghost.textContent(), /unreachable/);
  await ghost.click({ force: true });
  assert.ok(await list.isVisible(), 'clicking an unreachable model picks nothing');

  // Search, then the keyboard: arrows skip nothing pickable, Enter picks.
  const search = page.getByRole('combobox', { name: 'Search models' });
  assert.ok(await search.evaluate((el) => el === document.activeElement), 'the search box has focus');
  await search.fill('gpt');
  assert.deepEqual(await options(page), ['gpt-4o@second']);
  await search.fill('zzz-nothing');
  await page.getByText('No model matches').waitFor();
  await search.fill('ghost');
  assert.equal(await search.getAttribute('aria-activedescendant'), null, 'nothing pickable is active');
  await search.fill('fake model second');
  assert.deepEqual(await options(page), ['fake-model@second']);
  await search.fill('');
  await search.fill('fake');
  await page.waitForFunction(() => ![...document.querySelectorAll('[role=option]')].some((o) => o.dataset.model === 'gpt-4o'));
  const first = await search.getAttribute('aria-activedescendant');
  await page.keyboard.press('ArrowDown');
  const second = await search.getAttribute('aria-activedescendant');
  assert.notEqual(first, second);
  assert.equal(await page.locator('#' + second).getAttribute('aria-disabled'), null);
  const picked = await page.locator('#' + second).getAttribute('data-model');
  await page.keyboard.press('Enter');
  await list.waitFor({ state: 'detached' });
  // Focus returns to the button.
  await page.waitForFunction(() => document.activeElement?.getAttribute('aria-haspopup') === 'listbox');
  assert.match(await button(page).textContent(), new RegExp(picked.replace(/[+]/g, '\\+')));
  // Escape closes without a change; ArrowDown on the button opens.
  await page.keyboard.press('ArrowDown');
  await list.waitFor();
  await page.keyboard.press('Escape');
  await list.waitFor({ state: 'detached' });
  assert.match(await button(page).textContent(), new RegExp(picked.replace(/[+]/g, '\\+')));
  // Picking by search and click, then chatting with it.
  await pickModel(page, 'gpt-4o');
  await page.getByRole('textbox', { name: 'Message' }).fill('hello there');
  await page.keyboard.press('Enter');
  await page.locator('.msg.assistant[data-status="complete"]').waitFor({ timeout: 20_000 });
  const { last } = await app.upstream.chatRequests();
  assert.equal(last.model, 'gpt-4o');
  assert.deepEqual(unexpectedProblems(watch), []);

  // Screenshots with the list open, both themes, desktop and phone; axe.
  const bad = [];
  for (const colorScheme of ['light', 'dark']) {
    for (const [width, height] of [[1280, 800], [390, 844]]) {
      const v = await open(t, { width, height, colorScheme, bypassCSP: true });
      await button(v.page).click();
      await v.page.locator('[role=option][data-model="ghost-model"]').waitFor();
      const box = await v.page.locator('.model-pop').boundingBox();
      assert.ok(box.x >= 0 && box.x + box.width <= width, `the list fits at ${width} px: ${JSON.stringify(box)}`);
      t.diagnostic(`screenshot: ${await screenshot(v.page, `model-picker-${width}-${colorScheme}`)}`);
      bad.push(...(await axeSerious(v.page)).map((x) => ({ width, colorScheme, ...x })));
      assert.deepEqual(unexpectedProblems(v.watch), []);
    }
  }
  assert.deepEqual(bad, [], 'no serious or critical axe violations');
});
