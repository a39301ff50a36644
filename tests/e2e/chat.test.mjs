// The whole path a person takes, in a real browser against the real binary
// and the fake upstream: setup → sign out → sign in → send → streamed answer
// → stop → regenerate → edit and switch branches → rename → delete → sign
// out; plus the 401 round trip and the keyboard shortcuts.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, watchPage } from './lib/browser.mjs';
import { startApp, ADMIN, DEFAULT_REPLY, unexpectedProblems, newContext, pickModel } from './lib/app.mjs';

const LONG = Array.from({ length: 80 }, (_, i) => `word${i}`).join(' ') + '.';

let app;
let browser;

before(async () => {
  app = await startApp({ setup: false, replies: { 'long+slow': LONG } });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

const T = { timeout: 120_000 };
const answers = (page) => page.locator('.msg.assistant');
const lastAnswer = (page) => answers(page).last();

async function waitComplete(page, timeout = 20_000) {
  await page.waitForFunction(() => {
    const a = [...document.querySelectorAll('.msg.assistant')].pop();
    return a && a.dataset.status !== 'streaming' && !a.dataset.id.startsWith('local-');
  }, null, { timeout });
}

test('setup → chat → stop → regenerate → edit → branches → rename → delete → sign out', T, async (t) => {
  const context = await newContext(browser, { viewport: { width: 1280, height: 820 } });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  const step = (name) => t.diagnostic(`step: ${name}`);

  // --- setup: the link from the log creates the admin and signs in
  step('setup');
  await page.goto(app.server.setupUrl);
  await page.getByRole('heading', { name: 'Create the administrator' }).waitFor();
  await page.getByLabel('Username').fill(ADMIN.username);
  await page.getByLabel('Password', { exact: true }).fill(ADMIN.password);
  await page.getByLabel('Repeat password').fill(ADMIN.password);
  await page.getByRole('button', { name: 'Create account and sign in' }).click();
  const composer = page.getByRole('textbox', { name: 'Message' });
  await composer.waitFor();
  assert.equal(new URL(page.url()).pathname, '/');

  // --- sign out and back in
  step('sign out / sign in');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await page.getByLabel('Username').fill(ADMIN.username);
  await page.getByLabel('Password', { exact: true }).fill(ADMIN.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await composer.waitFor();
  await assertFocused(page, composer, 'composer is focused on a new chat');

  // --- send: Enter sends, the answer streams in, the URL and title follow
  step('send');
  await pickModel(page, 'fake-model+slow');
  await composer.fill('Hello there');
  await composer.press('Shift+Enter');
  await composer.type('second line');
  assert.equal(await composer.inputValue(), 'Hello there\nsecond line', 'Shift+Enter adds a new line');
  await composer.press('Enter');
  await page.locator('.msg.user .bubble', { hasText: 'second line' }).waitFor();
  // Streaming: the stop button shows, text grows before the end.
  await page.getByRole('button', { name: 'Stop generating' }).waitFor();
  await page.waitForFunction(() => {
    const a = document.querySelector('.msg.assistant .md');
    return a && a.textContent.length > 0 && a.closest('.msg').dataset.status === 'streaming';
  }, null, { timeout: 10_000 });
  await waitComplete(page);
  assert.equal((await lastAnswer(page).locator('.md').textContent()).trim(), DEFAULT_REPLY);
  await page.waitForURL(/\/c\/[0-9a-f-]{36}$/);
  const convId = page.url().split('/c/')[1];
  await assertFocused(page, composer, 'composer keeps focus after sending');
  // Model and token count under the answer.
  await lastAnswer(page).locator('.model-tag', { hasText: 'fake-model+slow' }).waitFor();
  assert.match(await lastAnswer(page).locator('.tokens').innerText(), /^\d+ tokens?$/);
  // The sidebar lists it; the page title follows the conversation title.
  await page.locator(`.conv-link[href="/c/${convId}"]`).waitFor();
  await page.waitForFunction(() => document.title !== 'New chat · confab' && document.title.endsWith(' · confab'), null, { timeout: 10_000 });

  // --- stop: a long answer, stopped with Esc, keeps its partial text
  step('stop');
  await pickModel(page, 'long+slow');
  await composer.fill('Tell me a long story');
  await composer.press('Enter');
  await page.waitForFunction(() => {
    const a = [...document.querySelectorAll('.msg.assistant')].pop();
    return a && a.dataset.status === 'streaming' && (a.querySelector('.md')?.textContent || '').split(' ').length >= 3;
  }, null, { timeout: 10_000 });
  await page.keyboard.press('Escape');
  await waitComplete(page);
  const stopped = lastAnswer(page);
  assert.equal(await stopped.getAttribute('data-status'), 'interrupted');
  const partial = (await stopped.locator('.md').textContent()).trim();
  assert.ok(partial.length > 0 && partial.length < LONG.length, `partial answer kept (${partial.length} chars)`);
  assert.ok(LONG.startsWith(partial), 'the partial answer is a prefix of the full one');
  await stopped.locator('.msg-note', { hasText: 'Stopped' }).waitFor();

  // --- regenerate: a second version of that answer, with branch arrows
  step('regenerate');
  await pickModel(page, 'fake-model');
  await lastAnswer(page).getByRole('button', { name: 'Regenerate answer' }).click();
  await waitComplete(page);
  assert.equal((await lastAnswer(page).locator('.md').textContent()).trim(), DEFAULT_REPLY);
  await lastAnswer(page).locator('.branch-pos', { hasText: '2/2' }).waitFor();
  await lastAnswer(page).getByRole('button', { name: 'Previous version' }).click();
  await lastAnswer(page).locator('.branch-pos', { hasText: '1/2' }).waitFor();
  assert.equal((await lastAnswer(page).locator('.md').textContent()).trim(), partial, 'version 1 is the stopped answer');
  await lastAnswer(page).getByRole('button', { name: 'Next version' }).click();
  await lastAnswer(page).locator('.branch-pos', { hasText: '2/2' }).waitFor();

  // --- edit the first message: a new branch from the root
  step('edit');
  const firstUser = page.locator('.msg.user').first();
  await firstUser.hover();
  await firstUser.getByRole('button', { name: 'Edit message' }).click();
  const editor = page.getByRole('textbox', { name: 'Edit message' });
  await assertFocused(page, editor, 'the editor takes focus');
  await editor.fill('An edited first question');
  await editor.press('Enter');
  await waitComplete(page);
  assert.equal(await page.locator('.msg.user').count(), 1, 'the edited branch has one user message');
  await page.locator('.msg.user .bubble', { hasText: 'An edited first question' }).waitFor();
  const userNav = page.locator('.msg.user').first().locator('.branch-pos');
  await userNav.filter({ hasText: '2/2' }).waitFor();
  // Switch back to the original branch: its whole thread comes back.
  await page.locator('.msg.user').first().getByRole('button', { name: 'Previous version' }).click();
  await userNav.filter({ hasText: '1/2' }).waitFor();
  await page.locator('.msg.user .bubble', { hasText: 'second line' }).waitFor();
  assert.equal(await page.locator('.msg.user').count(), 2, 'the original branch has both questions');
  const tree = await fetchAsPage(page, `/api/conversations/${convId}/tree`);
  assert.equal(tree.items.filter((m) => m.role === 'user' && m.parent_id === null).length, 2, 'two root versions stored');

  // --- rename from the sidebar menu
  step('rename');
  const item = page.locator(`.conv:has(a[href="/c/${convId}"])`);
  await item.getByRole('button', { name: /^More actions for/ }).click();
  await page.getByRole('menuitem', { name: 'Rename' }).click();
  const title = page.getByRole('textbox', { name: 'New title' });
  await title.fill('Renamed in the browser');
  await title.press('Enter');
  await item.locator('.conv-title', { hasText: 'Renamed in the browser' }).waitFor();
  await page.locator('.chat-title', { hasText: 'Renamed in the browser' }).waitFor();
  await page.waitForFunction(() => document.title === 'Renamed in the browser · confab');

  // --- pin, then archive and restore through the menu
  step('pin');
  await item.getByRole('button', { name: /^More actions for/ }).click();
  await page.getByRole('menuitem', { name: 'Pin' }).click();
  await page.locator('section[aria-label="Pinned"] .conv-title', { hasText: 'Renamed in the browser' }).waitFor();

  // --- delete, with the confirm dialog (Cancel first, then Delete)
  step('delete');
  await item.getByRole('button', { name: /^More actions for/ }).click();
  await page.getByRole('menuitem', { name: 'Delete' }).click();
  const dialog = page.getByRole('dialog', { name: 'Delete this conversation?' });
  await dialog.waitFor();
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await item.count(), 1, 'cancel keeps it');
  await item.getByRole('button', { name: /^More actions for/ }).click();
  await page.getByRole('menuitem', { name: 'Delete' }).click();
  await dialog.getByRole('button', { name: 'Delete' }).click();
  await item.waitFor({ state: 'detached' });
  await page.waitForURL((u) => u.pathname === '/');
  const gone = await page.evaluate(async (id) => (await fetch(`/api/conversations/${id}`)).status, convId);
  assert.equal(gone, 404);

  // --- sign out
  step('sign out');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  const me = await page.evaluate(async () => (await fetch('/api/auth/me')).status);
  assert.equal(me, 401, 'the session is gone');

  assert.deepEqual(unexpectedProblems(watch, [/status of 404/]), [], 'no console errors, CSP violations or failed requests');
});

test('a 401 anywhere leads to sign-in and back; unsafe calls carry the CSRF token', T, async (t) => {
  const context = await newContext(browser);
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  const unsafe = [];
  page.on('request', (r) => {
    if (r.url().includes('/api/') && !['GET', 'HEAD'].includes(r.method())) unsafe.push({ url: r.url(), csrf: r.headers()['x-csrf-token'] });
  });

  // Deep link while signed out → login with next → back to the deep link.
  await page.goto(app.url + '/settings');
  await page.waitForURL(/\/login\?next=%2Fsettings$/);
  await page.getByLabel('Username').fill(ADMIN.username);
  await page.getByLabel('Password', { exact: true }).fill(ADMIN.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/settings$/);
  await page.getByRole('heading', { name: 'Active sessions' }).waitFor();
  // The page's own loads finish first: one still in flight when the
  // session ends would answer 401 and leave the page before the click below.
  await page.waitForLoadState('networkidle');

  // The session ends behind the page's back; the next call answers 401.
  await context.clearCookies();
  await page.getByRole('button', { name: 'Create key' }).scrollIntoViewIfNeeded();
  await page.getByLabel('Name').fill('my key');
  await page.getByRole('button', { name: 'Create key' }).click();
  await page.waitForURL(/\/login\?next=%2Fsettings$/);
  await page.getByLabel('Username').fill(ADMIN.username);
  await page.getByLabel('Password', { exact: true }).fill(ADMIN.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/settings$/);

  // Create an API key: shown once.
  await page.getByLabel('Name').fill('editor');
  await page.getByRole('button', { name: 'Create key' }).click();
  const key = await page.getByTestId('new-api-key').innerText();
  assert.match(key, /^cfk_/);
  await page.locator('.row', { hasText: 'editor' }).waitFor();

  const withSession = unsafe.filter((u) => !/\/auth\/(login|logout)$/.test(u.url));
  assert.ok(withSession.length >= 2);
  for (const u of withSession.slice(-1)) assert.ok(u.csrf && u.csrf.length > 10, `${u.url} carries X-CSRF-Token`);
  assert.deepEqual(unexpectedProblems(watch), []);
});

/** A new page signed in through the form, with `text` sent and answered in a new conversation. */
async function signInAndAsk(t, text) {
  const context = await newContext(browser);
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await page.goto(app.url + '/login');
  await page.getByLabel('Username').fill(ADMIN.username);
  await page.getByLabel('Password', { exact: true }).fill(ADMIN.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  const composer = page.getByRole('textbox', { name: 'Message' });
  await composer.waitFor();
  await composer.fill(text);
  await composer.press('Enter');
  await waitComplete(page);
  await page.waitForURL(/\/c\//);
  return { page, watch, composer };
}

test('keyboard: Ctrl+K focuses search, Ctrl+Shift+O starts a new chat', T, async (t) => {
  const { page, composer } = await signInAndAsk(t, 'quick question');

  await page.keyboard.press('Control+k');
  await assertFocused(page, page.getByRole('combobox', { name: 'Search conversations' }), 'Ctrl+K focuses search');
  // fill, not keyboard.type: keys typed while the model list or presets
  // are still re-rendering can land before the field has them.
  await page.getByRole('combobox', { name: 'Search conversations' }).fill('zzz-no-such-title');
  await page.locator('.sidebar .sr-empty', { hasText: 'No results for “zzz-no-such-title”' }).waitFor();
  await page.keyboard.press('Escape');
  await page.keyboard.press('Control+Shift+O');
  await page.waitForURL((u) => u.pathname === '/');
  await assertFocused(page, composer, 'new chat focuses the composer');
  await page.getByRole('heading', { name: 'How can I help you today?' }).waitFor();
});

test('a conversation that loads after the person left it stays left: the new chat sends into a new conversation', T, async (t) => {
  const { page, watch, composer } = await signInAndAsk(t, 'the conversation left behind');
  const left = new URL(page.url()).pathname.split('/').pop();

  // Open it again with its load held back; leave for a new chat; then let
  // the load answer.
  let release;
  const held = new Promise((r) => { release = r; });
  await page.route((u) => u.pathname === `/api/conversations/${left}`, async (route) => {
    await held;
    await route.continue();
  });
  await page.goto(`${app.url}/c/${left}`);
  await page.getByRole('button', { name: 'New chat' }).first().click();
  await page.waitForURL((u) => u.pathname === '/');
  const answered = page.waitForResponse((r) => new URL(r.url()).pathname === `/api/conversations/${left}`);
  release();
  await answered;
  await page.unroute((u) => u.pathname === `/api/conversations/${left}`);

  await page.getByRole('heading', { name: 'How can I help you today?' }).waitFor();
  await composer.fill('a new conversation');
  await composer.press('Enter');
  await waitComplete(page);
  await page.waitForURL((u) => /^\/c\//.test(u.pathname) && !u.pathname.endsWith(left));
  assert.equal(await page.locator('.msg.user').count(), 1, 'only the new message shows');
  const before = await fetchAsPage(page, `/api/conversations/${left}`);
  assert.deepEqual(before.messages.map((m) => m.role), ['user', 'assistant'], 'nothing was sent into the conversation left');
  assert.deepEqual(unexpectedProblems(watch), []);
});

async function assertFocused(page, locator, what) {
  await page.waitForFunction((el) => document.activeElement === el, await locator.elementHandle(), { timeout: 5000 })
    .catch(() => assert.fail(what));
}

function fetchAsPage(page, path) {
  return page.evaluate(async (p) => (await fetch(p)).json(), path);
}
