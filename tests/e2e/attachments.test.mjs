// Attachments in the browser: attach by the button, by dropping a file on the
// chat and by pasting an image; chips with upload state; the image reaches
// the fake upstream; thumbnails in the thread, the full image in a dialog
// (Escape closes it); the notice for a model that cannot read images before
// anything is sent; Settings → Files. Screenshots at desktop and 390 px in
// both themes (target/e2e/), and axe-core serious/critical = 0.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import zlib from 'node:zlib';
import { launch, watchPage, screenshot } from './lib/browser.mjs';
import { startApp, signIn, unexpectedProblems, newContext } from './lib/app.mjs';

const require = createRequire(import.meta.url);
const AXE_PATH = require.resolve('axe-core/axe.min.js');

let app;
let browser;
let convId;

/** A real PNG of w×h pixels (a gradient), made here. */
function png(w, h) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const rows = [];
  for (let y = 0; y < h; y++) {
    const row = Buffer.alloc(1 + w * 3);
    for (let x = 0; x < w; x++) {
      row[1 + x * 3] = (x * 255) / w;
      row[2 + x * 3] = (y * 255) / h;
      row[3 + x * 3] = 160;
    }
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

before(async () => {
  app = await startApp();
  browser = await launch();
  // An admin says fake-model-2 reads images; fake-model does not.
  await app.api('PATCH', '/admin/models/fake-model-2', { vision: true });
  // Named by hand, so no title request follows an answer: the fake
  // upstream's last request is the answer's.
  const c = await app.api('POST', '/conversations', { title: 'Pictures', model: 'fake-model-2' });
  convId = c.id;
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

async function openChat(t, { id = convId, ...options } = {}) {
  const context = await newContext(browser, { viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1, bypassCSP: true, ...options });
  t.after(() => context.close());
  const page = await context.newPage();
  const watch = await watchPage(page);
  await signIn(page, app.url, { next: id ? `/c/${id}` : '' });
  return { page, watch };
}

const chips = (page) => page.getByTestId('attach-chip');

/** Waits until every chip has finished uploading. */
async function uploaded(page, n) {
  await page.waitForFunction((n) => {
    const c = [...document.querySelectorAll('[data-testid=attach-chip]')];
    return c.length === n && c.every((x) => x.classList.contains('done'));
  }, n);
}

async function axe(page) {
  await page.addScriptTag({ path: AXE_PATH });
  const r = await page.evaluate(async () => window.axe.run(document, { resultTypes: ['violations'] }));
  return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id}: ${v.help}`);
}

/** Puts `files` ({name, type, bytes: base64}) into a DataTransfer and fires `kind` at `selector`. */
async function fire(page, selector, kind, files) {
  await page.evaluate(({ selector, kind, files }) => {
    const dt = new DataTransfer();
    for (const f of files) {
      const bytes = Uint8Array.from(atob(f.bytes), (c) => c.charCodeAt(0));
      dt.items.add(new File([bytes], f.name, { type: f.type }));
    }
    const el = document.querySelector(selector);
    if (kind === 'paste') {
      el.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
    } else {
      for (const type of ['dragenter', 'dragover', 'drop']) {
        el.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
      }
    }
  }, { selector, kind, files });
}

test('attach by button, drop and paste; the image reaches the model; thumbnails open the full image', { timeout: 150_000 }, async (t) => {
  const { page, watch } = await openChat(t);
  const image = png(900, 600);

  // The button: a chip with name and size once uploaded.
  await page.getByTestId('file-input').setInputFiles({ name: 'chart.png', mimeType: 'image/png', buffer: image });
  await uploaded(page, 1);
  assert.match(await chips(page).first().textContent(), /chart\.png/);
  // Dropped on the chat.
  await fire(page, '.chat-main', 'drop', [{ name: 'dropped.png', type: 'image/png', bytes: png(40, 30).toString('base64') }]);
  await uploaded(page, 2);
  // Pasted into the message box.
  await fire(page, '#message-box', 'paste', [{ name: 'image.png', type: 'image/png', bytes: png(64, 64).toString('base64') }]);
  await uploaded(page, 3);
  // Removing a chip takes the file off the message.
  await page.getByRole('button', { name: 'Remove image.png' }).click();
  await uploaded(page, 2);
  for (const [w, theme] of [[1280, 'light'], [390, 'dark']]) {
    await page.setViewportSize({ width: w, height: 800 });
    await page.emulateMedia({ colorScheme: theme });
    await screenshot(page, `attachments-chips-${w}-${theme}`);
  }
  await page.setViewportSize({ width: 1280, height: 800 });
  assert.deepEqual(await axe(page), []);

  await page.getByRole('textbox', { name: 'Message' }).fill('What do these show?');
  await page.getByRole('button', { name: 'Send message' }).click();
  await page.waitForFunction(() => {
    const a = document.querySelectorAll('.msg.assistant');
    const last = a[a.length - 1];
    return a.length === 1 && last.dataset.status === 'complete' && !last.dataset.id.startsWith('local-');
  });
  assert.equal(await chips(page).count(), 0, 'the chips went with the message');
  const seen = (await app.upstream.chatRequests()).last;
  const user = seen.messages.filter((m) => m.role === 'user').pop();
  const parts = user.content.filter((p) => p.type === 'image_url');
  assert.equal(parts.length, 2);
  assert.match(parts[0].image_url.url, /^data:image\/jpeg;base64,/);

  // Thumbnails in the thread; a click opens the full image; Escape closes it.
  await page.reload();
  const thumb = page.getByRole('button', { name: 'Open image chart.png' });
  await thumb.waitFor();
  await page.waitForFunction(() => [...document.querySelectorAll('.msg-thumb img')].every((i) => i.complete && i.naturalWidth > 0));
  await thumb.click();
  const dialog = page.getByTestId('image-dialog');
  await dialog.waitFor();
  await page.waitForFunction(() => {
    const i = document.querySelector('.image-full');
    return i && i.complete && i.naturalWidth === 900;
  });
  assert.deepEqual(await axe(page), []);
  for (const [w, theme] of [[1280, 'dark'], [390, 'light']]) {
    await page.setViewportSize({ width: w, height: 800 });
    await page.emulateMedia({ colorScheme: theme });
    await screenshot(page, `attachments-dialog-${w}-${theme}`);
  }
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached' });
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('aria-label')), 'Open image chart.png');
  for (const [w, theme] of [[1280, 'light'], [390, 'dark']]) {
    await page.setViewportSize({ width: w, height: 800 });
    await page.emulateMedia({ colorScheme: theme });
    await screenshot(page, `attachments-thread-${w}-${theme}`);
  }
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('a model that cannot read images says so before sending', { timeout: 120_000 }, async (t) => {
  const c = await app.api('POST', '/conversations', { title: 'Text only', model: 'fake-model' });
  const { page, watch } = await openChat(t, { id: c.id });
  const before = (await app.upstream.chatRequests()).count;
  await page.getByTestId('file-input').setInputFiles({ name: 'photo.png', mimeType: 'image/png', buffer: png(20, 20) });
  await uploaded(page, 1);
  const notice = page.getByTestId('vision-notice');
  await notice.waitFor();
  assert.match(await notice.textContent(), /can't read images/);
  await page.getByRole('textbox', { name: 'Message' }).fill('Look at this');
  assert.equal(await page.getByRole('button', { name: 'Send message' }).isDisabled(), true);
  await page.keyboard.press('Enter');
  assert.equal((await app.upstream.chatRequests()).count, before, 'nothing was sent');
  assert.deepEqual(await axe(page), []);
  await screenshot(page, 'attachments-vision-notice-1280-light');
  // Without the image the message goes.
  await page.getByRole('button', { name: 'Remove photo.png' }).click();
  await notice.waitFor({ state: 'detached' });
  assert.equal(await page.getByRole('button', { name: 'Send message' }).isDisabled(), false);
  assert.deepEqual(unexpectedProblems(watch), []);
});

test('Settings → Files lists files with storage and deletes them', { timeout: 120_000 }, async (t) => {
  const { page, watch } = await openChat(t, { id: null });
  await page.goto(app.url + '/settings#files');
  const card = page.locator('#files');
  await card.getByText('chart.png').waitFor();
  assert.match(await page.getByTestId('storage').textContent(), /of 1 GiB used/);
  assert.deepEqual(await axe(page), []);
  for (const [w, theme] of [[1280, 'light'], [390, 'dark']]) {
    await page.setViewportSize({ width: w, height: 800 });
    await page.emulateMedia({ colorScheme: theme });
    await card.scrollIntoViewIfNeeded();
    await screenshot(page, `attachments-settings-${w}-${theme}`);
  }
  const rows = card.locator('.file-row');
  const n = await rows.count();
  await card.getByRole('button', { name: 'Delete dropped.png' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await page.waitForFunction((n) => document.querySelectorAll('#files .file-row').length === n - 1, n);
  assert.deepEqual(unexpectedProblems(watch), []);
});
