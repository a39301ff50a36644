// Moving in, moving out, sharing, in the browser: share a chat and continue
// it from another account; export one chat and everything; import a ChatGPT
// export with the progress bar and the report (found again after a reload);
// delete every chat; and axe on the screens.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
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
let dir;
const BOB = { username: 'bob', password: 'correct horse battery' };

before(async () => {
  app = await startApp();
  browser = await launch();
  dir = await mkdtemp(path.join(tmpdir(), 'confab-e2e-moves-'));
  await app.api('POST', '/admin/users', BOB);
  await app.api('POST', '/chat/message', { content: 'What is a share link?', model: 'fake-model' });
});

after(async () => {
  await browser?.close();
  await app?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
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

async function firstConversation() {
  const list = await app.api('GET', '/conversations');
  return list.items[0];
}

test('share a chat, open the link signed out, continue it as another user, revoke it', { timeout: 120_000 }, async (t) => {
  const conv = await firstConversation();
  const ctx = await newContext(browser, { viewport: { width: 1280, height: 900 } });
  t.after(() => ctx.close());
  const page = await ctx.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url);
  await page.goto(app.url + '/c/' + conv.id);
  await page.getByText('Hello from the fake upstream!').first().waitFor();
  await page.getByRole('button', { name: 'Share and export' }).click();
  const dialog = page.getByRole('dialog', { name: 'Share and export' });
  await dialog.getByTestId('create-share').click();
  const url = await dialog.getByTestId('share-url').inputValue();
  assert.match(url, /\/s\/[A-Za-z0-9_-]{43}$/);
  await dialog.getByRole('button', { name: 'Close' }).click();

  // Signed out: the snapshot, and a sign-in button to continue.
  const anon = await newContext(browser, { viewport: { width: 390, height: 800 } });
  t.after(() => anon.close());
  const ap = await anon.newPage();
  const aw = await watchPage(ap);
  await ap.goto(url);
  await ap.getByTestId('share-title').waitFor();
  const thread = ap.locator('.share-thread');
  await thread.getByText('What is a share link?').waitFor();
  await thread.getByText('Hello from the fake upstream!').waitFor();
  await ap.getByTestId('continue-sign-in').waitFor();
  t.diagnostic(`screenshot: ${await screenshot(ap, 'shared-page-390')}`);

  // Bob continues it: a copy in his account, opened in the chat.
  const bctx = await newContext(browser, { viewport: { width: 1280, height: 900 } });
  t.after(() => bctx.close());
  const bp = await bctx.newPage();
  const bw = await watchPage(bp);
  await signIn(bp, app.url, BOB);
  await bp.goto(url);
  await bp.getByTestId('continue-chat').click();
  await bp.waitForURL(/\/c\/[0-9a-f-]{36}$/);
  await bp.getByText('What is a share link?').first().waitFor();
  assert.notEqual(new URL(bp.url()).pathname, '/c/' + conv.id);

  // Listed in settings; revoked there, the link stops.
  await page.goto(app.url + '/settings#shares');
  const card = page.locator('#shares');
  await card.getByTestId('shares-list').waitFor();
  await card.getByRole('button', { name: /^Revoke link to / }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Revoke link' }).click();
  await card.getByText('You have not shared any chat.').waitFor();
  await ap.reload();
  await ap.getByTestId('share-error').waitFor();
  assert.match(await ap.getByTestId('share-error').textContent(), /stopped sharing/);
  const allow = [/status of 404/];
  assert.deepEqual(unexpectedProblems(watch), []);
  assert.deepEqual(unexpectedProblems(aw, allow), []);
  assert.deepEqual(unexpectedProblems(bw), []);
});

test('a shared chat shows its image through the link, and continuing copies it', { timeout: 120_000 }, async (t) => {
  // An 8×6 PNG attached to a turn of a model that reads images.
  const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAgAAAAGCAIAAABxZ0isAAAAEUlEQVR4nGM4YWODFTEMpAQAr9U8AVonTcEAAAAASUVORK5CYII=', 'base64');
  await app.api('PATCH', '/admin/models/fake-model', { vision: true });
  const form = new FormData();
  form.append('file', new Blob([png], { type: 'image/png' }), 'red.png');
  const res = await fetch(app.url + '/api/files', { method: 'POST', body: form, headers: { Cookie: app.cookie, 'X-CSRF-Token': app.csrf } });
  assert.equal(res.status, 201, await res.clone().text());
  const file = await res.json();
  const turn = await app.api('POST', '/chat/message', { content: 'Look at this red picture', model: 'fake-model', attachments: [file.id] });
  const share = await app.api('POST', `/conversations/${turn.conversation_id}/shares`, { signed_in_only: false });

  // Signed out, at 390 px: the image, loaded through the link only.
  const anon = await newContext(browser, { viewport: { width: 390, height: 800 } });
  t.after(() => anon.close());
  const ap = await anon.newPage();
  const aw = await watchPage(ap);
  await ap.goto(share.url);
  const img = ap.getByTestId('shared-image');
  await img.waitFor();
  await ap.waitForFunction(() => document.querySelector('[data-testid="shared-image"]')?.naturalWidth === 8);
  const src = await img.getAttribute('src');
  assert.match(src, /^\/api\/shared\/[A-Za-z0-9_-]{43}\/files\/0\?inline=1$/);
  assert.ok(!(await ap.content()).includes(file.id), 'the owner\'s file id is not on the page');
  t.diagnostic(`screenshot: ${await screenshot(ap, 'shared-image-390')}`);

  // Bob continues it: his copy of the chat shows the image from his own files.
  const bctx = await newContext(browser, { viewport: { width: 1280, height: 900 } });
  t.after(() => bctx.close());
  const bp = await bctx.newPage();
  const bw = await watchPage(bp);
  await signIn(bp, app.url, BOB);
  await bp.goto(share.url);
  await bp.getByTestId('continue-chat').click();
  await bp.waitForURL(/\/c\/[0-9a-f-]{36}$/);
  const thumb = bp.getByRole('button', { name: 'Open image red.png' });
  await thumb.waitFor();
  const bsrc = await thumb.locator('img').getAttribute('src');
  assert.match(bsrc, /^\/api\/files\/[0-9a-f-]{36}\/thumbnail$/);
  assert.ok(!bsrc.includes(file.id), 'a copy, not the owner\'s file');
  await app.api('DELETE', `/shares/${share.id}`);
  assert.deepEqual(unexpectedProblems(aw), []);
  assert.deepEqual(unexpectedProblems(bw), []);
});

test('export one chat (Markdown, JSON) and everything', { timeout: 60_000 }, async (t) => {
  const conv = await firstConversation();
  const ctx = await newContext(browser, { viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  t.after(() => ctx.close());
  const page = await ctx.newPage();
  await signIn(page, app.url);
  await page.goto(app.url + '/c/' + conv.id);
  await page.getByRole('button', { name: 'Share and export' }).click();
  const dialog = page.getByRole('dialog', { name: 'Share and export' });
  for (const [id, re] of [['export-markdown', /\.md$/], ['export-json', /\.json$/]]) {
    const [dl] = await Promise.all([page.waitForEvent('download'), dialog.getByTestId(id).click()]);
    assert.match(dl.suggestedFilename(), re);
    const p = path.join(dir, dl.suggestedFilename());
    await dl.saveAs(p);
  }
  await dialog.getByTestId('export-print').waitFor();
  await dialog.getByRole('button', { name: 'Close' }).click();
  await page.goto(app.url + '/settings#data');
  const [dl] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-all').click()]);
  assert.match(dl.suggestedFilename(), /^confab-export-\d{4}-\d{2}-\d{2}\.json$/);
  const p = path.join(dir, 'all.json');
  await dl.saveAs(p);
  const doc = JSON.parse(await (await import('node:fs/promises')).readFile(p, 'utf8'));
  assert.equal(doc.format, 'confab.export.v1');
  assert.ok(doc.conversations.length >= 1);
});

/** A ChatGPT conversations.json of `n` conversations with a branch each. */
function chatgpt(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const m = (id, parent, role, text, t) => [id, { id, parent, children: [], message: role && { author: { role }, create_time: t, content: { content_type: 'text', parts: [text] }, metadata: { model_slug: 'gpt-4o' } } }];
    out.push({
      id: 'e2e-' + i, title: 'Imported ' + i, create_time: 1700000000 + i, update_time: 1700000000 + i, current_node: 'b',
      mapping: Object.fromEntries([
        m('r', null, null, null, 0),
        m('u', 'r', 'user', `question ${i} ` + 'x'.repeat(2000), 1700000001),
        m('a', 'u', 'assistant', `answer ${i}`, 1700000002),
        m('b', 'u', 'assistant', `better answer ${i}`, 1700000003),
      ]),
    });
  }
  return JSON.stringify(out);
}

test('import a ChatGPT export with progress and a report, then delete every chat', { timeout: 180_000 }, async (t) => {
  const file = path.join(dir, 'conversations.json');
  await writeFile(file, chatgpt(400));
  const ctx = await newContext(browser, { viewport: { width: 390, height: 900 } });
  t.after(() => ctx.close());
  const page = await ctx.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url, BOB);
  await page.goto(app.url + '/settings#data');
  const card = page.locator('#data');
  await card.getByTestId('import-file').setInputFiles(file);
  // The progress bar shows while it runs (upload, then the import)…
  await card.locator('progress').first().waitFor();
  // …then the report.
  await card.getByTestId('import-report').waitFor({ timeout: 120_000 });
  await card.getByText(/400\s+conversations imported/).waitFor();
  // The report is there after a reload.
  await page.reload();
  await card.getByTestId('import-report').waitFor();
  await card.getByRole('button', { name: 'Show details' }).click();
  await card.getByRole('link', { name: 'Imported 0' }).waitFor();
  t.diagnostic(`screenshot: ${await screenshot(page, 'import-report-390')}`);

  // Importing it again adds nothing.
  await card.getByTestId('import-file').setInputFiles(file);
  try {
    await card.getByText(/0\s+conversations imported,\s+400\s+skipped/).waitFor({ timeout: 60_000 });
  } catch (e) {
    t.diagnostic(`card: ${await card.textContent()}`);
    t.diagnostic(`screenshot: ${await screenshot(page, 'import-again-390')}`);
    throw e;
  }

  // A file of no known format is reported, not imported.
  const bad = path.join(dir, 'notes.json');
  await writeFile(bad, JSON.stringify({ notes: ['a', 'b'] }));
  await card.getByTestId('import-file').setInputFiles(bad);
  await card.getByTestId('import-error').waitFor();
  assert.match(await card.getByTestId('import-error').textContent(), /matches no known export format/);

  // Delete all, with confirmation.
  await card.getByTestId('delete-all').click();
  const confirm = page.getByRole('dialog');
  await confirm.getByRole('button', { name: 'Delete all chats' }).click();
  await page.getByText(/\d+ chats deleted/).waitFor();
  const res = await fetch(app.url + '/api/conversations', { headers: { Cookie: await cookieOf(ctx) } });
  assert.deepEqual((await res.json()).items, []);
  // The admin's chats are untouched.
  assert.ok((await app.api('GET', '/conversations')).items.length >= 1);
  assert.deepEqual(unexpectedProblems(watch), []);
});

async function cookieOf(ctx) {
  const c = (await ctx.cookies()).find((x) => x.name === 'confab_session');
  return `confab_session=${c.value}`;
}

test('axe-core: no serious or critical violations on the share, export and data screens', { timeout: 120_000 }, async (t) => {
  assert.ok(AXE_PATH, 'axe-core is installed in tests/e2e/node_modules (npm ci in tests/e2e)');
  const conv = await firstConversation();
  const share = await app.api('POST', `/conversations/${conv.id}/shares`, { signed_in_only: false });
  const results = [];
  for (const colorScheme of ['light', 'dark']) {
    const ctx = await newContext(browser, { viewport: { width: 1280, height: 900 }, bypassCSP: true, colorScheme });
    t.after(() => ctx.close());
    const page = await ctx.newPage();
    await signIn(page, app.url);
    const screens = [
      ['settings data and shares', '/settings', async () => page.locator('#shares').getByTestId('shares-list').waitFor()],
      ['share and export dialog', '/c/' + conv.id, async () => {
        await page.getByRole('button', { name: 'Share and export' }).click();
        await page.getByRole('dialog', { name: 'Share and export' }).waitFor();
      }],
      ['shared page', new URL(share.url).pathname, async () => page.getByTestId('share-title').waitFor()],
    ];
    for (const [name, p, ready] of screens) {
      await page.goto(app.url + p);
      await ready();
      await page.waitForTimeout(200);
      const bad = await axe(page);
      t.diagnostic(`${name} (${colorScheme}): ${bad.length} serious/critical`);
      results.push(...bad.map((v) => ({ page: `${name} (${colorScheme})`, ...v })));
    }
  }
  assert.deepEqual(results, [], 'no serious or critical axe violations');
});
