// Full-text search in the browser: what is sent through the fake upstream
// becomes findable from the sidebar's search box; snippets are highlighted
// with <mark> around exactly the matched text and render payloads inert;
// choosing a hit opens the conversation scrolled to the message (paging back
// when it is older than the loaded window, switching branches when it is not
// on the shown one); bad queries explain themselves inline; the results work
// with the keyboard and inside the 360 px drawer. Screenshots of the results
// in both themes go to target/e2e/.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, watchPage, screenshot } from './lib/browser.mjs';
import { startApp, signIn, unexpectedProblems, newContext } from './lib/app.mjs';

// The fake answers this to 'fake-model'; titles are made by the same model.
const XSS = '<img src=x onerror="window.__xss=1;alert(1)"> quokkaxss <script>window.__xss=2</script> <svg onload="window.__xss=3">';
const LONG_TURNS = 150; // 300 messages: the hit below is far older than the 50 loaded first

let app;
let browser;
const ids = {};

/** Polls GET /api/search (node side) until `pred(hits)` holds: the index lags writes by up to ~1 s. */
async function indexed(q, pred = (hits) => hits.length > 0, ms = 10_000) {
  const end = Date.now() + ms;
  for (;;) {
    const r = await app.api('GET', '/search?q=' + encodeURIComponent(q) + '&limit=100');
    if (pred(r.hits)) return r;
    if (Date.now() > end) throw new Error(`"${q}" not searchable after ${ms} ms (${r.hits.length} hits)`);
    await new Promise((res) => setTimeout(res, 150));
  }
}

