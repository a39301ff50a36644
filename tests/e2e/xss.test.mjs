// A model answer full of XSS payloads executes nothing and renders inert.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, watchPage } from './lib/browser.mjs';
import { startApp, signIn, unexpectedProblems, newContext, pickModel } from './lib/app.mjs';

const PAYLOAD = [
  '<script>window.__xss = "script"; alert("script")</script>',
  '',
  'Image: <img src=x onerror="window.__xss = \'img\'; alert(\'img\')">',
  '',
  '<svg onload="window.__xss = \'svg\'; alert(\'svg\')"><circle r="5"/></svg>',
  '',
  '<iframe src="javascript:alert(\'iframe\')"></iframe>',
  '',
  '[click me](javascript:window.__xss=\'mdlink\';alert(\'mdlink\'))',
  '',
  '<a href="javascript:alert(\'a\')" id="rawlink">raw link</a>',
  '',
  '[data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)',
  '',
  '![pic](https://example.com/x.png" onerror="alert(\'imgmd\'))',
  '',
  '<details open ontoggle="alert(\'details\')"><summary>x</summary>y</details>',
  '',
  '<form action="javascript:alert(1)"><button>go</button></form>',
  '',
  'Math: $\\href{javascript:alert(\'katex\')}{x}$ and $\\htmlStyle{color:red}{y}$',
  '',
  '```html',
  '<script>alert("in code")</script>',
  '```',
  '',
  '<style>body{display:none}</style>',
  '',
  '[safe](https://example.com/page) and <b onmouseover="alert(\'b\')">bold</b>',
].join('\n');

let app;
let browser;

before(async () => {
  app = await startApp({ replies: { xss: PAYLOAD } });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

test('a reply full of XSS payloads executes nothing and is rendered inert', { timeout: 60_000 }, async (t) => {
  const context = await newContext(browser);
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  const dialogs = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  await signIn(page, app.url);

  await pickModel(page, 'xss');
  const composer = page.getByRole('textbox', { name: 'Message' });
  await composer.fill('<img src=x onerror=alert("user")> please answer');
  await composer.press('Enter');
  await page.waitForFunction(() => {
    const a = [...document.querySelectorAll('.msg.assistant')].pop();
    return a && a.dataset.status === 'complete';
  }, null, { timeout: 20_000 });
  // Let the title (made by the same model) arrive in the sidebar and header too.
  await page.waitForTimeout(2000);

  const md = page.locator('.msg.assistant .md').last();
  // Hover and click everything that could carry a handler.
  for (const el of await md.locator('a, b, details, summary').all()) {
    await el.hover().catch(() => {});
  }
  for (const a of await md.locator('a').all()) {
    await a.click({ modifiers: [] , noWaitAfter: true, trial: false }).catch(() => {});
  }
  await page.waitForTimeout(500);
  // Clicking links opens tabs for safe ones; close them.
  for (const p of context.pages()) if (p !== page) await p.close();

  const report = await page.evaluate(() => {
    const root = [...document.querySelectorAll('.msg.assistant .md')].pop();
    const all = [...root.querySelectorAll('*')];
    const handlers = all.filter((el) => [...el.attributes].some((a) => a.name.startsWith('on')));
    const links = [...root.querySelectorAll('a')].map((a) => ({ href: a.getAttribute('href'), rel: a.getAttribute('rel'), target: a.getAttribute('target') }));
    return {
      xss: window.__xss,
      scripts: root.querySelectorAll('script').length,
      iframes: root.querySelectorAll('iframe, object, embed, form, style, img').length,
      svgOnload: root.querySelectorAll('svg[onload]').length,
      handlers: handlers.map((h) => h.outerHTML.slice(0, 80)),
      links,
      text: root.textContent,
      bodyVisible: getComputedStyle(document.body).display !== 'none',
      styleInline: all.filter((el) => el.hasAttribute('style') && !el.closest('.katex')).length,
    };
  });
  t.diagnostic(`links rendered: ${JSON.stringify(report.links)}`);
  assert.deepEqual(dialogs, [], 'no dialog fired');
  assert.equal(report.xss, undefined, 'no payload set a global');
  assert.equal(report.scripts, 0);
  assert.equal(report.iframes, 0, 'no iframe/object/embed/form/style/img element');
  assert.equal(report.svgOnload, 0);
  assert.deepEqual(report.handlers, [], 'no element carries an on* attribute');
  assert.equal(report.styleInline, 0, 'style attributes only inside KaTeX output');
  assert.ok(report.bodyVisible, 'the <style> payload did not apply');
  for (const l of report.links) {
    if (l.href === null) continue;
    assert.match(l.href, /^(https?:|mailto:)/, `only http(s)/mailto links survive: ${l.href}`);
    assert.equal(l.rel, 'noopener noreferrer');
    assert.equal(l.target, '_blank');
  }
  assert.ok(report.links.some((l) => l.href === 'https://example.com/page'), 'a safe link stays a link');
  // The payloads are shown as text, so the reader sees what the model wrote.
  assert.match(report.text, /<script>window.__xss = "script"/);
  assert.match(report.text, /<img src=x onerror=/);
  // The user's own message is text too.
  assert.equal(await page.locator('.msg.user .bubble').last().textContent(), '<img src=x onerror=alert("user")> please answer');
  // Titles (generated from the payload) are plain text in the sidebar and the tab.
  assert.equal(await page.locator('.sidebar img, .chat-header img, .sidebar script').count(), 0);

  assert.deepEqual(unexpectedProblems(watch), [], 'no console errors or CSP violations');
});
