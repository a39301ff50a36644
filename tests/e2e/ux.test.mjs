// The rough edges a first week of real use found (issue 13, items 9–13):
// the thread stays at the end when an answer finishes; Escape closes the
// topmost thing only; text can be selected while an answer streams; a lost
// session keeps the draft; errors are sentences (details folded away);
// titles are plain text, named after a failed first answer and renamable
// from the header; dropdowns, task lists, long messages, archived chats,
// toasts, registration, the audit log, date groups, the skip link and the
// screen-reader announcement; unreachable providers' models are marked.
// Screenshots of the changed screens at 1280 and 390 px, light and dark.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { launch, watchPage, screenshot } from './lib/browser.mjs';
import { startApp, signIn, unexpectedProblems, newContext, ADMIN, pickModel } from './lib/app.mjs';
import { dateGroup, groupByDate, plainTitle, describeError } from '../../assets/js/words.js';

const require = createRequire(import.meta.url);
const AXE_PATH = require.resolve('axe-core/axe.min.js');

// Tall enough to scroll at 600 px, with a task list.
const TALL = [
  'Here is the plan:',
  '',
  '- [ ] pack the bags',
  '- [x] book the tickets',
  '',
  ...Array.from({ length: 30 }, (_, i) => `${i + 1}. step number ${i + 1}`),
].join('\n');
const LONG = Array.from({ length: 200 }, (_, i) => `word${i}`).join(' ') + '.';

let app;
let browser;
let bob;