before(async () => {
  app = await startApp({ replies: { markdown: 'A tidy answer about **otters** and their dens.' }, extraConfig: 'max_body_bytes = 16777216' });
  browser = await launch();

  // A payload in a user message.
  const x = await app.api('POST', '/chat/message', { content: XSS, model: 'fake-model' });
  ids.xss = x.conversation_id;
  await app.api('PATCH', `/conversations/${ids.xss}`, { title: 'Payload test' });

  // Two branches: the first version of the question is not on the shown branch.
  const b1 = await app.api('POST', '/chat/message', { content: 'The capybara question, first version', model: 'fake-model' });
  ids.branch = b1.conversation_id;
  await app.api('POST', '/chat/message', { conversation_id: ids.branch, parent_id: null, content: 'The ocelot question, second version', model: 'fake-model' });
  await app.api('PATCH', `/conversations/${ids.branch}`, { title: 'Branchy animals' });

  // A long conversation (imported): an early message holds a rare word, and
  // 30 messages share a common one (more than one page of results).
  const messages = [];
  let parent = null;
  for (let i = 0; i < LONG_TURNS; i++) {
    const text = i === 3 ? 'Where did the walrusmarker go after breakfast?' : i < 31 ? `Zebra crossing number ${i}` : `Filler question ${i}`;
    const q = { id: `q${i}`, parent_id: parent, role: 'user', content: text, status: 'complete' };
    const a = { id: `a${i}`, parent_id: q.id, role: 'assistant', content: `Answer ${i}, with a bit of **markdown**.`, status: 'complete', model: 'fake-model' };
    messages.push(q, a);
    parent = a.id;
  }
  const rep = await app.api('POST', '/import', {
    format: 'confab.conversation.v1',
    exported_at: new Date().toISOString(),
    conversation: { title: 'A long history', model: 'fake-model', current_leaf: parent },
    messages,
  });
  ids.long = rep.imported[0].id;

  // A few more conversations for the sidebar and the title filter.
  for (const title of ['Otter habitats', 'Weekend plans']) {
    const c = await app.api('POST', '/chat/message', { content: `Tell me about ${title.toLowerCase()}`, model: 'markdown' });
    await app.api('PATCH', `/conversations/${c.conversation_id}`, { title });
  }

  await indexed('quokkaxss');
  await indexed('walrusmarker');
  await indexed('capybara');
  await indexed('zebra', (h) => h.length >= 30);
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

const T = { timeout: 90_000 };
const searchBox = (page) => page.getByRole('combobox', { name: 'Search conversations' });
const hits = (page) => page.locator('.sr-hit');

/** Types `q` into the search box and waits for the full-text answer (results, empty state or a note). */
async function search(page, q) {
  const box = searchBox(page);
  await box.fill('');
  await box.fill(q);
  await page.waitForFunction((q) => {
    const st = document.querySelector('.search-results');
    if (!st) return false;
    const done = document.querySelector('.sr-hit') || document.querySelector('.sr-empty') || document.querySelector('[data-testid=search-invalid]')
      || /No messages match/.test(st.textContent);
    return done && !st.querySelector('[role=listbox].stale') && !document.querySelector('.sr-searching')
      && document.querySelector('.search-box input').value === q;
  }, q, { timeout: 10_000 });
}

/** Searches until a hit satisfying `pred` shows, re-running the query while the index catches up. */
async function searchUntil(page, q, hasText, ms = 10_000) {
  const end = Date.now() + ms;
  for (;;) {
    await search(page, q);
    if (await hits(page).filter({ hasText }).count()) return hits(page).filter({ hasText }).first();
    if (Date.now() > end) assert.fail(`no hit with "${hasText}" for "${q}" after ${ms} ms`);
    await page.waitForTimeout(200);
  }
}

async function inViewport(page, selector) {
  return page.evaluate((sel) => {
    const el = document.querySelector(sel);
    const root = document.querySelector('.chat-scroll');
    if (!el || !root) return false;
    const r = el.getBoundingClientRect();
    const v = root.getBoundingClientRect();
    return r.bottom > v.top + 10 && r.top < v.bottom - 10 && r.height > 0;
  }, selector);
}

async function waitInViewport(page, selector, what) {
  await page.waitForFunction((sel) => {
    const el = document.querySelector(sel);
    const root = document.querySelector('.chat-scroll');
    if (!el || !root) return false;
    const r = el.getBoundingClientRect();
    const v = root.getBoundingClientRect();
    return r.bottom > v.top + 10 && r.top < v.bottom - 10 && r.height > 0;
  }, selector, { timeout: 15_000 }).catch(() => assert.fail(`${what}: ${selector} is not in the viewport`));
  // And it stays there once the boxes around it have settled.
  await page.waitForTimeout(400);
  assert.ok(await inViewport(page, selector), `${what}: stays in the viewport`);
}

/** `.msg[data-id=…]` of the message containing `text`, once it is in the DOM. */
async function msgSelector(page, text) {
  const id = await page.locator('.msg', { hasText: text }).first().getAttribute('data-id', { timeout: 15_000 });
  return `.msg[data-id="${id}"]`;
}

async function openPage(t, options = {}) {
  const context = await newContext(browser, { viewport: { width: 1280, height: 820 }, ...options });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  const dialogs = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  await signIn(page, app.url);
  return { page, watch, dialogs };
}

test('a message sent in the browser becomes findable, highlighted with <mark>', T, async (t) => {
  const { page, watch } = await openPage(t);
  const composer = page.getByRole('textbox', { name: 'Message' });
  await composer.fill('Is the platypus venomous? Asking for a platypus friend.');
  await composer.press('Enter');
  await page.waitForFunction(() => {
    const a = [...document.querySelectorAll('.msg.assistant')].pop();
    return a && a.dataset.status === 'complete' && !a.dataset.id.startsWith('local-');
  }, null, { timeout: 20_000 });
  await page.waitForURL(/\/c\//);
  const convId = page.url().split('/c/')[1];

  // The index lags writes by up to ~1 s: search until it shows.
  const hit = await searchUntil(page, 'platypus', 'venomous');
  assert.equal(await hit.locator('.sr-role').innerText(), 'You');
  const snippet = hit.locator('.sr-snippet');
  const marks = await snippet.locator('mark').allInnerTexts();
  assert.deepEqual(marks, ['platypus', 'platypus'], 'each match is one <mark> with exactly the matched text');
  const text = await snippet.evaluate((el) => [...el.childNodes].filter((n) => !n.classList?.contains('sr-role')).map((n) => n.textContent).join('').trim());
  assert.equal(text, 'Is the platypus venomous? Asking for a platypus friend.', 'the snippet is the message text');
  assert.match(await hit.locator('.sr-date [aria-hidden]').innerText(), /^(now|\d+m)$/, 'a relative date');
  assert.match(await hit.locator('.sr-date .sr-only').innerText(), /ago|now/, 'spelled out for screen readers');
  await hit.locator('.sr-title').waitFor();

  // Highlights follow UTF-16 offsets (JS string indices) through emoji and accents.
  const mixed = await app.api('POST', '/chat/message', { content: '🦆 naïve café — the 🐧 pingüino sings', model: 'fake-model' });
  const uni = await searchUntil(page, 'pingüino', 'sings');
  assert.deepEqual(await uni.locator('mark').allInnerTexts(), ['pingüino']);

  // Prefix and phrase syntax reach the server as typed.
  await search(page, 'platyp*');
  assert.ok(await hits(page).filter({ hasText: 'venomous' }).count(), 'prefix query finds it');
  await search(page, '"platypus friend"');
  const phrase = await hits(page).filter({ hasText: 'venomous' }).first().locator('mark').allInnerTexts();
  assert.ok(phrase.includes('friend') && phrase.every((m) => m === 'platypus' || m === 'friend'), `phrase marks: ${phrase}`);

  // The hit opens that conversation at that message.
  await search(page, 'venomous');
  await hits(page).filter({ hasText: 'venomous' }).first().click();
  await page.waitForURL(new RegExp(`/c/${convId}$`));
  await waitInViewport(page, await msgSelector(page, 'venomous'), 'the searched message');
  await app.api('DELETE', `/conversations/${mixed.conversation_id}`);
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('a payload in a searched message renders inert in the snippet', T, async (t) => {
  const { page, watch, dialogs } = await openPage(t);
  const hit = await searchUntil(page, 'quokkaxss', 'quokkaxss');
  const snippet = hit.locator('.sr-snippet');
  assert.equal(await snippet.locator('img, script, svg, iframe, [onerror], [onload]').count(), 0, 'no element from the payload');
  assert.deepEqual(await snippet.locator('mark').allInnerTexts(), ['quokkaxss']);
  const shown = await snippet.innerText();
  assert.ok(shown.includes('onerror="window.__xss=1;alert(1)">'), `the payload is shown as text: ${shown}`);
  assert.ok(shown.includes('<script>window.__xss=2</script> <svg onload="window.__xss=3">'), `the payload is shown as text: ${shown}`);
  await hit.hover();
  await page.waitForTimeout(300);
  assert.equal(await page.evaluate(() => window.__xss), undefined, 'nothing ran');
  assert.equal(await page.locator('.sidebar img, .sidebar script, .sidebar iframe').count(), 0);
  assert.deepEqual(dialogs, []);
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('a hit older than the loaded window pages back and scrolls to the message', T, async (t) => {
  const { page, watch } = await openPage(t);
  const requests = [];
  page.on('request', (r) => { if (r.url().includes('/api/conversations/')) requests.push(new URL(r.url()).pathname + new URL(r.url()).search); });
  const hit = await searchUntil(page, 'walrusmarker', 'breakfast');
  assert.equal(await hit.locator('.sr-title').innerText(), 'A long history');
  await hit.click();
  await page.waitForURL(new RegExp(`/c/${ids.long}$`));
  const sel = await msgSelector(page, 'walrusmarker');
  await waitInViewport(page, sel, 'the old message');
  assert.ok(await page.evaluate((sel) => document.activeElement === document.querySelector(sel), sel), 'focus moves to the message');
  assert.ok(requests.some((u) => /\/conversations\/[^/]+\?limit=50$/.test(u)), `opened with ?limit=50: ${requests.join(', ')}`);
  assert.ok(requests.some((u) => /\/messages\?before=/.test(u)), 'paged back with ?before=');
  assert.ok(!requests.some((u) => /\/conversations\/[^/?]+$/.test(u)), 'never fetched the whole thread');
  // The thread below is intact: scrolling down reaches the newest message.
  await page.locator('.chat-scroll').evaluate((el) => { el.scrollTop = el.scrollHeight; });
  await page.locator('.msg.assistant', { hasText: `Answer ${LONG_TURNS - 1},` }).waitFor();
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('a hit on a branch that is not shown switches to it', T, async (t) => {
  const { page, watch } = await openPage(t);
  // Open the conversation first: it shows the second version.
  await page.goto(`${app.url}/c/${ids.branch}`);
  await page.locator('.msg.user .bubble', { hasText: 'ocelot' }).waitFor();
  assert.equal(await page.locator('.msg.user', { hasText: 'capybara' }).count(), 0);
  const patches = [];
  page.on('request', (r) => { if (r.method() === 'PATCH') patches.push(r.postData()); });

  const hit = await searchUntil(page, 'capybara', 'first version');
  await hit.click();
  const msg = page.locator('.msg.user', { hasText: 'capybara' });
  await msg.waitFor();
  await waitInViewport(page, await msgSelector(page, 'capybara'), 'the message on the other branch');
  await msg.locator('.branch-pos', { hasText: '1/2' }).waitFor();
  assert.equal(await page.locator('.msg.user', { hasText: 'ocelot' }).count(), 0, 'the other branch is no longer shown');
  assert.equal(patches.length, 1);
  assert.match(patches[0], /"current_leaf"/);
  const conv = await app.api('GET', `/conversations/${ids.branch}`);
  assert.ok(conv.messages.some((m) => m.content.includes('capybara')), 'the server shows that branch now');
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('bad queries explain themselves inline; empty results and paging', T, async (t) => {
  const { page, watch } = await openPage(t);
  await search(page, '"unclosed');
  const note = page.getByTestId('search-invalid');
  await note.waitFor();
  assert.match(await note.innerText(), /closing quote/i, 'the server reason is shown');
  assert.equal(await page.locator('.sidebar .banner.error').count(), 0, 'not shown as an error banner');

  await search(page, 'nothing-matches-this-xyzzy');
  await page.locator('.sr-empty', { hasText: 'No results for' }).waitFor();

  // One letter: only the instant title filter.
  await searchBox(page).fill('o');
  await page.locator('.sr-chat', { hasText: 'Otter habitats' }).waitFor();
  await page.locator('.sr-status', { hasText: 'one more character' }).waitFor();

  // More than one page: "Show more results" uses next_cursor.
  await search(page, 'zebra');
  assert.equal(await hits(page).count(), 20);
  await page.getByRole('button', { name: 'Show more results' }).click();
  await page.waitForFunction(() => document.querySelectorAll('.sr-hit').length >= 30);
  const keys = await hits(page).evaluateAll((els) => els.map((e) => e.dataset.key));
  assert.equal(new Set(keys).size, keys.length, 'no duplicates across pages');
  assert.deepEqual(unexpectedProblems(watch, [/status of 400/]), []);
});

test('typing is debounced and superseded queries are aborted; partial and error states', T, async (t) => {
  const { page, watch } = await openPage(t);
  const sent = [];
  const aborted = [];
  page.on('request', (r) => { if (r.url().includes('/api/search')) sent.push(new URL(r.url()).searchParams.get('q')); });
  page.on('requestfailed', (r) => { if (r.url().includes('/api/search')) aborted.push(new URL(r.url()).searchParams.get('q')); });

  // Typing at ~20 characters a second sends a request only once typing
  // pauses for 250 ms, the last one for the whole word. Checked on the page's
  // own clock: when each keystroke landed and when each request started (a
  // busy machine can stall a keystroke past the pause, and then a request
  // for the word so far is right).
  await searchBox(page).evaluate((el) => {
    window.__inputs = [];
    window.__starts = [];
    el.addEventListener('input', () => window.__inputs.push([performance.now(), el.value]));
    const fetch0 = window.fetch;
    window.fetch = (url, ...rest) => {
      if (String(url).includes('/api/search?')) window.__starts.push(performance.now());
      return fetch0(url, ...rest);
    };
  });
  await searchBox(page).pressSequentially('walrusmarker', { delay: 50 });
  await hits(page).filter({ hasText: 'breakfast' }).waitFor();
  const timing = await page.evaluate(() => ({ inputs: window.__inputs, starts: window.__starts }));
  assert.equal(timing.inputs.length, 'walrusmarker'.length, 'one input event per keystroke');
  assert.ok(timing.starts.length >= 1 && timing.starts.length === sent.length, `every request is timed: ${JSON.stringify(timing.starts)} for ${JSON.stringify(sent)}`);
  // Each request waited 250 ms after the keystroke that made its query (the
  // next keystroke may land just before a due timer fires; that request is
  // then aborted, as below).
  const quiet = timing.starts.map((at, k) => at - Math.max(...timing.inputs.filter(([i, v]) => i <= at && v === sent[k]).map(([i]) => i)));
  t.diagnostic(`requests ${JSON.stringify(sent)}, each ${JSON.stringify(quiet.map(Math.round))} ms after the keystroke that made its query`);
  assert.ok(quiet.every((ms) => ms >= 245), `each request waited 250 ms after its query was typed: ${JSON.stringify(quiet.map(Math.round))} ms (${JSON.stringify(sent)})`);
  assert.ok(sent.at(-1) === 'walrusmarker' && sent.every((q) => q.length >= 2), `the last request is for the whole word: ${JSON.stringify(sent)}`);

  // A slow answer is aborted when the query changes before it arrives.
  sent.length = 0;
  await page.route('**/api/search?*', async (route) => {
    if (new URL(route.request().url()).searchParams.get('q') === 'zebra') await new Promise((r) => setTimeout(r, 1500));
    await route.continue().catch(() => {});
  });
  await searchBox(page).fill('zebra');
  // Change the query only once the zebra request is out (not after a fixed
  // wait, which a stalled machine can outlast before the 250 ms debounce).
  for (const t0 = Date.now(); !sent.includes('zebra'); await new Promise((r) => setTimeout(r, 20))) {
    assert.ok(Date.now() - t0 < 10_000, 'the zebra request was sent');
  }
  await searchBox(page).fill('capybara');
  await hits(page).filter({ hasText: 'first version' }).waitFor();
  await page.waitForTimeout(1500);
  assert.equal(await hits(page).filter({ hasText: 'Zebra' }).count(), 0, 'the superseded answer is never shown');
  assert.ok(aborted.includes('zebra'), `the superseded request was aborted (${JSON.stringify(aborted)})`);
  await page.unroute('**/api/search?*');

  // partial: true (the index is being rebuilt) shows a small note.
  await page.route('**/api/search?*', async (route) => {
    const res = await route.fetch();
    const body = await res.json();
    await route.fulfill({ response: res, json: { ...body, partial: true } });
  });
  await search(page, 'otter');
  await page.locator('.sr-note', { hasText: 'being rebuilt' }).waitFor();
  await page.unroute('**/api/search?*');

  // A server failure is an error banner with Retry, which works.
  let fail = true;
  await page.route('**/api/search?*', async (route) => {
    if (!fail) return route.continue();
    await route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ code: 'SEARCH_UNAVAILABLE', message: 'The search index is not available.', request_id: 'req-1' }) });
  });
  await searchBox(page).fill('ocelot');
  const banner = page.locator('.sidebar .banner.error');
  await banner.waitFor();
  // A sentence that says what to do; the code only under Details.
  assert.match(await banner.innerText(), /not available right now\. Try again in a moment/);
  assert.match(await banner.locator('details').textContent(), /SEARCH_UNAVAILABLE/);
  fail = false;
  await banner.getByRole('button', { name: 'Retry' }).click();
  await hits(page).filter({ hasText: 'second version' }).waitFor();
  assert.equal(await banner.count(), 0);
  assert.deepEqual(unexpectedProblems(watch, [/status of 503/]), []);
});

test('keyboard: Ctrl+K, arrows and Enter open a hit; Escape clears', T, async (t) => {
  const { page, watch } = await openPage(t);
  await page.keyboard.press('Control+k');
  const box = searchBox(page);
  await page.waitForFunction(() => document.activeElement?.matches('.search-box input'));
  await page.keyboard.type('walrusmarker');
  await hits(page).first().waitFor();
  assert.equal(await box.getAttribute('aria-expanded'), 'true');
  await page.keyboard.press('ArrowDown');
  const active = await box.getAttribute('aria-activedescendant');
  assert.ok(active, 'ArrowDown makes an option active');
  assert.equal(await page.locator(`#${active}`).getAttribute('aria-selected'), 'true');
  await page.keyboard.press('Enter');
  await page.waitForURL(new RegExp(`/c/${ids.long}$`));
  await waitInViewport(page, await msgSelector(page, 'walrusmarker'), 'opened from the keyboard');
  // Back to the search: the results are still there; Escape clears them.
  await page.keyboard.press('Control+k');
  await page.waitForFunction(() => document.activeElement?.matches('.search-box input'));
  await hits(page).first().waitFor();
  await page.keyboard.press('Escape');
  assert.equal(await box.inputValue(), '');
  // The conversation list is back (grouped by date: Today, Yesterday, …).
  await page.locator('nav[aria-label="Conversation list"] .conv-section').first().waitFor();
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('search results: screenshots in both themes, and inside the 360 px drawer', T, async (t) => {
  for (const colorScheme of ['light', 'dark']) {
    const { page, watch } = await openPage(t, { colorScheme, deviceScaleFactor: 1 });
    await page.goto(`${app.url}/c/${ids.branch}`);
    await page.locator('.msg.user').first().waitFor();
    await search(page, 'otter');
    await hits(page).first().waitFor();
    await page.keyboard.press('ArrowDown');
    await page.waitForTimeout(150);
    t.diagnostic(`screenshot: ${await screenshot(page, `search-desktop-${colorScheme}`)}`);
    await search(page, '"unclosed');
    await page.getByTestId('search-invalid').waitFor();
    t.diagnostic(`screenshot: ${await screenshot(page, `search-invalid-${colorScheme}`)}`);
    assert.deepEqual(unexpectedProblems(watch, [/status of 400/]), []);
  }
  for (const colorScheme of ['light', 'dark']) {
    const { page, watch } = await openPage(t, { viewport: { width: 360, height: 740 }, colorScheme, deviceScaleFactor: 1 });
    await page.getByRole('button', { name: 'Open sidebar' }).click();
    await page.locator('.sidebar.open').waitFor();
    const hit = await searchUntil(page, 'walrusmarker', 'breakfast');
    await page.waitForTimeout(300);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal overflow at 360 px (${overflow} px)`);
    t.diagnostic(`screenshot: ${await screenshot(page, `search-360-drawer-${colorScheme}`)}`);
    await hit.click();
    await page.waitForURL(new RegExp(`/c/${ids.long}$`));
    await page.locator('.sidebar.open').waitFor({ state: 'detached' });
    await waitInViewport(page, await msgSelector(page, 'walrusmarker'), 'opened from the drawer');
    t.diagnostic(`screenshot: ${await screenshot(page, `search-360-opened-${colorScheme}`)}`);
    assert.deepEqual(unexpectedProblems(watch), []);
  }
});
