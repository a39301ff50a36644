// Presets, the `/` prompt library and branding, in a real browser against
// the real binary: a preset made in Settings starts a chat with its model,
// system prompt and settings (the fake upstream records what it got); the
// composer's `/` menu by keyboard and mouse; branding set in Admin shows in
// the header, the browser title and the sign-in page. Screenshots at
// desktop and 390 px in both themes (target/e2e/), axe on every new view.

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

// A 1×1 PNG.
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg==', 'base64');

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

const T = { timeout: 150_000 };

async function axeCheck(page, name) {
  assert.ok(AXE_PATH, 'axe-core is installed in tests/e2e/node_modules');
  if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) await page.addScriptTag({ path: AXE_PATH });
  const r = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const res = await axe.run(document, { resultTypes: ['violations'] });
    return res.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  return r.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => ({ page: name, ...v }));
}

test('a preset made in Settings starts a chat with its model, prompt and settings', T, async (t) => {
  const context = await newContext(browser, { viewport: { width: 1280, height: 900 } });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url);

  await page.goto(app.url + '/settings#presets');
  await page.getByRole('heading', { name: 'Presets' }).waitFor();
  // Custom instructions first.
  await page.getByLabel('Instructions', { exact: true }).fill('I use metric units.');
  await page.getByRole('button', { name: 'Save instructions' }).click();
  await page.getByText('Custom instructions saved').waitFor();

  await page.getByRole('button', { name: 'New preset' }).click();
  const form = page.getByRole('form', { name: 'New preset' });
  await form.getByLabel('Name').fill('Pirate');
  await form.getByLabel('Model').selectOption('fake-model-2');
  await form.getByLabel('Description').fill('Answers like a pirate');
  await form.getByLabel('System prompt').fill('Talk like a pirate.');
  await form.getByLabel('Temperature (0–2)').fill('3');
  await form.getByRole('button', { name: 'Create preset' }).click();
  // The browser's own range check, or the server's sentence.
  const invalid = await form.getByLabel('Temperature (0–2)').evaluate((el) => !el.checkValidity());
  assert.ok(invalid, 'temperature above 2 is refused before sending');
  await form.getByLabel('Temperature (0–2)').fill('0.3');
  await form.getByLabel('Max tokens').fill('200');
  await form.getByRole('button', { name: 'Create preset' }).click();
  await page.getByTestId('preset-list').getByText('Pirate', { exact: true }).waitFor();
  t.diagnostic(`screenshot: ${await screenshot(page, 'settings-presets')}`);

  // A name the server refuses comes back as a sentence.
  await page.getByRole('button', { name: 'New preset' }).click();
  const f2 = page.getByRole('form', { name: 'New preset' });
  await f2.getByLabel('Name').fill('   ');
  await f2.getByRole('button', { name: 'Create preset' }).click();
  await f2.getByRole('alert').locator('.error-sentence', { hasText: 'Name must be 1 to 80 characters' }).waitFor();
  await f2.getByRole('button', { name: 'Cancel' }).click();

  // Start a chat with it.
  await page.goto(app.url + '/');
  const picker = page.getByTestId('preset-picker');
  await picker.waitFor();
  await picker.locator('label', { hasText: 'Pirate' }).click();
  assert.ok(await picker.getByRole('radio', { name: /Pirate/ }).isChecked());
  assert.match(await page.getByRole('button', { name: /^Model\b(?! settings)/ }).textContent(), /fake-model-2/, 'the preset picks its model');
  t.diagnostic(`screenshot: ${await screenshot(page, 'new-chat-presets-desktop-light')}`);
  const composer = page.getByRole('textbox', { name: 'Message' });
  await composer.fill('Ahoy?');
  await composer.press('Enter');
  await page.waitForURL(/\/c\/[0-9a-f-]+$/);
  await page.waitForFunction(() => {
    const a = [...document.querySelectorAll('.msg.assistant')].pop();
    return a && a.dataset.status === 'complete' && !a.dataset.id.startsWith('local-');
  }, null, { timeout: 20_000 });
  const cid = new URL(page.url()).pathname.split('/').pop();
  // The first answer is followed by the title request (its own settings):
  // wait for the title, then the second answer's request is the last one.
  for (let i = 0; i < 100; i++) {
    if ((await app.api('GET', `/conversations/${cid}`)).title !== 'New chat') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await composer.fill('And then?');
  await composer.press('Enter');
  await page.waitForFunction(() => {
    const all = [...document.querySelectorAll('.msg.assistant')];
    const a = all.pop();
    return all.length === 1 && a && a.dataset.status === 'complete' && !a.dataset.id.startsWith('local-');
  }, null, { timeout: 20_000 });
  const got = (await app.upstream.chatRequests()).last;
  assert.equal(got.model, 'fake-model-2');
  assert.equal(got.temperature, 0.3);
  assert.equal(got.max_tokens, 200);
  assert.equal(got.messages[0].role, 'system');
  assert.equal(got.messages[0].content, 'Talk like a pirate.\n\nI use metric units.');
  const conv = await app.api('GET', `/conversations/${cid}`);
  assert.equal(conv.system_prompt, 'Talk like a pirate.');

  // The new-chat screen at 390 px and in the dark.
  for (const [width, height, scheme] of [[390, 844, 'light'], [390, 844, 'dark'], [1280, 900, 'dark']]) {
    const c = await newContext(browser, { viewport: { width, height }, colorScheme: scheme, deviceScaleFactor: 1 });
    t.after(() => c.close());
    const p = await c.newPage();
    await signIn(p, app.url);
    await p.getByTestId('preset-picker').waitFor();
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal overflow at ${width} px (${overflow} px)`);
    t.diagnostic(`screenshot: ${await screenshot(p, `new-chat-presets-${width}-${scheme}`)}`);
    if (width === 390) {
      // The preset form on a phone: nothing sideways.
      await p.goto(app.url + '/settings#presets');
      await p.getByRole('button', { name: 'Edit preset Pirate' }).click();
      await p.getByRole('form', { name: 'Edit preset Pirate' }).waitFor();
      const o = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(o <= 0, `no horizontal overflow in the preset form at 390 px (${o} px)`);
      await p.getByRole('form', { name: 'Edit preset Pirate' }).screenshot({ path: (await screenshot(p, `settings-preset-form-390-${scheme}`)).replace(/\.png$/, '-form.png') });
    }
  }
  // The blank name the server refused above.
  assert.deepEqual(unexpectedProblems(watch, [/status of 400 \(Bad Request\) \(http:\/\/127\.0\.0\.1:\d+\/api\/presets\)/]), []);
});

test('typing / in the composer offers saved prompts by keyboard and mouse', T, async (t) => {
  await app.api('POST', '/prompts', { title: 'Summarize', command: 'summarize', text: 'Summarize in three bullet points:' });
  await app.api('POST', '/prompts', { title: 'Translate to French', command: 'fr', text: 'Translate to French:', shared: true });
  await app.api('POST', '/prompts', { title: 'Explain simply', command: 'eli5', text: 'Explain like I am five:' });
  const results = [];
  for (const [width, height, scheme] of [[1280, 820, 'light'], [390, 844, 'dark']]) {
    const context = await newContext(browser, { viewport: { width, height }, colorScheme: scheme, bypassCSP: true, deviceScaleFactor: 1 });
    t.after(() => context.close());
    const page = await context.newPage();
    const watch = await watchPage(page);
    await signIn(page, app.url);
    const composer = page.getByRole('textbox', { name: 'Message' });
    await composer.click();
    await composer.pressSequentially('/');
    const list = page.getByRole('listbox', { name: 'Saved prompts' });
    await list.waitFor();
    assert.equal(await list.getByRole('option').count(), 3);
    t.diagnostic(`screenshot: ${await screenshot(page, `slash-menu-${width}-${scheme}`)}`);
    results.push(...await axeCheck(page, `slash menu (${width}, ${scheme})`));
    // Filtering, then arrows and Enter.
    await composer.pressSequentially('el');
    await page.waitForFunction(() => document.querySelectorAll('#slash-menu [role=option]').length === 1);
    assert.match(await list.getByRole('option').textContent(), /\/eli5/, '/el matches eli5 only');
    await composer.press('Backspace');
    await composer.press('Backspace');
    await page.waitForFunction(() => document.querySelectorAll('#slash-menu [role=option]').length === 3);
    await composer.press('ArrowDown');
    const active = await composer.getAttribute('aria-activedescendant');
    assert.equal(await page.locator('#' + active).getAttribute('aria-selected'), 'true');
    assert.match(await page.locator('#' + active).textContent(), /\/fr/);
    await composer.press('Enter');
    assert.equal(await composer.inputValue(), 'Translate to French:', 'Enter inserts the prompt instead of sending');
    assert.equal(await composer.evaluate((el) => el.selectionStart), 'Translate to French:'.length, 'the caret is after the inserted text in the same render');
    await list.waitFor({ state: 'detached' });
    // Escape closes without stopping or sending anything.
    await composer.fill('');
    await composer.pressSequentially('Please /su');
    await list.waitFor();
    await composer.press('Escape');
    await page.getByTestId('slash-menu').waitFor({ state: 'detached' });
    assert.equal(await composer.inputValue(), 'Please /su');
    // The mouse: a click inserts in place of the command.
    await composer.press('Backspace');
    await list.waitFor();
    await list.getByRole('option', { name: /summarize/ }).click();
    assert.equal(await composer.inputValue(), 'Please Summarize in three bullet points:');
    // Nothing matches: a sentence, not an empty box.
    await composer.fill('');
    await composer.pressSequentially('/zzz');
    await page.getByTestId('slash-menu').getByText('No saved prompt matches /zzz.').waitFor();
    assert.equal(await page.locator('.msg').count(), 0, 'nothing was sent');
    assert.deepEqual(unexpectedProblems(watch), []);
  }
  assert.deepEqual(results, [], 'no serious or critical axe violations');
});

test('branding set in Admin shows in the header, the title and the sign-in page', T, async (t) => {
  const context = await newContext(browser, { viewport: { width: 1280, height: 900 } });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url);
  await page.goto(app.url + '/admin/branding');
  await page.getByRole('heading', { name: 'Branding' }).waitFor();

  await page.getByLabel('Accent colour', { exact: true }).fill('green');
  await page.getByRole('button', { name: 'Save branding' }).click();
  await page.getByRole('alert').locator('.error-sentence', { hasText: 'must be a hex colour like #3b82f6' }).waitFor();

  await page.getByLabel('Server name').fill('Acme Chat');
  await page.getByLabel('Accent colour', { exact: true }).fill('#7c3aed');
  await page.getByLabel('Sign-in page message').fill('Staff only. Ask IT for an account.');
  await page.getByRole('button', { name: 'Save branding' }).click();
  await page.getByText('Branding saved').waitFor();
  await page.getByTestId('logo-file').setInputFiles({ name: 'logo.png', mimeType: 'image/png', buffer: PNG });
  await page.getByText('Logo saved').waitFor();
  // Not an image: refused with a sentence.
  await page.getByTestId('logo-file').setInputFiles({ name: 'x.png', mimeType: 'image/png', buffer: Buffer.from('<svg/>') });
  await page.getByRole('alert').locator('.error-sentence', { hasText: 'must be a PNG, JPEG, GIF or WebP image' }).waitFor();
  assert.equal(await page.title(), 'Admin · Acme Chat');
  t.diagnostic(`screenshot: ${await screenshot(page, 'admin-branding')}`);

  const pub = await (await fetch(app.url + '/api/branding')).json();
  assert.equal(pub.server_name, 'Acme Chat');
  assert.equal(pub.accent_color, '#7c3aed');
  assert.deepEqual(Object.keys(pub).sort(), ['accent_color', 'logo_url', 'server_name', 'sign_in_message']);
  const logo = await fetch(app.url + pub.logo_url);
  assert.equal(logo.headers.get('content-type'), 'image/png');
  assert.equal(logo.headers.get('x-content-type-options'), 'nosniff');

  await page.goto(app.url + '/');
  await page.locator('.sidebar .brand', { hasText: 'Acme Chat' }).waitFor();
  await page.locator('.sidebar .brand img.logo').waitFor();
  assert.equal(await page.title(), 'New chat · Acme Chat');
  const accent = await page.evaluate(() => getComputedStyle(document.documentElement).getPropertyValue('--accent').trim());
  assert.equal(accent, '#7c3aed');
  // The refused colour and logo above.
  assert.deepEqual(unexpectedProblems(watch, [/status of 400 \(Bad Request\) \(http:\/\/127\.0\.0\.1:\d+\/api\/admin\/branding/]), []);

  // The sign-in page, signed out, in both themes and on a phone.
  const results = [];
  for (const [width, height, scheme] of [[1280, 800, 'light'], [1280, 800, 'dark'], [390, 844, 'light'], [390, 844, 'dark']]) {
    const c = await newContext(browser, { viewport: { width, height }, colorScheme: scheme, bypassCSP: true, deviceScaleFactor: 1 });
    t.after(() => c.close());
    const p = await c.newPage();
    const w = await watchPage(p);
    await p.goto(app.url + '/login');
    await p.getByTestId('sign-in-message').getByText('Staff only. Ask IT for an account.').waitFor();
    await p.locator('.auth-brand', { hasText: 'Acme Chat' }).waitFor();
    await p.locator('.auth-brand img.logo').waitFor();
    assert.equal(await p.title(), 'Sign in · Acme Chat');
    t.diagnostic(`screenshot: ${await screenshot(p, `sign-in-branded-${width}-${scheme}`)}`);
    results.push(...await axeCheck(p, `sign-in (${width}, ${scheme})`));
    if (width === 1280) {
      await signIn(p, app.url);
      await p.goto(app.url + '/admin/branding');
      await p.getByRole('heading', { name: 'Logo' }).waitFor();
      results.push(...await axeCheck(p, `admin branding (${scheme})`));
      await p.goto(app.url + '/settings');
      await p.getByTestId('preset-list').waitFor();
      results.push(...await axeCheck(p, `settings with presets (${scheme})`));
      await p.goto(app.url + '/');
      await p.getByTestId('preset-picker').waitFor();
      results.push(...await axeCheck(p, `new chat with presets (${scheme})`));
      t.diagnostic(`screenshot: ${await screenshot(p, `chat-branded-${scheme}`)}`);
    }
    assert.deepEqual(unexpectedProblems(w, [/status of 404/]), []);
  }
  assert.deepEqual(results, [], 'no serious or critical axe violations');

  // Cleared, confab's own look comes back.
  await app.api('PATCH', '/admin/branding', { server_name: null, accent_color: null, sign_in_message: null });
  await app.api('DELETE', '/admin/branding/logo');
  await page.goto(app.url + '/');
  await page.locator('.sidebar .brand', { hasText: 'confab' }).waitFor();
  assert.equal(await page.locator('.sidebar .brand img').count(), 0);
});
