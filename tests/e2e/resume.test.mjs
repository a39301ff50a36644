// A dropped connection during an answer reconnects with Last-Event-ID and
// loses or repeats nothing; a reload mid-answer shows the answer continuing.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, watchPage } from './lib/browser.mjs';
import { startApp, signIn, unexpectedProblems, newContext, pickModel } from './lib/app.mjs';

// 60 words at 100 ms each: six seconds of streaming.
const LONG = Array.from({ length: 60 }, (_, i) => `tok${i}`).join(' ') + ' end.';

let app;
let browser;

before(async () => {
  app = await startApp({ replies: { 'long+slow': LONG } });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

const T = { timeout: 90_000 };

async function startLongAnswer(page) {
  await pickModel(page, 'long+slow');
  const composer = page.getByRole('textbox', { name: 'Message' });
  await composer.fill('Count for me');
  await composer.press('Enter');
  await page.waitForFunction(() => {
    const a = [...document.querySelectorAll('.msg.assistant')].pop();
    return a && !a.dataset.id.startsWith('local-') && (a.querySelector('.md')?.textContent || '').split(' ').length >= 5;
  }, null, { timeout: 15_000 });
}

async function finalAnswer(page) {
  await page.waitForFunction(() => {
    const a = [...document.querySelectorAll('.msg.assistant')].pop();
    return a && a.dataset.status === 'complete';
  }, null, { timeout: 30_000 });
  return (await page.locator('.msg.assistant').last().locator('.md').textContent()).trim();
}

function eventsRequests(page) {
  const seen = [];
  page.on('request', (r) => {
    if (/\/api\/generations\/[^/]+\/events$/.test(new URL(r.url()).pathname)) seen.push(r.headers()['last-event-id']);
  });
  return seen;
}

test('network drop mid-answer: reconnects with Last-Event-ID, text exact and once', T, async (t) => {
  const context = await newContext(browser);
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  const resumes = eventsRequests(page);
  await signIn(page, app.url);

  // The connection that starts the answer breaks after a few events: the
  // route forwards the POST from node, reads the first events of the stream,
  // and hands the browser only those (the generation goes on on the server).
  let cut = null;
  await page.route('**/api/chat/stream', async (route) => {
    const req = route.request();
    const headers = await req.allHeaders();
    const ctrl = new AbortController();
    const res = await fetch(req.url(), { method: 'POST', headers, body: req.postData(), signal: ctrl.signal });
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let text = '';
    while ((text.match(/event: delta/g) || []).length < 5) {
      const { value, done } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
    }
    text = text.slice(0, text.lastIndexOf('\n\n') + 2); // whole events only
    ctrl.abort();
    cut = text;
    await route.fulfill({ status: 200, headers: { 'content-type': 'text/event-stream' }, body: text });
  }, { times: 1 });
  // And the network is down for a moment right after.
  page.on('requestfinished', (r) => {
    if (r.url().endsWith('/api/chat/stream')) context.setOffline(true).catch(() => {});
  });
  await startLongAnswer(page);
  await page.locator('.msg.assistant .reconnecting').last().waitFor({ timeout: 10_000 });
  await page.waitForTimeout(1200); // the answer goes on on the server meanwhile
  await context.setOffline(false);
  assert.ok(cut && cut.includes('event: meta'), 'the first connection carried meta and some deltas');

  const text = await finalAnswer(page);
  assert.equal(text, LONG, 'final text equals the upstream reply exactly (nothing lost, nothing twice)');
  assert.ok(resumes.length >= 1, 'resumed through /api/generations/{id}/events');
  assert.ok(resumes.some((id) => Number(id) > 1), `resumed with Last-Event-ID after the first events (sent: ${resumes.join(', ')})`);
  t.diagnostic(`Last-Event-ID values sent: ${resumes.join(', ')}`);

  // And the stored message is the same.
  const cid = page.url().split('/c/')[1];
  const conv = await page.evaluate(async (id) => (await fetch(`/api/conversations/${id}`)).json(), cid);
  assert.equal(conv.messages.at(-1).content, LONG);
  const problems = unexpectedProblems(watch, [/ERR_INTERNET_DISCONNECTED/, /ERR_NETWORK_CHANGED/, /ERR_NETWORK_IO_SUSPENDED/]);
  assert.deepEqual(problems, []);
});

test('reloading mid-answer shows the answer continuing', T, async (t) => {
  const context = await newContext(browser);
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url);
  await startLongAnswer(page);
  await page.waitForURL(/\/c\//);
  const before = (await page.locator('.msg.assistant').last().locator('.md').textContent()).length;

  const resumes = eventsRequests(page);
  await page.reload();
  // Still streaming after the reload, and growing.
  const first = await page.waitForFunction(() => {
    const a = [...document.querySelectorAll('.msg.assistant')].pop();
    return a && a.dataset.status === 'streaming' && (a.querySelector('.md')?.textContent || '').length;
  }, null, { timeout: 10_000 }).then((h) => h.jsonValue());
  assert.ok(first >= before, 'the reloaded page shows at least the text seen before');
  await page.getByRole('button', { name: 'Stop generating' }).waitFor();
  const text = await finalAnswer(page);
  assert.equal(text, LONG, 'the continued answer is exact');
  // The page showed the live text the server gave it and followed from the
  // event that text reaches, instead of replaying the answer from the start.
  assert.ok(resumes.length >= 1 && Number(resumes[0]) > 1, `followed from the text's last event (sent: ${resumes.join(', ')})`);
  assert.deepEqual(unexpectedProblems(watch), []);
});