before(async () => {
  app = await startApp({
    replies: { markdown: TALL, 'long+slow': LONG },
    // A provider nobody can reach (the discard port), with one model.
    extraConfig: [
      'default_model = "fake-model"',
      '[[providers]]',
      'kind = "openai"',
      'name = "ghost"',
      'base_url = "http://127.0.0.1:9/v1"',
      'models = ["ghost-model"]',
      '',
    ].join('\n'),
  });
  browser = await launch();
  bob = await app.api('POST', '/admin/users', { username: 'bob', password: ADMIN.password });
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

const T = { timeout: 120_000 };

async function open(t, { width = 1280, height = 800, colorScheme = 'light', user, ...opts } = {}) {
  const context = await newContext(browser, { viewport: { width, height }, colorScheme, deviceScaleFactor: 1, ...opts });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url, user || {});
  return { context, page, watch, composer: page.getByRole('textbox', { name: 'Message' }) };
}

async function waitComplete(page) {
  await page.waitForFunction(() => {
    const a = [...document.querySelectorAll('.msg.assistant')].pop();
    return a && a.dataset.status !== 'streaming' && !a.dataset.id.startsWith('local-');
  }, null, { timeout: 20_000 });
}

/** Two animation frames: what the last state change rendered is laid out. */
const frames = (page) => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

async function axeSerious(page, context = 'body') {
  await page.addScriptTag({ path: AXE_PATH });
  const r = await page.evaluate(async (sel) => {
    // eslint-disable-next-line no-undef
    const res = await axe.run(document.querySelector(sel), { resultTypes: ['violations'] });
    return res.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  }, context);
  return r.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

test('words: error sentences, plain titles and date groups', () => {
  assert.equal(plainTitle('**hello** `world`'), 'hello world');
  assert.equal(plainTitle('# A [link](https://x.example) and _this_'), 'A link and this');
  assert.equal(plainTitle('snake_case_name stays'), 'snake_case_name stays');
  const now = new Date(2026, 5, 15, 12, 0);
  const at = (d, h = 9) => new Date(2026, 5, 15 - d, h).toISOString();
  assert.equal(dateGroup(at(0, 1), now), 'Today');
  assert.equal(dateGroup(at(1, 23), now), 'Yesterday');
  assert.equal(dateGroup(at(6), now), 'Previous 7 days');
  assert.equal(dateGroup(at(20), now), 'Previous 30 days');
  assert.match(dateGroup(new Date(2026, 1, 3).toISOString(), now), /February 2026/);
  const groups = groupByDate([{ updated_at: at(0) }, { updated_at: at(0) }, { updated_at: at(1) }, { updated_at: at(40) }], now);
  assert.deepEqual(groups.map((g) => [g.title, g.items.length]), [['Today', 2], ['Yesterday', 1], ['May 2026', 1]]);
  for (const code of ['QUOTA_EXCEEDED', 'MODEL_NOT_FOUND', 'NOT_FOUND', 'CONVERSATION_NOT_FOUND', 'VALIDATION_FAILED']) {
    assert.equal(describeError({ code, message: 'x' }).retry, false, `${code} offers no Retry`);
  }
  for (const code of ['PROVIDER_UNREACHABLE', 'PROVIDER_ERROR', 'PROVIDER_TIMEOUT', 'NETWORK_ERROR']) {
    assert.equal(describeError({ code, message: 'x' }).retry, true, `${code} can be retried`);
  }
});

test('item 9: the thread stays at the end when an answer finishes in a new chat', T, async (t) => {
  const { page, composer, watch } = await open(t, { height: 600 });
  await pickModel(page, 'markdown');
  for (let i = 0; i < 3; i++) {
    if (i) {
      await page.keyboard.press('Control+Shift+O');
      await page.waitForURL((u) => u.pathname === '/');
    }
    await composer.fill(`a tall answer please (${i})`);
    // The quiet reload after the stream is what used to jump to the top.
    const reload = page.waitForResponse((r) => /\/api\/conversations\/[0-9a-f-]{36}\?limit=50$/.test(r.url()));
    await composer.press('Enter');
    await reload;
    await waitComplete(page);
    await frames(page);
    const pos = await page.evaluate(() => {
      const el = document.querySelector('.chat-scroll');
      return { top: Math.round(el.scrollTop), max: el.scrollHeight - el.clientHeight };
    });
    assert.ok(pos.max > 200, `the answer overflows (${pos.max})`);
    assert.ok(pos.max - pos.top < 2, `run ${i}: at the end after the answer (${JSON.stringify(pos)})`);
  }
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('item 10: Escape closes the topmost thing only; selection survives streaming', T, async (t) => {
  // Phone: the drawer closes, the answer goes on.
  {
    const { page, composer } = await open(t, { width: 390, height: 760 });
    await pickModel(page, 'long+slow');
    await composer.fill('a long story');
    await composer.press('Enter');
    await page.getByRole('button', { name: 'Stop generating' }).waitFor();
    await page.getByRole('button', { name: 'Open sidebar' }).click();
    await page.locator('.sidebar.open').waitFor();
    await page.keyboard.press('Escape');
    await page.locator('.sidebar.open').waitFor({ state: 'detached' });
    // Ctrl+K: the drawer with the search box; Escape clears the query, then closes the drawer.
    await page.keyboard.press('Control+k');
    await page.locator('.sidebar.open').waitFor();
    await page.keyboard.type('story');
    await page.keyboard.press('Escape');
    assert.equal(await page.getByRole('combobox', { name: 'Search conversations' }).inputValue(), '');
    await page.keyboard.press('Escape');
    await page.locator('.sidebar.open').waitFor({ state: 'detached' });
    assert.equal(await page.locator('.msg.assistant').last().getAttribute('data-status'), 'streaming', 'the answer still runs');
    // Nothing else open: Escape stops it.
    await page.keyboard.press('Escape');
    await waitComplete(page);
    assert.equal(await page.locator('.msg.assistant').last().getAttribute('data-status'), 'interrupted');
  }
  // Desktop: the search box (query, then the box itself), then the answer;
  // a selection in the streaming answer survives the next tokens.
  const { page, composer, watch } = await open(t);
  await pickModel(page, 'long+slow');
  await composer.fill('another long story');
  await composer.press('Enter');
  await page.waitForFunction(() => (document.querySelector('.msg.assistant .md')?.textContent || '').split(' ').length >= 4);
  await page.keyboard.press('Control+k');
  await page.keyboard.type('zzz');
  await page.keyboard.press('Escape');
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => document.activeElement?.id === 'message-box');
  assert.equal(await page.locator('.msg.assistant').last().getAttribute('data-status'), 'streaming', 'the answer still runs');
  await page.evaluate(() => {
    const text = document.querySelector('.msg.assistant .md p').firstChild;
    const r = document.createRange();
    r.setStart(text, 0);
    r.setEnd(text, 5);
    document.getSelection().removeAllRanges();
    document.getSelection().addRange(r);
  });
  const words = () => page.evaluate(() => document.querySelector('.msg.assistant .md').textContent.split(' ').length);
  const before = await words();
  await page.waitForFunction((n) => {
    // The shown text keeps growing around the selection (its paragraph is appended to).
    const md = document.querySelector('.msg.assistant .md');
    return md.textContent.split(' ').length >= n + 3;
  }, before, { timeout: 10_000 });
  assert.equal(await page.evaluate(() => document.getSelection().toString()), 'word0', 'the selection survives new tokens');
  await page.keyboard.press('Escape');
  await waitComplete(page);
  assert.equal(await page.evaluate(() => document.getSelection().toString()), 'word0', 'and survives the end of the answer');
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('item 10: a lost session keeps the draft and says what happened', T, async (t) => {
  const { page, composer, context, watch } = await open(t);
  await composer.fill('first');
  await composer.press('Enter');
  await waitComplete(page);
  await page.waitForURL(/\/c\//);
  const chatPath = new URL(page.url()).pathname;
  // The session ends behind the page's back while a message is typed (a
  // background refresh may notice first: the draft is kept either way).
  await composer.fill('a message worth keeping');
  await context.clearCookies();
  await composer.press('Enter').catch(() => {});
  await page.waitForURL(/\/login\?next=/);
  await page.getByTestId('session-ended').getByText('Your session has ended').waitFor();
  await page.getByLabel('Username').fill(ADMIN.username);
  await page.getByLabel('Password', { exact: true }).fill(ADMIN.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.pathname === chatPath);
  await page.waitForFunction(() => document.getElementById('message-box')?.value === 'a message worth keeping');
  await page.getByText('It is back in the message box').waitFor();
  assert.deepEqual(unexpectedProblems(watch, [/status of 401/]), []);
});

test('item 11: errors are sentences; codes and request ids under Details; Retry only when it can help', T, async (t) => {
  // Wrong password.
  {
    const context = await newContext(browser);
    t.after(() => context.close());
    const page = await context.newPage();
    await page.goto(app.url + '/login');
    await page.getByLabel('Username').fill(ADMIN.username);
    await page.getByLabel('Password', { exact: true }).fill('not the password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    const banner = page.locator('.banner.error');
    await banner.getByText('The username or password is wrong').waitFor();
    const shown = await banner.innerText();
    assert.doesNotMatch(shown, /INVALID_CREDENTIALS|request/i, `no code or request id in sight: ${shown}`);
    await banner.locator('summary', { hasText: 'Details' }).click();
    assert.match(await banner.locator('details').innerText(), /INVALID_CREDENTIALS[\s\S]*Request id: \S+/);
  }
  // Quota: the reset time in the reader's time zone, no Retry, no raw timestamp.
  await app.api('PATCH', `/admin/users/${bob.id}`, { quota: { messages_per_day: 1, tokens_per_day: null } });
  const { page, composer, watch } = await open(t, { user: { username: 'bob' }, timezoneId: 'Asia/Tokyo', locale: 'en-US' });
  await composer.fill('one');
  await composer.press('Enter');
  await waitComplete(page);
  await composer.fill('two');
  await composer.press('Enter');
  const banner = page.locator('.chat-bottom .banner.error');
  await banner.getByText("You have used up today's message quota").waitFor();
  const text = await banner.innerText();
  // UTC midnight is 9:00 AM in Tokyo.
  assert.match(text, /resets at 9:00\sAM( tomorrow)? \(your time\)/, text);
  assert.doesNotMatch(text, /QUOTA_EXCEEDED|\d{4}-\d\d-\d\dT/, text);
  assert.equal(await banner.getByRole('button', { name: 'Retry' }).count(), 0, 'no Retry that cannot succeed');
  assert.equal(await composer.inputValue(), 'two', 'the refused message is back in the box');
  await screenshot(page, 'ux-error-quota');
  // A failing provider: one error, in the answer, with Retry and no "~0 tokens".
  await app.api('PATCH', `/admin/users/${bob.id}`, { quota: { messages_per_day: null, tokens_per_day: null } });
  await app.upstream.command({ cmd: 'fail_next', n: 20 });
  await page.getByRole('button', { name: 'Dismiss error' }).click();
  await composer.press('Enter');
  const failed = page.locator('.msg.assistant[data-status=error]');
  await failed.waitFor();
  await failed.getByText('answered with an error').waitFor();
  await frames(page);
  assert.equal(await page.getByText('answered with an error').count(), 1, 'the error is shown once');
  assert.equal(await page.locator('.chat-bottom .banner.error').count(), 0);
  assert.doesNotMatch(await failed.innerText(), /~0 tokens|PROVIDER_ERROR/);
  await failed.getByRole('button', { name: 'Retry' }).waitFor();
  await app.upstream.command({ cmd: 'fail_next', n: 0 });
  // A conversation that does not exist: a sentence, no Retry.
  await page.goto(app.url + '/c/00000000-0000-7000-8000-000000000000');
  const nf = page.locator('.banner.error', { hasText: 'may have been deleted' });
  await nf.waitFor();
  assert.equal(await nf.getByRole('button', { name: 'Retry' }).count(), 0);
  assert.deepEqual(unexpectedProblems(watch, [/status of 429/, /status of 404/]), []);
});

test('item 12: titles are plain text, named after a failed first answer, renamed from the header', T, async (t) => {
  const c = await app.api('POST', '/conversations', { title: '**hello** `world`' });
  const { page, composer, watch } = await open(t);
  await page.goto(`${app.url}/c/${c.id}`);
  await page.locator(`.conv-link[href="/c/${c.id}"] .conv-title`, { hasText: /^hello world$/ }).waitFor();
  await page.locator('.chat-title', { hasText: 'hello world' }).waitFor();
  assert.equal(await page.locator('.chat-title').innerText(), 'hello world');
  await page.waitForFunction(() => document.title === 'hello world · confab');
  // Rename from the header.
  await page.getByRole('button', { name: /^Rename conversation/ }).click();
  const field = page.getByRole('textbox', { name: 'Conversation title' });
  await field.fill('Renamed from the header');
  await field.press('Enter');
  await page.locator(`.conv-link[href="/c/${c.id}"]`, { hasText: 'Renamed from the header' }).waitFor();
  assert.equal((await app.api('GET', `/conversations/${c.id}`)).title, 'Renamed from the header');
  // A first answer that fails: the chat is named from the question.
  await page.keyboard.press('Control+Shift+O');
  await app.upstream.command({ cmd: 'fail_next', n: 20 });
  await composer.fill('Plan a weekend in Lisbon');
  await composer.press('Enter');
  await page.locator('.msg.assistant[data-status=error]').waitFor();
  await page.waitForURL(/\/c\//);
  await app.upstream.command({ cmd: 'fail_next', n: 0 });
  await page.locator('.chat-title', { hasText: 'Plan a weekend in Lisbon' }).waitFor({ timeout: 10_000 });
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('item 12: dropdowns, task lists, long messages, archived chats, toasts, groups, skip link, announcements', T, async (t) => {
  const long = Array.from({ length: 400 }, (_, i) => `line ${i}`).join('\n');
  const m = await app.api('POST', '/chat/message', { content: long, model: 'markdown' });
  await app.api('PATCH', `/conversations/${m.conversation_id}`, { archived: true });
  await app.api('POST', '/conversations', { title: 'Trip ideas' });
  const { page, composer, watch } = await open(t, { bypassCSP: true });
  // Skip link first in the tab order; it goes to the message box.
  await page.locator('.skip-link').focus();
  await page.keyboard.press('Shift+Tab');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to the message box');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.activeElement?.id === 'message-box');
  // Today's chats are grouped as such.
  await page.locator('.conv-section[aria-label="Today"]').waitFor();
  // A finished answer is announced once, not token by token.
  await composer.fill('hello');
  await composer.press('Enter');
  await waitComplete(page);
  await page.getByTestId('announcer').getByText('Answer finished.').waitFor();
  assert.equal(await page.getByTestId('announcer').innerText(), 'Answer finished.');
  // The "Copied" toast stays clear of the composer.
  await page.locator('.msg.assistant').last().getByRole('button', { name: 'Copy answer' }).click();
  const toastBox = await page.locator('.toast').first().boundingBox();
  const composerBox = await page.locator('.composer-box').boundingBox();
  assert.ok(toastBox.y + toastBox.height <= composerBox.y || toastBox.y >= composerBox.y + composerBox.height, 'toast does not cover the composer');
  // The archived chat: marked, with the long message folded.
  await page.goto(`${app.url}/c/${m.conversation_id}`);
  await page.getByTestId('archived-note').getByText('This chat is archived').waitFor();
  const bubble = page.locator('.msg.user .bubble');
  assert.ok((await bubble.boundingBox()).height < 500, 'a 400-line message is folded');
  await screenshot(page, 'ux-archived-folded-1280-light');
  await bubble.getByRole('button', { name: 'Show more' }).click();
  assert.ok((await bubble.boundingBox()).height > 2000, 'and unfolds');
  await bubble.getByRole('button', { name: 'Show less' }).waitFor();
  // Task lists: the box is the marker, and it is labelled.
  const task = page.locator('.msg.assistant .md li:has(input[type=checkbox])').first();
  assert.equal(await task.evaluate((li) => getComputedStyle(li).listStyleType), 'none');
  assert.equal(await task.locator('input').getAttribute('aria-label'), 'To do: pack the bags');
  assert.deepEqual(await axeSerious(page), [], 'no serious or critical axe findings (thread, notes, sidebar groups)');
  // Dropdowns other than the model picker show an arrow.
  await page.goto(app.url + '/admin/users');
  const role = page.getByLabel('Role of bob');
  await role.waitFor();
  assert.match(await role.evaluate((s) => getComputedStyle(s).backgroundImage), /^url\("data:image\/svg\+xml/);
  // The audit log's address column does not wrap.
  await page.goto(app.url + '/admin/audit');
  const ip = page.locator('table.audit tbody tr td:last-child').first();
  await ip.waitFor();
  assert.equal(await ip.evaluate((td) => getComputedStyle(td).whiteSpace), 'nowrap');
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('item 12: registration repeats the password and can show it; admin users fit a phone', T, async (t) => {
  const context = await newContext(browser, { viewport: { width: 390, height: 800 } });
  t.after(() => context.close());
  const page = await context.newPage();
  await page.goto(app.url + '/register');
  await page.getByLabel('Username').fill('carol');
  await page.getByLabel('Password', { exact: true }).fill('correct horse battery');
  await page.getByLabel('Repeat password').fill('correct horse battry');
  await page.getByLabel('Show password').check();
  assert.equal(await page.getByLabel('Password', { exact: true }).getAttribute('type'), 'text');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByText('The two passwords differ').waitFor();
  await page.getByLabel('Repeat password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('textbox', { name: 'Message' }).waitFor();

  const admin = await open(t, { width: 390, height: 800 });
  await admin.page.goto(app.url + '/admin/users');
  await admin.page.getByLabel('Role of bob').waitFor();
  const overflow = await admin.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no sideways overflow at 390 px (${overflow} px)`);
});

test('item 13: the model picker marks an unreachable provider\'s models', T, async (t) => {
  // The health check runs at start-up; wait for its verdict on "ghost".
  for (let i = 0; i < 200; i++) {
    const p = (await app.api('GET', '/providers')).items.find((x) => x.name === 'ghost');
    if (p && !p.reachable && p.last_error) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const { page, watch } = await open(t);
  // In the picker it is marked and cannot be picked (issue 16, item 7).
  await page.getByRole('button', { name: /^Model\b(?! settings)/ }).click();
  const ghost = page.locator('[role=option][data-model="ghost-model"]');
  await page.waitForFunction(() => document.querySelector('[role=option][data-model="ghost-model"]')?.getAttribute('aria-disabled') === 'true');
  assert.match(await ghost.textContent(), /ghost-model.*unreachable/);
  const fake = page.locator('[role=option][data-model="fake-model"]');
  assert.equal(await fake.getAttribute('aria-disabled'), null);
  assert.match(await fake.textContent(), /^fake-model/);
  await ghost.click({ force: true });
  assert.equal(await page.getByRole('listbox', { name: 'Models' }).isVisible(), true, 'an unreachable model is not picked');
  await page.keyboard.press('Escape');
  // A conversation that uses it says so.
  const c = await app.api('POST', '/conversations', { title: 'ghostly', model: 'ghost-model' });
  await page.goto(`${app.url}/c/${c.id}`);
  await page.getByTestId('model-down').waitFor();
  assert.match(await page.getByRole('button', { name: /^Model\b(?! settings)/ }).textContent(), /ghost-model \(unreachable\)/);
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('screenshots of the changed screens: 1280 and 390 px, light and dark', T, async (t) => {
  const c = await app.api('POST', '/chat/message', { content: 'Show me a plan with a task list', model: 'markdown' });
  for (const colorScheme of ['light', 'dark']) {
    for (const [width, height] of [[1280, 800], [390, 800]]) {
      const name = (what) => `ux-${what}-${width}-${colorScheme}`;
      // Signed out: a sign-in error, then registration.
      const context = await newContext(browser, { viewport: { width, height }, colorScheme, deviceScaleFactor: 1 });
      t.after(() => context.close());
      const anon = await context.newPage();
      await anon.goto(app.url + '/login');
      await anon.getByLabel('Username').fill('admin');
      await anon.getByLabel('Password', { exact: true }).fill('wrong password');
      await anon.getByRole('button', { name: 'Sign in' }).click();
      await anon.locator('.banner.error').waitFor();
      await screenshot(anon, name('login-error'));
      await anon.goto(app.url + '/register');
      await anon.getByLabel('Repeat password').waitFor();
      await screenshot(anon, name('register'));

      const { page, watch } = await open(t, { width, height, colorScheme });
      await page.goto(`${app.url}/c/${c.conversation_id}`);
      await page.locator('.msg.assistant .md li input').first().waitFor();
      // The picker open: the unreachable model marked.
      await page.getByRole('button', { name: /^Model\b(?! settings)/ }).click();
      await page.locator('[role=option][data-model="ghost-model"][aria-disabled="true"]').waitFor();
      await screenshot(page, name('chat'));
      await page.keyboard.press('Escape');
      await page.evaluate(() => { document.querySelector('.chat-scroll').scrollTop = 0; });
      await screenshot(page, name('chat-top'));
      if (width < 800) {
        await page.getByRole('button', { name: 'Open sidebar' }).click();
        // Wait for the drawer to finish sliding in.
        await page.waitForFunction(() => document.querySelector('.sidebar.open')?.getBoundingClientRect().left === 0);
        await screenshot(page, name('drawer'));
        await page.keyboard.press('Escape');
      }
      await page.goto(app.url + '/admin/users');
      await page.getByLabel('Role of bob').waitFor();
      await screenshot(page, name('admin-users'));
      await page.goto(app.url + '/admin/audit');
      await page.locator('table.audit').waitFor();
      await screenshot(page, name('admin-audit'));
      assert.deepEqual(unexpectedProblems(watch), []);
    }
  }
});
