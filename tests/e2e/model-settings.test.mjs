// The conversation's model settings (temperature, max tokens, top p): set in
// the header's "Model settings" dialog with the keyboard, errors shown as
// sentences, stored on the conversation and sent to the fake upstream with
// the next answer; back to the provider's defaults; screenshots at desktop
// and 390 px in both themes (target/e2e/), and axe-core on the open dialog.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { launch, watchPage, screenshot } from './lib/browser.mjs';
import { startApp, signIn, unexpectedProblems, newContext } from './lib/app.mjs';

const require = createRequire(import.meta.url);
const AXE_PATH = require.resolve('axe-core/axe.min.js');

let app;
let browser;
let convId;

before(async () => {
  app = await startApp();
  browser = await launch();
  // Named by hand, so no title request follows an answer: the fake
  // upstream's last request is the answer's.
  const c = await app.api('POST', '/conversations', { title: 'Sampling settings', model: 'fake-model' });
  convId = c.id;
  await app.api('POST', '/chat/message', { conversation_id: convId, content: 'First question' });
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

async function openChat(t, options = {}) {
  const context = await newContext(browser, { viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1, ...options });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url, { next: `/c/${convId}` });
  await page.waitForURL(new RegExp(`/c/${convId}$`));
  await page.locator('.msg.assistant').first().waitFor();
  return { page, watch };
}

const settingsButton = (page) => page.getByRole('button', { name: 'Model settings' });
const dialog = (page) => page.getByRole('dialog', { name: 'Model settings' });
/** The sentence under a field, once it shows. */
async function fieldError(page, key) {
  const el = page.locator(`#ms-${key}-err`);
  await el.waitFor();
  return el.textContent();
}

test('set with the keyboard, refused as sentences, stored, sent upstream, reset', { timeout: 120_000 }, async (t) => {
  const { page, watch } = await openChat(t);
  const button = settingsButton(page);
  assert.equal(await button.getAttribute('aria-pressed'), 'false');

  // Open with the keyboard; the first field has focus.
  await button.focus();
  await page.keyboard.press('Enter');
  await dialog(page).waitFor();
  const temperature = page.getByLabel('Temperature');
  const maxTokens = page.getByLabel('Max tokens');
  const topP = page.getByLabel('Top p');
  await page.waitForFunction(() => document.activeElement?.id === 'ms-temperature');

  // Out of range: a sentence per field, the field marked and focused.
  await page.keyboard.type('3');
  await page.keyboard.press('Tab');
  await page.keyboard.type('0');
  await page.keyboard.press('Tab');
  await page.keyboard.type('1.5');
  await page.keyboard.press('Enter');
  assert.equal(await fieldError(page, 'temperature'), 'Temperature must be a number from 0 to 2.');
  assert.equal(await fieldError(page, 'max_tokens'), 'Max tokens must be a whole number from 1 to 1,000,000.');
  assert.equal(await fieldError(page, 'top_p'), 'Top p must be a number from 0 to 1.');
  assert.equal(await temperature.getAttribute('aria-invalid'), 'true');
  assert.match(await temperature.getAttribute('aria-describedby'), /ms-temperature-err/);
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'ms-temperature');
  t.diagnostic(`screenshot: ${await screenshot(page, 'model-settings-errors-desktop-light')}`);

  // Valid values (a comma works as the decimal mark); Save closes the dialog
  // and focus goes back to the button.
  await temperature.fill('0.4');
  await maxTokens.fill('64');
  await topP.fill('0,9');
  await dialog(page).getByRole('button', { name: 'Save' }).click();
  await dialog(page).waitFor({ state: 'detached' });
  await page.waitForFunction(() => document.activeElement?.getAttribute('aria-label') === 'Model settings');
  assert.equal(await button.getAttribute('aria-pressed'), 'true');
  const stored = await app.api('GET', `/conversations/${convId}`);
  assert.equal(stored.temperature, 0.4);
  assert.equal(stored.max_tokens, 64);
  assert.ok(Math.abs(stored.top_p - 0.9) < 1e-6, `top_p ${stored.top_p}`);

  // The next answer carries them to the provider, in its wire format.
  const composer = page.getByRole('textbox', { name: 'Message' });
  await composer.fill('Second question');
  await composer.press('Enter');
  await page.waitForFunction(() => {
    const a = [...document.querySelectorAll('.msg.assistant')];
    const last = a[a.length - 1];
    return a.length === 2 && last.dataset.status !== 'streaming' && !last.dataset.id.startsWith('local-');
  }, null, { timeout: 20_000 });
  const seen = (await app.upstream.chatRequests()).last;
  assert.equal(seen.messages.at(-1).content, 'Second question');
  assert.equal(seen.temperature, 0.4);
  assert.equal(seen.max_tokens, 64);
  assert.ok(Math.abs(seen.top_p - 0.9) < 1e-6, `top_p sent ${seen.top_p}`);

  // Reopened, it shows what is stored; "Use defaults" clears all three;
  // Escape on a reopened dialog changes nothing.
  await button.click();
  await dialog(page).waitFor();
  assert.equal(await temperature.inputValue(), '0.4');
  assert.equal(await maxTokens.inputValue(), '64');
  await page.keyboard.press('Escape');
  await dialog(page).waitFor({ state: 'detached' });
  await button.click();
  await dialog(page).getByRole('button', { name: 'Use defaults' }).click();
  assert.equal(await topP.inputValue(), '');
  await dialog(page).getByRole('button', { name: 'Save' }).click();
  await dialog(page).waitFor({ state: 'detached' });
  assert.equal(await button.getAttribute('aria-pressed'), 'false');
  const cleared = await app.api('GET', `/conversations/${convId}`);
  assert.deepEqual([cleared.temperature, cleared.max_tokens, cleared.top_p], [null, null, null]);
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('a new chat takes its settings with the first message', { timeout: 60_000 }, async (t) => {
  const { page, watch } = await openChat(t);
  await page.getByRole('button', { name: 'New chat' }).first().click();
  await page.waitForURL(/\/$/);
  await settingsButton(page).click();
  await page.getByLabel('Max tokens').fill('33');
  await dialog(page).getByRole('button', { name: 'Save' }).click();
  await dialog(page).waitFor({ state: 'detached' });
  const composer = page.getByRole('textbox', { name: 'Message' });
  await composer.fill('A brand new chat');
  await composer.press('Enter');
  await page.waitForURL(/\/c\/[0-9a-f-]+$/);
  const id = new URL(page.url()).pathname.split('/').pop();
  // Stored with the conversation the message made.
  await page.waitForFunction(() => {
    const a = document.querySelector('.msg.assistant');
    return a && a.dataset.status !== 'streaming';
  }, null, { timeout: 20_000 });
  const c = await app.api('GET', `/conversations/${id}`);
  assert.equal(c.max_tokens, 33);
  assert.equal(c.temperature, null);
  assert.equal(await settingsButton(page).getAttribute('aria-pressed'), 'true');
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('keys typed into a field right after the dialog opens stay in that field', { timeout: 60_000 }, async (t) => {
  const { page, watch } = await openChat(t);
  // Frames held back, as on a busy machine: focus moved a frame after the
  // dialog opened would land between these keys.
  await page.evaluate(() => {
    const raf = window.requestAnimationFrame.bind(window);
    window.requestAnimationFrame = (cb) => setTimeout(() => raf(cb), 250);
  });
  await settingsButton(page).click();
  const maxTokens = page.getByLabel('Max tokens');
  await maxTokens.click();
  await page.keyboard.type('123', { delay: 150 });
  const values = await page.evaluate(() => [...document.querySelectorAll('.model-settings input')].map((i) => [i.name, i.value]));
  assert.deepEqual(values, [['temperature', ''], ['max_tokens', '123'], ['top_p', '']]);
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'ms-max_tokens');
  await page.keyboard.press('Escape');
  await dialog(page).waitFor({ state: 'detached' });
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('screenshots at desktop and 390 px, light and dark; axe on the open dialog', { timeout: 120_000 }, async (t) => {
  const problems = [];
  for (const colorScheme of ['light', 'dark']) {
    for (const [label, width, height] of [['desktop', 1280, 800], ['390', 390, 844]]) {
      const { page, watch } = await openChat(t, { viewport: { width, height }, colorScheme, bypassCSP: true });
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `no horizontal overflow at ${width} px (${overflow} px)`);
      assert.ok(await settingsButton(page).isVisible(), `the button shows at ${width} px`);
      t.diagnostic(`screenshot: ${await screenshot(page, `model-settings-header-${label}-${colorScheme}`)}`);
      await settingsButton(page).click();
      await dialog(page).waitFor();
      await page.getByLabel('Temperature').fill('2.5');
      await page.getByLabel('Max tokens').fill('2048');
      await dialog(page).getByRole('button', { name: 'Save' }).click();
      assert.equal(await fieldError(page, 'temperature'), 'Temperature must be a number from 0 to 2.');
      await page.waitForTimeout(150);
      t.diagnostic(`screenshot: ${await screenshot(page, `model-settings-dialog-${label}-${colorScheme}`)}`);
      await page.addScriptTag({ path: AXE_PATH });
      const r = await page.evaluate(async () => {
        // eslint-disable-next-line no-undef
        const res = await axe.run(document, { resultTypes: ['violations'] });
        return res.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
      });
      t.diagnostic(`${label} ${colorScheme}: ${r.length} violation(s)${r.length ? ': ' + r.map((v) => `${v.id}[${v.impact}]`).join(', ') : ''}`);
      problems.push(...r.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => ({ at: `${label} ${colorScheme}`, ...v })));
      await page.keyboard.press('Escape');
      await dialog(page).waitFor({ state: 'detached' });
      assert.deepEqual(unexpectedProblems(watch), []);
    }
  }
  assert.deepEqual(problems, [], 'no serious or critical axe violations');
});
