// Documents answered with sources, in a real browser against the real
// binary: a collection made in Settings → Knowledge with an uploaded
// document, attached to a chat from the header, answers with source chips;
// a chip opens its passage in a dialog (Escape closes it, focus comes back).
// Screenshots at desktop and 390 px in both themes (target/e2e/), axe on
// every new view.

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
  app = await startApp();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

const T = { timeout: 170_000 };
const FACT = 'The vault password for the Zephyr archive is tangerine-42.';

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

/** A handbook of 400 lines (too long to send whole), the fact on line 212. */
function handbook() {
  const lines = [];
  for (let i = 1; i <= 400; i++) {
    lines.push(i === 212 ? FACT : `Line ${i}: the team keeps the office tidy and reviews checklist item ${i * 3} every week.`);
  }
  return lines.join('\n') + '\n';
}

async function upload(name, text) {
  const form = new FormData();
  form.append('file', new Blob([text], { type: 'text/plain' }), name);
  const res = await fetch(app.url + '/api/files', {
    method: 'POST',
    headers: { Cookie: app.cookie, 'X-CSRF-Token': app.csrf },
    body: form,
  });
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()).id;
}

test('a collection made in Settings answers a chat, and its source chips open the passage', T, async (t) => {
  const fileId = await upload('handbook.txt', handbook());
  const problems = [];
  const context = await newContext(browser, { viewport: { width: 1280, height: 900 }, bypassCSP: true });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url);

  // Settings → Knowledge: create a collection and add the document.
  await page.goto(app.url + '/settings#knowledge');
  await page.getByRole('heading', { name: 'Knowledge' }).waitFor();
  await page.getByLabel('New collection').fill('Handbook');
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  const col = page.getByTestId('collection').filter({ hasText: 'Handbook' });
  await col.waitFor();
  await col.getByLabel('Add a document').selectOption(fileId);
  await col.getByRole('button', { name: 'Add', exact: true }).click();
  await col.getByText('handbook.txt').waitFor();
  // Read in the background; the card looks again until it is ready.
  await col.getByText('Ready', { exact: true }).waitFor({ timeout: 30_000 });
  problems.push(...await axeCheck(page, 'settings-knowledge'));
  t.diagnostic(`screenshot: ${await screenshot(page, 'settings-knowledge-desktop-light')}`);

  // A chat; attach the collection from the header.
  await page.goto(app.url + '/');
  await page.getByRole('textbox', { name: 'Message' }).fill('Hello there');
  await page.getByRole('textbox', { name: 'Message' }).press('Enter');
  await page.locator('.msg.assistant[data-status="complete"]').first().waitFor();
  await page.getByRole('button', { name: 'Knowledge' }).click();
  const dialog = page.getByRole('dialog', { name: 'Knowledge for this chat' });
  await dialog.waitFor();
  problems.push(...await axeCheck(page, 'collections-dialog'));
  await dialog.getByRole('checkbox', { name: /Handbook/ }).check();
  await dialog.getByRole('button', { name: 'Save' }).click();
  await dialog.waitFor({ state: 'detached' });
  await page.getByRole('button', { name: 'Knowledge', pressed: true }).waitFor();

  // Ask: the answer shows its sources.
  await page.getByRole('textbox', { name: 'Message' }).fill('What is the vault password for the Zephyr archive?');
  await page.getByRole('textbox', { name: 'Message' }).press('Enter');
  const answer = page.locator('.msg.assistant[data-status="complete"]').nth(1);
  await answer.waitFor();
  const chips = answer.getByRole('group', { name: 'Sources' }).getByRole('button');
  await chips.first().waitFor();
  const labels = await chips.allTextContents();
  assert.ok(labels.some((l) => /handbook\.txt/.test(l) && /lines? \d+/.test(l)), labels.join(' | '));
  // The model got the line with the fact.
  // (The chat was titled after its first answer: the last request is this answer's.)
  const sent = JSON.stringify((await app.upstream.chatRequests()).last);
  assert.ok(sent.includes('tangerine-42'), 'the passage reached the model');
  assert.ok(!sent.includes('Line 399:'), 'the whole handbook was not sent');

  // The chip with the fact opens its passage.
  let opened = false;
  for (let i = 0; i < labels.length && !opened; i++) {
    await chips.nth(i).click();
    const src = page.getByRole('dialog', { name: /handbook\.txt/ });
    await src.waitFor();
    const passage = await src.getByTestId('source-passage').textContent();
    if (passage.includes('tangerine-42')) {
      opened = true;
      assert.match(await src.textContent(), /lines? \d+/);
      problems.push(...await axeCheck(page, 'source-dialog'));
      t.diagnostic(`screenshot: ${await screenshot(page, 'source-dialog-desktop-light')}`);
      await page.keyboard.press('Escape');
      await src.waitFor({ state: 'detached' });
      // Focus is back on the chip that opened it.
      const focused = await page.evaluate(() => document.activeElement?.className || '');
      assert.match(focused, /source-chip/);
    } else {
      await page.keyboard.press('Escape');
      await src.waitFor({ state: 'detached' });
    }
  }
  assert.ok(opened, 'a chip opens the passage with the fact');
  // After a reload the stored answer keeps its chips.
  await page.reload();
  await page.locator('.msg.assistant').nth(1).getByRole('group', { name: 'Sources' }).waitFor();
  const chatUrl = page.url();

  // Phones and the dark theme: chips, dialog, settings.
  for (const [width, height, scheme] of [[390, 844, 'light'], [390, 844, 'dark'], [1280, 900, 'dark']]) {
    const c = await newContext(browser, { viewport: { width, height }, colorScheme: scheme, deviceScaleFactor: 1, bypassCSP: true });
    t.after(() => c.close());
    const p = await c.newPage();
    await signIn(p, app.url);
    await p.goto(chatUrl);
    const a = p.locator('.msg.assistant').nth(1);
    await a.getByRole('group', { name: 'Sources' }).waitFor();
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal overflow at ${width} px (${overflow} px)`);
    await a.getByRole('group', { name: 'Sources' }).scrollIntoViewIfNeeded();
    t.diagnostic(`screenshot: ${await screenshot(p, `chat-sources-${width}-${scheme}`)}`);
    problems.push(...await axeCheck(p, `chat-sources-${width}-${scheme}`));
    await a.getByRole('group', { name: 'Sources' }).getByRole('button').first().click();
    await p.getByRole('dialog', { name: /handbook\.txt/ }).waitFor();
    t.diagnostic(`screenshot: ${await screenshot(p, `source-dialog-${width}-${scheme}`)}`);
    problems.push(...await axeCheck(p, `source-dialog-${width}-${scheme}`));
    await p.keyboard.press('Escape');
    await p.goto(app.url + '/settings#knowledge');
    await p.getByTestId('collection').first().waitFor();
    const o = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(o <= 0, `no horizontal overflow in Settings → Knowledge at ${width} px (${o} px)`);
    await p.getByTestId('collection').first().scrollIntoViewIfNeeded();
    t.diagnostic(`screenshot: ${await screenshot(p, `settings-knowledge-${width}-${scheme}`)}`);
    problems.push(...await axeCheck(p, `settings-knowledge-${width}-${scheme}`));
  }
  assert.deepEqual(problems, []);
  assert.deepEqual(unexpectedProblems(watch), []);
});
